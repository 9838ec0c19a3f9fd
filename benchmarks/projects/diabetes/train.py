"""A small neural-network regressor on scikit-learn's bundled diabetes data (442
patients, 10 features, a disease-progression score to predict).

Stand-alone: `python train.py --epochs 200`, or as an MLflow project:
`mlflow run benchmarks/projects/diabetes -P epochs=200`. A quarter of the patients
is the test split (random_state 0), a fifth of the rest the validation split; the
features are standardised on the training split. scikit-learn's MLPRegressor is
trained with partial_fit, one epoch at a time; each epoch logs `loss` and `val_rmse`,
the end `test_rmse` and the model. A pickled checkpoint is kept every
CHECKPOINT_EVERY epochs and at the last one (tag `checkpoint.last_epoch`), and
`--resume-from RUN_ID` continues that run from its last checkpoint. This script
imports nothing from ct-service.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

LAST_EPOCH_TAG = "checkpoint.last_epoch"
CHECKPOINT_EVERY = 50
FLUSH_SECONDS = 0.5  # per-epoch metrics are sent in batches at most this far apart
# ct-service asks a running attempt to stop by setting this tag on its run
STOP_REQUESTED_TAG = "ct.stop_requested"
STOP_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def splits() -> Splits:
    """The fixed splits: test a quarter (random_state 0), validation a fifth of the rest."""
    features, target = load_diabetes(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        features, target, test_size=0.25, random_state=0
    )
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.2, random_state=0)
    scaler = StandardScaler().fit(x_train)
    return Splits(
        scaler.transform(x_train), y_train, scaler.transform(x_val), y_val,
        scaler.transform(x_test), y_test,
    )  # fmt: skip


def network(hidden_units: int, layers: int, learning_rate: float, alpha: float, seed: int):
    return MLPRegressor(
        hidden_layer_sizes=(hidden_units,) * layers,
        learning_rate_init=learning_rate,
        alpha=alpha,
        random_state=seed,
    )


def train_epoch(model: MLPRegressor, data: Splits) -> float:
    """One pass over the training split; the training loss after it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.partial_fit(data.x_train, data.y_train)
    return float(model.loss_)


def rmse(model: MLPRegressor, x: np.ndarray, y: np.ndarray) -> float:
    """Root-mean-square error; infinite when the network diverged."""
    with np.errstate(all="ignore"):
        error = float(np.sqrt(np.mean((model.predict(x) - y) ** 2)))
    return error if math.isfinite(error) else math.inf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-units", type=int, default=16)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--alpha", type=float, default=0.0001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume-from", default="", help="continue this run id")
    args = parser.parse_args(argv)
    for name in ("hidden_units", "layers", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"{name} must be at least 1, got {getattr(args, name)}")
    if not 0.0 < args.learning_rate <= 10.0:
        parser.error(f"learning_rate must be in (0, 10], got {args.learning_rate}")
    if args.alpha < 0:
        parser.error(f"alpha must be 0 or more, got {args.alpha}")
    return args


def train(args: argparse.Namespace) -> float:
    import mlflow
    import mlflow.sklearn

    data = splits()
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as folder:
        run_id = run.info.run_id
        logged = client.get_run(run_id).data.params
        mlflow.log_params({k: v for k, v in vars(args).items() if k not in logged})
        done, model = (
            0,
            network(args.hidden_units, args.layers, args.learning_rate, args.alpha, args.seed),
        )
        if args.resume_from:
            done, model = _load_checkpoint(client, args.resume_from, folder)
            if done > args.epochs:
                sys.exit(f"error: run {args.resume_from} trained {done} epochs, over {args.epochs}")
            mlflow.set_tags(
                {"checkpoint.loaded_from": args.resume_from, "checkpoint.loaded_epoch": str(done)}
            )
        mlflow.log_input(
            mlflow.data.from_numpy(data.x_train, targets=data.y_train, name="diabetes-train"),
            context="training",
        )
        stop, pending = StopRequest(run_id), []
        flushed, cpu, seen = time.monotonic(), time.process_time(), 0
        for epoch in range(done + 1, args.epochs + 1):
            loss = train_epoch(model, data)
            seen += len(data.x_train)
            step = {"loss": loss, "val_rmse": rmse(model, data.x_val, data.y_val)}
            pending += [mlflow.entities.Metric(k, v, int(time.time() * 1000), epoch)
                        for k, v in step.items()]  # fmt: skip
            stopping = stop.requested()
            if epoch == args.epochs or stopping or epoch % CHECKPOINT_EVERY == 0:
                _flush(client, run_id, pending)
                _save_checkpoint(model, epoch, folder)
            elif time.monotonic() - flushed >= FLUSH_SECONDS:
                _flush(client, run_id, pending)
                flushed = time.monotonic()
            if stopping:
                print(f"stopped after epoch {epoch}: {stop.reason}", flush=True)
                break
        _flush(client, run_id, pending)
        stop.close()
        test = rmse(model, data.x_test, data.y_test)
        mlflow.log_metrics(
            {"test_rmse": test, "train_samples_seen": seen,
             "train_cpu_seconds": time.process_time() - cpu}
        )  # fmt: skip
        mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            input_example=data.x_test[:2],
        )
        print(f"test_rmse={test:.3f}", flush=True)
    return test


def _flush(client, run_id: str, pending: list) -> None:
    if pending:
        client.log_batch(run_id, metrics=list(pending))
        pending.clear()


def _save_checkpoint(model: MLPRegressor, epoch: int, folder: str) -> None:
    import mlflow

    path = os.path.join(folder, f"epoch-{epoch:04d}.pkl")
    with open(path, "wb") as file:
        pickle.dump(model, file)
    mlflow.log_artifact(path, artifact_path="checkpoints")
    mlflow.set_tag(LAST_EPOCH_TAG, str(epoch))


def _load_checkpoint(client, run_id: str, folder: str) -> tuple[int, MLPRegressor]:
    tag = client.get_run(run_id).data.tags.get(LAST_EPOCH_TAG, "")
    if not tag.isdigit():
        sys.exit(f"error: resume_from: run {run_id} logged no checkpoint")
    path = client.download_artifacts(run_id, f"checkpoints/epoch-{int(tag):04d}.pkl", folder)
    with open(path, "rb") as file:
        return int(tag), pickle.load(file)


class StopRequest:
    """Whether ct-service asked this run to stop: its tag, read in the background at
    most every STOP_POLL_SECONDS (only for runs ct-service started)."""

    def __init__(self, run_id: str):
        self.run_id, self.reason = run_id, ""
        self._done = threading.Event()
        threading.Thread(target=self._poll, name="stop-request", daemon=True).start()

    def requested(self) -> bool:
        return bool(self.reason)

    def close(self) -> None:
        self._done.set()

    def _poll(self) -> None:
        import mlflow

        client = mlflow.MlflowClient()
        while not self._done.wait(STOP_POLL_SECONDS):
            try:
                tags = client.get_run(self.run_id).data.tags
            except Exception:  # the tracking server is away for a moment
                continue
            if "ct.pipeline_id" not in tags:
                return  # not run by ct-service: nobody will ask
            if tags.get(STOP_REQUESTED_TAG):
                self.reason = tags[STOP_REQUESTED_TAG]
                return


if __name__ == "__main__":
    train(parse_args())
