"""A training that sleeps: each epoch waits --epoch-seconds, then logs the curves a
real one logs (loss, accuracy, val_loss, val_accuracy), a checkpoint (an artifact,
and the tag checkpoint.last_epoch) and checks whether ct-service asked it to stop;
at the end it logs test_accuracy and a small pyfunc model. The accuracy is a fixed
function of the configuration: wider is better (saturating), a learning rate far
from 0.003 is worse, and each epoch halves what is left to learn.

Imports nothing of ct-service. Tags `sleep.started` (Unix time, once its imports are
done) so that a benchmark can tell start-up from the first epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import mlflow
from mlflow import MlflowClient

STOP_TAG = "ct.stop_requested"
LAST_EPOCH_TAG = "checkpoint.last_epoch"


def peak(width: float, learning_rate: float) -> float:
    """The accuracy the configuration tends to with many epochs."""
    capacity = 1 - 0.5 * math.exp(-width / 16)
    step = math.exp(-((math.log10(learning_rate / 0.003)) ** 2) / 2)
    return 0.97 * capacity * step


def accuracy(width: float, learning_rate: float, epoch: int) -> float:
    """Validation accuracy after `epoch` epochs: from 0.1 half-way to the peak each epoch."""
    top = peak(width, learning_rate)
    return 0.1 + (top - 0.1) * (1 - 0.5**epoch)


class SmallModel(mlflow.pyfunc.PythonModel):
    """The "model": predicts the accuracy it was trained to, for any input."""

    def __init__(self, value: float):
        self.value = value

    def predict(self, context, model_input, params=None):
        return [self.value] * len(model_input)


def resumed_epoch(run_id: str) -> int:
    """The last epoch the run `run_id` checkpointed (0 for none)."""
    client = MlflowClient()
    folder = client.download_artifacts(run_id, "checkpoints")
    epochs = [json.load(open(os.path.join(folder, f)))["epoch"] for f in os.listdir(folder)]
    return max(epochs, default=0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=8)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--epoch-seconds", type=float, default=2.0)
    parser.add_argument("--resume-from", default="")
    args = parser.parse_args(argv)
    epochs = int(args.epochs)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as folder:
        client = MlflowClient()
        first = 1
        tags = {"sleep.started": f"{time.time():.3f}"}
        if args.resume_from:
            first = resumed_epoch(args.resume_from) + 1
            tags["checkpoint.loaded_from"] = args.resume_from
            tags["checkpoint.loaded_epoch"] = str(first - 1)
        mlflow.set_tags(tags)
        value = accuracy(args.width, args.learning_rate, first - 1)
        for epoch in range(first, epochs + 1):
            time.sleep(args.epoch_seconds)
            value = accuracy(args.width, args.learning_rate, epoch)
            mlflow.log_metrics(
                {
                    "loss": 1 - value - 0.01,
                    "accuracy": value + 0.01,
                    "val_loss": 1 - value,
                    "val_accuracy": value,
                },
                step=epoch,
            )
            path = os.path.join(folder, f"epoch-{epoch:03d}.json")
            with open(path, "w") as checkpoint:
                json.dump({"epoch": epoch, "width": args.width, "value": value}, checkpoint)
            mlflow.log_artifact(path, artifact_path="checkpoints")
            mlflow.set_tag(LAST_EPOCH_TAG, str(epoch))
            if client.get_run(run.info.run_id).data.tags.get(STOP_TAG):
                print(f"stop requested after epoch {epoch}", flush=True)
                break
        mlflow.log_metric("test_accuracy", value - 0.005)
        mlflow.pyfunc.log_model(
            name="model", python_model=SmallModel(value), pip_requirements=["mlflow"]
        )
        print(f"test_accuracy={value - 0.005:.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
