"""`ct-service status` without an id: the recent pipelines as a table, one row each,
newest first. Its texts come from tags training code may write (the project name),
so each cell is put on one line as the report's are (report.one_line)."""

from __future__ import annotations

import time

from ct_service import run_tags
from ct_service.attempt import Attempt
from ct_service.data_version import SHORT
from ct_service.report import one_line
from ct_service.tracking import SHORT_ID_LENGTH, Pipeline, Tracker

HEADER = ("id", "project", "trigger", "started", "state", "outcome", "best metric", "attempts")


def pipeline_table(tracker: Tracker, pipelines: list[Pipeline]) -> str:
    """The header, then a row per pipeline, in aligned columns."""
    rows = [HEADER, *(row(p, tracker.attempts(p, curves=False)) for p in pipelines)]
    if any(p.tags.get(run_tags.DATA_VERSION) for p in pipelines):  # a column only then
        data = ["data", *(p.tags.get(run_tags.DATA_VERSION, "")[:SHORT] or "-" for p in pipelines)]
        rows = [
            (*cells[:3], one_line(shown), *cells[3:])
            for cells, shown in zip(rows, data, strict=True)
        ]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in rows
    )


def row(pipeline: Pipeline, attempts: list[Attempt]) -> tuple[str, ...]:
    """A pipeline's cells: its short id, project, what started it (a push to the
    webhook, or `ct-service run`), its start in local time, state, outcome, the best
    value of its target metric over its attempts, and how many attempts it made."""
    target = pipeline.spec.target
    best: float | None = None
    for attempt in attempts:
        if target.is_better(attempt.metric, best):
            best = attempt.metric
    cells = (
        pipeline.id[:SHORT_ID_LENGTH],
        pipeline.spec.project_name,
        pipeline.tags.get(run_tags.TRIGGER)
        or ("push" if pipeline.tags.get(run_tags.PUSH_ID) else "run"),
        time.strftime("%Y-%m-%d %H:%M", time.localtime(pipeline.started_ms / 1000)),
        pipeline.status.value,
        pipeline.outcome or "-",
        "-" if best is None else f"{target.metric} {best:.4f}",
        str(len(attempts)),
    )
    return tuple(one_line(cell) for cell in cells)
