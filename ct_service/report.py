"""What a pipeline did, for people: a summary built from MLflow, rendered as a
table for the terminal and e-mail, and as JSON for scripts and chat webhooks.

Its texts come from runs that training code may write (the project name tag, the
failure line of its output, parameters), so each is rendered on one line: a CR/LF,
another control character, a Unicode line separator or an invisible format character
(bidi overrides among them) becomes a space. A value cannot start a line of the
table or of a mail header, nor move a terminal's cursor."""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from ct_service import run_tags, search_picture
from ct_service.attempt import Attempt
from ct_service.settings import Settings
from ct_service.tracking import Pipeline


@dataclass(frozen=True)
class AttemptLine:
    number: int
    run_id: str
    status: str
    metric: float | None
    epochs: int
    config: str
    reason: str
    failure: str
    decision: str = ""  # what the pipeline decided after this attempt
    metrics: dict[str, float] | None = None  # last-epoch loss, accuracy, val_* values
    resumes: int = 0  # times a dead run of it was resumed from its checkpoint


@dataclass(frozen=True)
class Summary:
    pipeline_id: str
    project: str
    commit: str
    target: str
    budget: str
    status: str
    outcome: str
    reason: str
    model_version: str
    url: str
    attempts: list[AttemptLine]
    picture_url: str = ""  # the search picture (search.png on the pipeline run)
    picture: bytes = field(default=b"", repr=False)  # its PNG, for the e-mail
    data: str = ""  # the data version it trained on, and why it started when not by hand

    def to_json(self) -> dict[str, Any]:
        found = asdict(self)
        del found["picture"]
        if not found["data"]:
            del found["data"]
        return found

    def headline(self) -> str:
        outcome = one_line(self.outcome or self.status)
        return f"ct-service: {one_line(self.project)} pipeline {self.pipeline_id[:8]} {outcome}"

    def table(self) -> str:
        rows: list[tuple[str, ...]] = [
            ("#", "status", "metric", "epochs", "configuration", "reason")
        ]
        for a in self.attempts:
            metric = "-" if a.metric is None else f"{a.metric:.4f}"
            why = a.reason + (f" | resumed {a.resumes}x after a crash" if a.resumes else "")
            why += f" | failed: {a.failure}" if a.failure else ""
            cells = (str(a.number), a.status, metric, str(a.epochs), a.config, why)
            rows.append(tuple(one_line(cell) for cell in cells))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
            for row in rows
        ]
        return "\n".join(line.rstrip() for line in lines)

    def text(self) -> str:
        version = f"\nmodel version: {one_line(self.model_version)}" if self.model_version else ""
        commit = f" at {one_line(self.commit[:12])}" if self.commit else ""
        target, budget = one_line(self.target), one_line(self.budget)
        outcome = one_line(f"{self.outcome or self.status}: {self.reason}")
        return (
            f"{self.headline()}\n\n"
            f"project: {one_line(self.project)}{commit}\ntarget: {target}; budget: {budget}\n"
            f"outcome: {outcome}{version}\n"
            + (f"data: {one_line(self.data)}\n" if self.data else "")
            + "\n"
            f"{self.table()}\n\nMLflow: {one_line(self.url)}\n"
            + (f"search picture: {one_line(self.picture_url)}\n" if self.picture_url else "")
        )


@dataclass(frozen=True)
class Notice:
    """A message about a model rather than about one pipeline run (the decay watch):
    sent through the same transports as a pipeline's Summary (notify.Message)."""

    subject: str  # one line, after "ct-service: "
    lines: tuple[str, ...]  # the body, each rendered on one line
    details: dict[str, Any] = field(default_factory=dict)  # the chat webhook's JSON
    pipeline_id: str = ""  # the pipeline it started, if any
    picture: bytes = field(default=b"", repr=False)

    def headline(self) -> str:
        return f"ct-service: {one_line(self.subject)}"

    def text(self) -> str:
        return self.headline() + "\n\n" + "\n".join(one_line(line) for line in self.lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"subject": one_line(self.subject), **self.details}


# Control characters (CR, LF, tab, ESC, DEL, C1), format characters (zero-width,
# bidi overrides), line and paragraph separators, lone surrogates (no mail encodes them).
HIDDEN = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def one_line(text: str) -> str:
    """`text` on one line: each run of characters in HIDDEN becomes one space."""
    if text.isprintable():
        return text
    kept: list[str] = []
    for char in text:
        if unicodedata.category(char) not in HIDDEN:
            kept.append(char)
        elif not kept or kept[-1] != " ":
            kept.append(" ")
    return "".join(kept)


def summarize(
    settings: Settings, pipeline: Pipeline, attempts: list[Attempt], picture: bytes = b""
) -> Summary:
    shown = _shown_parameters(attempts)
    return Summary(
        pipeline_id=pipeline.id,
        project=pipeline.spec.project_name,
        commit=pipeline.spec.commit,
        target=pipeline.spec.target.describe(),
        budget=pipeline.spec.budget.describe(),
        status=pipeline.status.value,
        outcome=pipeline.outcome,
        reason=pipeline.reason,
        model_version=pipeline.tags.get(run_tags.MODEL_VERSION, ""),
        url=run_url(settings, pipeline.experiment_id, pipeline.id),
        attempts=[
            AttemptLine(
                number=a.number,
                run_id=a.run_id,
                status=a.status.value,
                metric=a.metric,
                epochs=len(a.curves.get("loss", ())),
                config=_config_text(a, shown),
                reason=a.reason,
                failure=a.failure,
                decision=a.decision,
                metrics={name: values[-1] for name, values in a.curves.items() if values},
                resumes=a.resumes,
            )
            for a in attempts
        ],
        picture_url=artifact_url(settings, pipeline.id, search_picture.FILE_NAME)
        if picture
        else "",
        picture=picture,
        data=_data_line(pipeline.tags),
    )


def _data_line(tags: dict[str, str]) -> str:
    """ "<version> of <source>; started: <why>" for a pipeline with declared data or
    started by a trigger; "" otherwise."""
    version, why = tags.get(run_tags.DATA_VERSION, ""), tags.get(run_tags.TRIGGER_REASON, "")
    line = f"{version[:12]} of {tags.get(run_tags.DATA_SOURCE, '')}" if version else ""
    return "; ".join(part for part in (line, f"started: {why}" if why else "") if part)


def run_url(settings: Settings, experiment_id: str, run_id: str) -> str:
    return f"{settings.ui_base()}/#/experiments/{experiment_id}/runs/{run_id}"


def artifact_url(settings: Settings, run_id: str, path: str) -> str:
    """The file itself, as the MLflow server serves it (chats show an image link)."""
    return f"{settings.ui_base()}/get-artifact?path={path}&run_uuid={run_id}"


def _shown_parameters(attempts: list[Attempt]) -> set[str]:
    """The parameters that differ between attempts are the ones worth showing."""
    if len(attempts) < 2:
        return {k for a in attempts for k in a.config if k != "data"}
    keys = set().union(*(a.config.keys() for a in attempts))
    return {k for k in keys if len({str(a.config.get(k)) for a in attempts}) > 1}


def _config_text(attempt: Attempt, names: set[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(attempt.config.items()) if k in names)
