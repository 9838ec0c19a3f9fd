"""Read a finished attempt's learning curves: what went wrong, with the evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from ct_service.attempt import Attempt

OVERFIT_GAP = 0.05  # train accuracy above validation accuracy by more than this
VAL_RISE = 1.10  # validation loss 10% above its best epoch
STILL_IMPROVING = 0.01  # validation loss fell by more than 1% in the last epoch
SLOW_PER_EPOCH = 0.02  # training loss falling every epoch, but by under 2% an epoch on average


class Finding(str, Enum):
    CRASHED = "crashed"
    DIVERGING = "diverging"
    OVERFITTING = "over-fitting"
    LEARNING_SLOWLY = "learning slowly"
    NOT_CONVERGED = "not converged"
    UNDERFITTING = "under-fitting"
    NO_CURVES = "no learning curves"


@dataclass(frozen=True)
class Diagnosis:
    finding: Finding
    evidence: str


def diagnose(attempt: Attempt) -> Diagnosis:
    if not attempt.finished:
        return Diagnosis(Finding.CRASHED, attempt.failure or "the run failed")
    loss = attempt.curves.get("loss", ())
    val_loss = attempt.curves.get("val_loss", ())
    if not loss:
        return Diagnosis(Finding.NO_CURVES, "no per-epoch loss was logged")
    if not all(math.isfinite(v) for v in loss + val_loss):
        return Diagnosis(Finding.DIVERGING, "the loss became NaN or infinite")
    if len(loss) >= 2 and loss[-1] > loss[0] * 1.05:
        return Diagnosis(
            Finding.DIVERGING, f"training loss rose from {loss[0]:.3g} to {loss[-1]:.3g}"
        )
    overfit = _overfitting_evidence(attempt, loss, val_loss)
    if overfit:
        return Diagnosis(Finding.OVERFITTING, overfit)
    slow = _slow_learning_evidence(loss)
    if slow:
        return Diagnosis(Finding.LEARNING_SLOWLY, slow)
    watched, name = (val_loss, "val_loss") if val_loss else (loss, "loss")
    if len(watched) == 1:
        return Diagnosis(Finding.NOT_CONVERGED, "only one epoch trained")
    drop = (watched[-2] - watched[-1]) / abs(watched[-2]) if watched[-2] else 0.0
    if drop > STILL_IMPROVING:
        return Diagnosis(
            Finding.NOT_CONVERGED, f"{name} still falling ({drop:.0%} in the last epoch)"
        )
    return Diagnosis(Finding.UNDERFITTING, _plateau_evidence(attempt, name, watched))


def _overfitting_evidence(
    attempt: Attempt, loss: tuple[float, ...], val_loss: tuple[float, ...]
) -> str:
    accuracy = attempt.curves.get("accuracy", ())
    val_accuracy = attempt.curves.get("val_accuracy", ())
    if accuracy and val_accuracy and accuracy[-1] - val_accuracy[-1] > OVERFIT_GAP:
        return (
            f"train accuracy {accuracy[-1]:.3f} is well above "
            f"validation accuracy {val_accuracy[-1]:.3f}"
        )
    if len(val_loss) >= 3:
        best = min(range(len(val_loss)), key=val_loss.__getitem__)
        if (
            best < len(val_loss) - 1
            and val_loss[-1] > val_loss[best] * VAL_RISE
            and loss[-1] < loss[best]
        ):
            return (
                f"val_loss rose from {val_loss[best]:.3g} (epoch {best + 1}) to "
                f"{val_loss[-1]:.3g} while training loss kept falling"
            )
    return ""


def _slow_learning_evidence(loss: tuple[float, ...]) -> str:
    """Steady but tiny progress: the learning rate, not the capacity, holds it back."""
    if len(loss) < 2 or not all(b < a for a, b in zip(loss, loss[1:], strict=False)):
        return ""
    per_epoch = (loss[0] - loss[-1]) / abs(loss[0]) / (len(loss) - 1) if loss[0] else 0.0
    if per_epoch >= SLOW_PER_EPOCH:
        return ""
    return (
        f"training loss fell steadily but only {per_epoch:.1%} an epoch "
        f"({loss[0]:.3g} to {loss[-1]:.3g})"
    )


def _plateau_evidence(attempt: Attempt, name: str, watched: tuple[float, ...]) -> str:
    accuracy = attempt.curves.get("accuracy", ())
    if accuracy:
        return f"{name} flat at {watched[-1]:.3g} with train accuracy only {accuracy[-1]:.3f}"
    return f"{name} flat at {watched[-1]:.3g}"
