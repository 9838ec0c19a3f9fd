"""`ct-service history` for people: the aliases, then one row per event, newest
first. Texts a person typed (a rejection's reason, a branch name) are put on one line
as the report's are (report.one_line)."""

from __future__ import annotations

from ct_service.history import Event, Read
from ct_service.report import one_line

HEADER = ("when (UTC)", "move", "production", "version", "scores", "cause")


def history_table(name: str, held: dict[str, str], found: Read) -> str:
    """Which versions hold the aliases, the header, then each event's row with its
    reason last (unpadded)."""
    shown = ", ".join(f"@{alias} {version}" for alias, version in held.items() if version)
    lines = [f"{one_line(name)}: {shown or 'no version holds an alias'}"]
    if not found.events:
        lines.append("no production history yet")
    else:
        rows = [(*HEADER, "reason"), *(row(event) for event in found.events)]
        widths = [max(len(cells[i]) for cells in rows) for i in range(len(HEADER))]
        lines += [
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))
            + "  "
            + cells[-1]
            for cells in rows
        ]
    if found.unreadable:
        lines.append(f"{len(found.unreadable)} tag(s) hold no event: {', '.join(found.unreadable)}")
    return "\n".join(lines)


def row(event: Event) -> tuple[str, ...]:
    """An event's cells: when, the move, production before -> after (one version when
    it stayed), the version it was about, its score vs production's, the cause."""
    before, after = event.from_version or "-", event.to_version or "-"
    production = after if before == after else f"{before} -> {after}"
    scores = (
        f"{event.metric} {_score(event.candidate_score)} vs {_score(event.production_score)}"
        if event.metric
        else "-"
    )
    cells = (
        event.when().removesuffix(" UTC"),
        event.move.value,
        production,
        event.candidate or "-",
        scores,
        event.cause.describe(),
        event.reason,
    )
    return tuple(one_line(cell) for cell in cells)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
