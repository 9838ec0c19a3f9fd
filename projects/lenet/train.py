"""Train LeNet on MNIST and log everything to MLflow.

Stand-alone: `python train.py --epochs 1 --data /path/to/mnist`, or as an MLflow
project: `mlflow run projects/lenet -P epochs=1 -P data=/path/to/mnist`.
Bad parameters exit with status 2 and a one-line reason before any training.
This script imports nothing from ct-service.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import checkpoints
import mnist
from network import Architecture, learning_rate_at, max_conv_blocks

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# ct-service asks a running attempt to stop by setting this tag on its run (the
# target is met on validation, or out of reach): training stops within about a
# second, the last complete epoch is kept, then the test metrics and the model are
# logged as usual.
STOP_REQUESTED_TAG = "ct.stop_requested"
STOP_POLL_SECONDS = 0.25


class ParameterError(ValueError):
    pass


def _integer(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conv-blocks", type=_integer, default=2)
    parser.add_argument("--filters", type=_integer, default=6)
    parser.add_argument("--dense-units", type=_integer, default=84)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=_integer, default=3)
    parser.add_argument("--batch-size", type=_integer, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument(
        "--lr-decay", type=float, default=0.0, help="share of the rate lost each epoch"
    )
    parser.add_argument("--seed", type=_integer, default=42)
    parser.add_argument("--max-train-samples", type=_integer, default=0, help="0 = all")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--data", default="keras", help='"keras", an IDX folder or an .npz')
    parser.add_argument(
        "--resume-from", default="", help="continue the run with this id from its last checkpoint"
    )
    return parser.parse_args(argv)


def validate(args: argparse.Namespace) -> None:
    limit = max_conv_blocks()
    if not 1 <= args.conv_blocks <= limit:
        raise ParameterError(
            f"conv_blocks must be between 1 and {limit} for 28x28 input, got {args.conv_blocks}"
        )
    for name in ("filters", "dense_units", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ParameterError(f"{name} must be at least 1, got {getattr(args, name)}")
    if not 0.0 <= args.dropout < 1.0:
        raise ParameterError(f"dropout must be in [0, 1), got {args.dropout}")
    if not 0.0 < args.learning_rate <= 1.0:
        raise ParameterError(f"learning_rate must be in (0, 1], got {args.learning_rate}")
    if not 0.0 <= args.lr_decay < 1.0:
        raise ParameterError(f"lr_decay must be in [0, 1), got {args.lr_decay}")
    if args.max_train_samples < 0:
        raise ParameterError(
            f"max_train_samples must be 0 (all) or more, got {args.max_train_samples}"
        )
    if not 0.0 < args.val_fraction <= 0.5:
        raise ParameterError(f"val_fraction must be in (0, 0.5], got {args.val_fraction}")
    try:
        mnist.check_location(args.data)
    except mnist.DataError as error:
        raise ParameterError(str(error)) from None
    args.resume_epoch = 0
    if args.resume_from:
        try:
            args.resume_epoch = checkpoints.last_epoch(args.resume_from)
        except checkpoints.ResumeError as error:
            raise ParameterError(str(error)) from None
        # == epochs: a run that died after its last checkpoint (or whose worker died
        # while it finished): nothing left to train; its model is evaluated and logged.
        if args.resume_epoch > args.epochs:
            raise ParameterError(
                f"resume_from: run {args.resume_from} already trained {args.resume_epoch} "
                f"epochs, more than the {args.epochs} asked for"
            )


def split(data: mnist.Mnist, max_train_samples: int, val_fraction: float, seed: int):
    """Seeded subset of the training set, then a validation split taken from it."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(data.x_train))
    if max_train_samples:
        order = order[:max_train_samples]
    n_val = max(1, int(round(len(order) * val_fraction)))
    val, train = order[:n_val], order[n_val:]

    def prep(images):
        return (images.astype("float32") / 255.0)[..., None]

    return (
        (prep(data.x_train[train]), data.y_train[train].astype("int64")),
        (prep(data.x_train[val]), data.y_train[val].astype("int64")),
        (prep(data.x_test), data.y_test.astype("int64")),
    )


def _log_missing_params(client, run_id: str, params: dict) -> None:
    """An MLflow project run already logged its -P values; params cannot change."""
    logged = client.get_run(run_id).data.params
    missing = {key: value for key, value in params.items() if key not in logged}
    if missing:
        import mlflow

        mlflow.log_params(missing)


