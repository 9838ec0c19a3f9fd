"""An attempt's lease: the proof that the process running it is alive.

While an attempt trains, its worker refreshes two marks every heartbeat: a Redis key
that expires after the lease time, and the MLflow tag `ct.heartbeat` (Unix seconds).
The attempt is dead only when both are stale: a Redis restart that lost the key
leaves the tag fresh, and an MLflow server restart leaves the key fresh. The
heartbeat is driven by the clock in the worker, not by training progress, so a slow
epoch is never taken for a death.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from mlflow import MlflowClient

from ct_service import keys as names
from ct_service import run_tags
from ct_service.attempt import AttemptStatus
from ct_service.keystore import KeyStore
from ct_service.settings import RecoverySettings

log = logging.getLogger(__name__)


def holder() -> str:
    """Who holds a lease: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    def __init__(
        self,
        client: MlflowClient,
        keys: KeyStore,
        attempt_id: str,
        recovery: RecoverySettings,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.keys = keys
        self.attempt_id = attempt_id
        self.recovery = recovery
        self.clock = clock
        self._last = float("-inf")
        self.taken_over = False
        self._mlflow_beat: threading.Thread | None = None

    def refresh(self) -> bool:
        """Renew the lease if a heartbeat is due; False once the watchdog has handed
        the attempt to another run (its holder must stop). Never raises: a store that
        is down for a while is exactly what the two marks are for."""
        now = self.clock()
        if now - self._last < self.recovery.heartbeat_seconds:
            return not self.taken_over
        self._last = now
        try:
            self.keys.put(names.lease(self.attempt_id), holder(), self.recovery.lease_seconds)
        except Exception as error:
            log.warning("heartbeat of %s: Redis: %s", self.attempt_id, error)
        # MLflow's client retries a server that is down for minutes: its mark is set
        # beside the caller, so the key above goes on being renewed meanwhile.
        if self._mlflow_beat is None or not self._mlflow_beat.is_alive():
            self._mlflow_beat = threading.Thread(
                target=self._beat_in_mlflow, args=(now,), name="ct-heartbeat", daemon=True
            )
            self._mlflow_beat.start()
        return not self.taken_over

    def _beat_in_mlflow(self, now: float) -> None:
        try:
            self.client.set_tag(self.attempt_id, run_tags.HEARTBEAT, f"{now:.0f}")
            status = self.client.get_run(self.attempt_id).data.tags.get(run_tags.STATUS)
            self.taken_over = status == AttemptStatus.RESUMED.value
        except Exception as error:
            log.warning("heartbeat of %s: MLflow: %s", self.attempt_id, error)

    def settle(self, timeout_seconds: float = 5.0) -> None:
        """Wait for the MLflow mark in flight, if any (what it read counts from the
        next refresh on)."""
        if self._mlflow_beat is not None:
            self._mlflow_beat.join(timeout=timeout_seconds)

    def release(self) -> None:
        self.settle()
        try:
            self.keys.delete(names.lease(self.attempt_id))
        except Exception as error:
            log.warning("releasing the lease of %s: %s", self.attempt_id, error)


def expired(
    attempt_id: str,
    tags: Mapping[str, str],
    keys: KeyStore,
    recovery: RecoverySettings,
    now: float,
) -> bool:
    """True when neither mark has been renewed within the lease time."""
    if keys.get(names.lease(attempt_id)) is not None:
        return False
    try:
        last = float(tags.get(run_tags.HEARTBEAT, ""))
    except ValueError:
        return True  # marked running, never beat: its worker died at once
    return now - last > recovery.lease_seconds
