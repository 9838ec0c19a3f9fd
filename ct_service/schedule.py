"""A schedule a project (ct.yaml) or a repository (repositories.yaml) declares:

    schedule: {cron: "0 3 * * 1", if_changed: true}

Five cron fields (minute hour day-of-month month day-of-week), read by Celery beat's
own `crontab`, in beat's time zone (UTC unless Celery is told otherwise). With
`if_changed`, a tick whose code and data are those of the model's last pipeline
starts nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery.schedules import crontab


@dataclass(frozen=True)
class Schedule:
    cron: str
    if_changed: bool = False

    @classmethod
    def from_spec(cls, spec: Any) -> Schedule:
        """ValueError naming the bad key (the caller adds the file and entry)."""
        if isinstance(spec, str):
            spec = {"cron": spec}
        if not isinstance(spec, Mapping):
            raise ValueError("schedule must be a cron expression or {cron: ..., if_changed: ...}")
        unknown = sorted(str(key) for key in spec if key not in ("cron", "if_changed"))
        if unknown:
            raise ValueError(
                f"schedule: unknown key(s) {', '.join(unknown)}; known: cron, if_changed"
            )
        cron, if_changed = spec.get("cron"), spec.get("if_changed", False)
        if not isinstance(if_changed, bool):
            raise ValueError("schedule.if_changed must be true or false")
        schedule = cls(str(cron or "").strip(), if_changed)
        schedule.crontab()  # a bad expression fails here
        return schedule

    def to_json(self) -> str:
        return json.dumps({"cron": self.cron, "if_changed": self.if_changed}, sort_keys=True)

    def crontab(self, nowfun: Callable[[], datetime] | None = None) -> crontab:
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError(
                f"schedule.cron {self.cron!r} must have five fields: "
                "minute hour day-of-month month day-of-week"
            )
        minute, hour, day_of_month, month, day_of_week = fields
        try:
            return crontab(minute, hour, day_of_week, day_of_month, month, nowfun=nowfun)
        except ValueError as error:
            raise ValueError(f"schedule.cron {self.cron!r}: {error}") from None
