"""A picture of a pipeline's search: every attempt's validation curve against the
target line, a continued attempt drawn on from the epoch its base stopped at, and
each early stop marked. Logged on the pipeline run as search.png; the e-mail shows
it inline and the chat message links it."""

from __future__ import annotations

import io
from collections.abc import Sequence

from ct_service.attempt import Attempt
from ct_service.run_tags import RESUME_FROM_PARAM
from ct_service.target import Target

FILE_NAME = "search.png"
MARKERS = {"target met": ("*", 14), "hopeless": ("X", 10), "behind": ("v", 10)}


def draw(attempts: Sequence[Attempt], target: Target, metric: str, title: str) -> bytes | None:
    """The picture as PNG bytes; None when no attempt logged a validation curve."""
    if not any(a.validation for a in attempts):
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: draw into memory
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=100)
    by_run = {a.run_id: a for a in attempts}
    for attempt in attempts:
        values = attempt.validation
        if not values:
            continue
        base = by_run.get(str(attempt.config.get(RESUME_FROM_PARAM, "")))
        start = min(base.checkpoint_epoch, len(values)) if base else 0
        epochs = list(range(max(start, 1), len(values) + 1))
        shown = list(values[max(start, 1) - 1 :])
        label = f"attempt {attempt.number}" + (f" (continues {base.number})" if base else "")
        (line,) = axes.plot(epochs, shown, marker="o", markersize=3, label=label)
        kind = attempt.stopped_early.split(":", 1)[0]
        if kind in MARKERS:
            marker, size = MARKERS[kind]
            axes.plot(epochs[-1], shown[-1], marker=marker, markersize=size, color=line.get_color())
    axes.axhline(target.threshold, linestyle="--", color="black", linewidth=1, label="target")
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"{title}: {target.describe()}  (* stopped: target met, X: hopeless, v: behind)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()
