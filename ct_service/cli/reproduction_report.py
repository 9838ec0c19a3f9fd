"""What `ct-service reproduce` prints: a reproduction as its run records it, for people
(the outcome line first) and as JSON, and the exit code its outcome means."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ct_service import data_check, run_tags
from ct_service.attempt import AttemptStatus
from ct_service.cli.exit_codes import EXIT_FAILED, EXIT_MISSED, EXIT_OK, EXIT_USAGE
from ct_service.data_check import DataCheck
from ct_service.report import run_url
from ct_service.reproduction import Reproduction, ReproductionOutcome
from ct_service.settings import Settings
from ct_service.space import param_text
from ct_service.tracking import Tracker

EXIT_CODES = {
    ReproductionOutcome.REPRODUCED.value: EXIT_OK,
    ReproductionOutcome.DIFFERS.value: EXIT_MISSED,
    ReproductionOutcome.DATA_CHANGED.value: EXIT_USAGE,
    ReproductionOutcome.FAILED.value: EXIT_FAILED,
}


@dataclass(frozen=True)
class Result:
    """A reproduction as its run records it."""

    run_id: str
    experiment_id: str
    reproduction: Reproduction
    status: str
    outcome: str
    reason: str
    now: float | None
    data: DataCheck | None  # None until it has trained
    environment: str
    config: dict[str, Any]

    @classmethod
    def read(cls, settings: Settings, run_id: str) -> Result:
        client = Tracker(settings).client
        run = client.get_run(run_id)
        tags = run.data.tags
        reproduction = Reproduction.from_tags(tags)
        status = tags.get(run_tags.STATUS, "")
        data = None
        if status in (AttemptStatus.FINISHED.value, AttemptStatus.FAILED.value):
            original = client.get_run(reproduction.original_run)
            data = data_check.compare(
                data_check.dataset_digests(original), data_check.dataset_digests(run)
            )
        return cls(
            run_id=run_id,
            experiment_id=run.info.experiment_id,
            reproduction=reproduction,
            status=status,
            outcome=tags.get(run_tags.REPRODUCTION_OUTCOME, ""),
            reason=tags.get(run_tags.REASON, ""),
            now=run.data.metrics.get(reproduction.metric),
            data=data,
            environment=tags.get(run_tags.REPRODUCTION_ENVIRONMENT, ""),
            config=json.loads(tags.get(run_tags.CONFIG, "{}")),
        )

    @property
    def ended(self) -> bool:
        return self.status in (AttemptStatus.FINISHED.value, AttemptStatus.FAILED.value)

    @property
    def delta(self) -> float | None:
        return None if self.now is None else self.now - self.reproduction.recorded

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.outcome, EXIT_FAILED)

    def text(self, settings: Settings) -> str:
        r = self.reproduction
        shown = " ".join(f"{k}={param_text(v)}" for k, v in sorted(self.config.items()))
        lines = [
            "",
            f"{r.model} version {r.version}: {self.reason}",
            f"configuration: {shown}",
            f"data: {self.data.describe() if self.data else 'not compared'}",
            f"environment: {self.environment or 'not recorded'}",
            f"MLflow: {run_url(settings, self.experiment_id, self.run_id)}",
        ]
        return "\n".join(lines)

    def to_json(self, settings: Settings) -> dict[str, Any]:
        r = self.reproduction
        return {
            "model": r.model,
            "version": r.version,
            "outcome": self.outcome,
            "reason": self.reason,
            "metric": r.metric,
            "recorded": r.recorded,
            "now": self.now,
            "delta": self.delta,
            "tolerance": r.tolerance,
            "run_id": self.run_id,
            "original_run": r.original_run,
            "pipeline_id": r.pipeline_id,
            "commit": r.commit,
            "source": r.source,
            "config": self.config,
            "data": self.data.to_json() if self.data else None,
            "environment": self.environment,
            "mlflow_url": run_url(settings, self.experiment_id, self.run_id),
        }
