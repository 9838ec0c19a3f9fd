"""A picture of a pipeline's search: every attempt's validation curve, a continued
attempt drawn on from the epoch its base stopped at, each early stop marked, and
what was judged against what. The target line is the *test* target: each attempt's
test metric is a diamond at the epoch it was measured (its last), and the validation
mark its "target met" stop asked for (target plus margin) is a dotted line, so a
curve above the target line whose diamond sits below it shows why nothing was
promoted. Logged on the pipeline run as search.png; the e-mail shows it inline and
the chat message links it."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ct_service.attempt import Attempt
from ct_service.run_tags import RESUME_FROM_PARAM
from ct_service.target import Direction, Target

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import ColorType

FILE_NAME = "search.png"
MARKERS = {"target met": ("*", 14), "hopeless": ("X", 10), "behind": ("v", 10)}
TEST_METRIC_GID = "test metric"  # the gid of an attempt's test-metric marker
STOP_MARK_GID = "stop mark"  # the gid of a validation mark a target-met stop asked for


def draw(
    attempts: Sequence[Attempt],
    target: Target,
    metric: str,
    title: str,
    margin: float | None = None,
) -> bytes | None:
    """The picture as PNG bytes; None when no attempt logged a validation curve."""
    figure = figure_of(attempts, target, metric, title, margin)
    if figure is None:
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def figure_of(
    attempts: Sequence[Attempt],
    target: Target,
    metric: str,
    title: str,
    margin: float | None = None,
) -> Figure | None:
    """The picture as a matplotlib Figure (no pyplot: nothing global to close).
    `metric`: the validation metric the curves show; `margin`: the stop rule's own
    validation margin for "target met" (None: no such stop), used by every attempt
    that did not ask for one of its own (Attempt.stop_margin)."""
    if not any(a.validation for a in attempts):
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    axes = figure.subplots()
    by_run = {a.run_id: a for a in attempts}
    for attempt in attempts:
        values = attempt.validation
        if not values:
            continue
        base = by_run.get(str(attempt.config.get(RESUME_FROM_PARAM, "")))
        start = max(min(base.checkpoint_epoch, len(values)) if base else 0, 1)
        epochs = list(range(start, len(values) + 1))
        shown = list(values[start - 1 :])
        label = f"attempt {attempt.number}" + (f" (continues {base.number})" if base else "")
        (line,) = axes.plot(epochs, shown, marker="o", markersize=3, label=label)
        colour = line.get_color()
        kind = attempt.stopped_early.split(":", 1)[0]
        if kind in MARKERS:
            marker, size = MARKERS[kind]
            axes.plot(epochs[-1], shown[-1], marker=marker, markersize=size, color=colour)
        if attempt.metric is not None:  # measured after its last epoch
            axes.plot(
                len(values),
                attempt.metric,
                marker="D",
                markersize=8,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
                gid=TEST_METRIC_GID,
            )
        if attempt.stop_margin is not None:
            _stop_mark(
                axes,
                target,
                attempt.stop_margin,
                (epochs[0], epochs[-1]),
                colour,
                f"attempt {attempt.number}: ",
            )
    if margin is not None:
        _stop_mark(axes, target, margin, None, "grey", "")
    axes.axhline(
        target.threshold,
        linestyle="--",
        color="black",
        linewidth=1.2,
        label=f"test target: {target.describe()}",
    )
    axes.plot(
        [],
        [],
        marker="D",
        color="grey",
        markeredgecolor="black",
        linestyle="none",
        label=f"{target.metric} of an attempt (after its last epoch)",
    )
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"{metric} (curves), {target.metric} (diamonds)")
    axes.set_title(
        f"{title}: {target.describe()}\nstopped early: * target met, X hopeless, v behind"
    )
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize="small")
    return figure


def _stop_mark(
    axes: Axes,
    target: Target,
    margin: float,
    span: tuple[int, int] | None,
    colour: ColorType,
    who: str,
) -> None:
    """The validation value a "target met" stop asked for: over an attempt's epochs
    when it asked for a margin of its own, else across the picture (the rule's)."""
    maximize = target.direction is Direction.MAXIMIZE
    mark = target.threshold + margin if maximize else target.threshold - margin
    label = (
        f"{who}target met when validation {'>=' if maximize else '<='} {mark:.4g} "
        f"(target {'+' if maximize else '-'} {margin:g})"
    )
    if span is None:
        line = axes.axhline(mark, linewidth=1.2)
    else:
        (line,) = axes.plot([span[0] - 0.2, span[1] + 0.2], [mark, mark], linewidth=1.8)
    line.set(linestyle=":", color=colour, label=label, gid=STOP_MARK_GID)