def train(args: argparse.Namespace) -> float:
    import keras
    import mlflow
    from mlflow.models import infer_signature
    from network import build

    keras.utils.set_random_seed(args.seed)
    data = mnist.load(args.data)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = split(
        data, args.max_train_samples, args.val_fraction, args.seed
    )
    arch = Architecture(args.conv_blocks, args.filters, args.dense_units, args.dropout)
    model = build(arch, args.learning_rate)

    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as checkpoint_dir:
        params = {k: v for k, v in vars(args).items() if k != "resume_epoch"}
        _log_missing_params(mlflow.MlflowClient(), run.info.run_id, params)
        if args.resume_from:  # the checkpoint holds the architecture and optimizer state
            path = checkpoints.download(args.resume_from, args.resume_epoch, checkpoint_dir)
            model = keras.models.load_model(path)
            mlflow.set_tags(
                {
                    "checkpoint.loaded_from": args.resume_from,
                    "checkpoint.loaded_epoch": str(args.resume_epoch),
                }
            )
            print(f"resuming {args.resume_from} after epoch {args.resume_epoch}", flush=True)
        mlflow.log_input(
            mlflow.data.from_numpy(
                x_train, targets=y_train, source=data.source, name="mnist-train"
            ),
            context="training",
        )
        mlflow.log_input(  # its size sizes ct-service's early-stop interval
            mlflow.data.from_numpy(
                x_val, targets=y_val, source=data.source, name="mnist-validation"
            ),
            context="validation",
        )
        mlflow.log_input(
            mlflow.data.from_numpy(x_test, targets=y_test, source=data.source, name="mnist-test"),
            context="testing",
        )
        logger = make_epoch_logger(
            args.epochs, checkpoint_dir, run.info.run_id, len(x_train), args.batch_size
        )
        callbacks = [logger]
        if args.lr_decay:  # set per epoch from the first one: a continued run goes on
            callbacks.append(
                keras.callbacks.LearningRateScheduler(
                    lambda epoch: learning_rate_at(epoch, args.learning_rate, args.lr_decay)
                )
            )
        cpu_start = time.process_time()
        model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            initial_epoch=args.resume_epoch,
            epochs=args.epochs,
            batch_size=args.batch_size,
            verbose=0,
            callbacks=callbacks,
        )
        logger.finish(time.process_time() - cpu_start)
        test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
        mlflow.log_metrics({"test_loss": test_loss, "test_accuracy": test_accuracy})
        example = x_test[:5]
        log_keras_model(model, infer_signature(example, model.predict(example, verbose=0)), example)
        print(f"test_loss={test_loss:.4f} test_accuracy={test_accuracy:.4f}", flush=True)
    return float(test_accuracy)


def log_keras_model(model, signature, example) -> None:
    """`mlflow.keras.log_model`, except that the model folder exists before MLflow
    writes the input example into it (mlflow/mlflow#16183, still open in 3.17)."""
    import mlflow
    from mlflow.models import Model

    class KerasFlavor:
        __name__ = "mlflow.keras"

        @staticmethod
        def save_model(path: str, **kwargs) -> None:
            os.makedirs(path, exist_ok=True)
            mlflow.keras.save_model(path=path, **kwargs)

    Model.log(
        artifact_path=None,
        name="model",
        flavor=KerasFlavor,
        model=model,
        signature=signature,
        input_example=example,
    )


def make_epoch_logger(
    epochs: int, checkpoint_dir: str, run_id: str, train_samples: int, batch_size: int
):
    """A Keras callback logging each epoch's metrics and a full checkpoint
    (weights and optimizer state) to the active MLflow run, and stopping training
    when ct-service asks for it (STOP_REQUESTED_TAG)."""
    import keras
    import mlflow

    class EpochLogger(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.stop = StopRequest(run_id)
            self.samples_seen = 0  # training images, partial epochs included
            self.kept_weights: list | None = None  # the last complete epoch's
            self.cut_short = False  # stopped before the epoch's last batch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.samples_seen += min(batch_size, train_samples - batch * batch_size)
            if self.stop.requested() and not self.model.stop_training:
                self.model.stop_training = True  # Keras ends the epoch after this batch
                self.cut_short = batch + 1 < -(-train_samples // batch_size)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if self.cut_short and self.kept_weights is not None:
                # keep the last complete epoch, log nothing for this partial one
                self.model.set_weights(self.kept_weights)
                print(f"stopped during epoch {epoch + 1}: {self.stop.reason}", flush=True)
                return
            number = epoch + 1
            metrics = {name: float(logs[name]) for name in EPOCH_METRICS if logs and name in logs}
            mlflow.log_metrics(metrics, step=number)
            path = os.path.join(checkpoint_dir, os.path.basename(checkpoints.artifact_path(number)))
            self.model.save(path)
            mlflow.log_artifact(path, artifact_path="checkpoints")
            mlflow.set_tag(checkpoints.LAST_EPOCH_TAG, str(number))
            shown = " ".join(f"{name}={value:.4f}" for name, value in metrics.items())
            print(f"epoch {number}/{epochs} {shown}", flush=True)
            if self.stop.requested():
                print(f"stopped after epoch {number}: {self.stop.reason}", flush=True)
                self.model.stop_training = True
            else:
                self.kept_weights = self.model.get_weights()

        def finish(self, cpu_seconds: float) -> None:
            """What training cost: images seen (a cut-short epoch's too) and CPU time."""
            self.stop.close()
            mlflow.log_metrics(
                {"train_samples_seen": self.samples_seen, "train_cpu_seconds": cpu_seconds}
            )

    return EpochLogger()


class StopRequest:
    """Whether ct-service asked this run to stop: its tag, read in the background at
    most every STOP_POLL_SECONDS (only for runs ct-service started)."""

    def __init__(self, run_id: str):
        import threading

        self.run_id = run_id
        self.reason = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="stop-request", daemon=True)
        self._thread.start()

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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        validate(args)
    except ParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
