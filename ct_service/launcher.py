"""Runs one attempt as an MLflow Project run; the executor starts it as a child
process so that its output can be captured and the whole run killed on timeout.

    python -m ct_service.launcher '<request as JSON>'
"""

from __future__ import annotations

import json
import logging
import signal
import sys


def main(argv: list[str]) -> int:
    import mlflow.projects
    from mlflow.exceptions import ExecutionException

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    request = json.loads(argv[0])
    # The executor stops a run with SIGTERM; as an interrupt, MLflow cancels the
    # project's command and marks the run failed instead of leaving it running.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        mlflow.projects.run(
            request["project_uri"],
            entry_point=request["entry_point"],
            parameters=request["parameters"],
            experiment_id=request["experiment_id"],
            run_id=request["run_id"],
            backend="local",
            env_manager=request.get("env_manager", "local"),
            synchronous=True,
        )
    except ExecutionException as error:
        print(f"ct-service: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ct-service: the run was stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
