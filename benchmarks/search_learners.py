"""The suite's three kinds of training, each through its project's own code, behind
search_training.Learner:

  LeNet     projects/lenet on MNIST or Fashion-MNIST: its loader, split and network;
            compute in sample-epochs (training images x epochs)
  Digits    projects/digits' fit (gradient boosting): one "epoch" is the whole fit,
            compute in boosting stages (n_estimators), the test accuracy after each
            stage kept for the oracle (the first k stages of a fit are a k-stage fit)
  Diabetes  benchmarks/projects/diabetes' splits, network and epoch (an MLPRegressor
            trained with partial_fit); compute in sample-epochs
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from search_training import Epoch

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "projects" / "lenet"
DIGITS = ROOT / "projects" / "digits"
DIABETES = ROOT / "benchmarks" / "projects" / "diabetes"
PROJECTS = {"mnist": LENET, "fashion": LENET, "digits": DIGITS, "diabetes": DIABETES}
SAMPLE_EPOCHS = "sample-epochs"


def _module(folder: Path, name: str) -> ModuleType:
    """A project's train.py under its own name (two projects both have train.py)."""
    spec = importlib.util.spec_from_file_location(name, folder / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LeNet:
    architecture = ("conv_blocks", "filters", "dense_units", "dropout", "learning_rate", "lr_decay")
    epochs_name = "epochs"
    unit = SAMPLE_EPOCHS

    def __init__(self, data: str, train_samples: int, val_fraction: float = 0.1):
        sys.path.insert(0, str(LENET))
        import mnist
        import train

        self.train_samples = train_samples
        self.val_fraction = val_fraction
        self.name = f"lenet {Path(data).resolve()} {train_samples}"
        self._data = mnist.load(data)
        self._split = train.split
        self._split_cache: tuple[int, Any] | None = None

    def cost(self, config: Mapping[str, Any]) -> int:
        """Images trained on per epoch (the subset less its validation split)."""
        return self.train_samples - max(1, int(round(self.train_samples * self.val_fraction)))

    @property
    def set_sizes(self) -> tuple[int, int]:
        """The validation and test sets' sizes, as train.py logs them (dataset inputs)
        for the stop rules' interval: the split and MNIST's 10,000 test images."""
        return max(1, int(round(self.train_samples * self.val_fraction))), 10000

    def build(self, config: Mapping[str, Any], seed: int) -> Any:
        import keras
        from network import Architecture, build

        keras.utils.set_random_seed(seed)
        arch = Architecture(
            int(config["conv_blocks"]),
            int(config["filters"]),
            int(config["dense_units"]),
            float(config["dropout"]),
        )
        return build(arch, float(config["learning_rate"]))

    def epoch(self, model: Any, config: Mapping[str, Any], seed: int, done: int) -> Epoch:
        from network import learning_rate_at

        (x_train, y_train), (x_val, y_val), (x_test, y_test) = self._splits(seed)
        rate = learning_rate_at(done, float(config["learning_rate"]), _decay(config))
        model.optimizer.learning_rate.assign(rate)  # LeNet's schedule, epoch by epoch
        history = model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            initial_epoch=done,
            epochs=done + 1,
            batch_size=int(config.get("batch_size", 128)),
            verbose=0,
        ).history
        _, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
        return Epoch(
            validation=float(history["val_accuracy"][-1]),
            test=float(test_accuracy),
            loss=float(history["loss"][-1]),
            val_loss=float(history["val_loss"][-1]),
        )

    def _splits(self, seed: int):
        if self._split_cache is None or self._split_cache[0] != seed:
            split = self._split(self._data, self.train_samples, self.val_fraction, seed)
            self._split_cache = (seed, split)
        return self._split_cache[1]


class Digits:
    name = "digits"
    architecture = ("n_estimators", "learning_rate", "max_depth")
    epochs_name = ""
    unit = "boosting stages"

    def __init__(self) -> None:
        self._train = _module(DIGITS, "digits_train")
        self._split = self._train.split()

    def cost(self, config: Mapping[str, Any]) -> int:
        return int(float(config["n_estimators"]))

    def build(self, config: Mapping[str, Any], seed: int) -> Any:
        return None  # fitted whole in its one epoch

    def epoch(self, model: Any, config: Mapping[str, Any], seed: int, done: int) -> Epoch:
        train_x, test_x, train_y, test_y = self._split
        fitted = self._train.fit(
            train_x,
            train_y,
            int(config["n_estimators"]),
            float(config["learning_rate"]),
            int(config["max_depth"]),
            seed,
        )
        stages = tuple(float((p == test_y).mean()) for p in fitted.staged_predict(test_x))
        return Epoch(validation=math.nan, test=stages[-1], stages=stages)


class Diabetes:
    name = "diabetes"
    architecture = ("hidden_units", "layers", "learning_rate", "alpha")
    epochs_name = "epochs"
    unit = SAMPLE_EPOCHS

    def __init__(self) -> None:
        self._train = _module(DIABETES, "diabetes_train")
        self._data = self._train.splits()

    def cost(self, config: Mapping[str, Any]) -> int:
        return len(self._data.x_train)

    def build(self, config: Mapping[str, Any], seed: int) -> Any:
        return self._train.network(
            int(config["hidden_units"]),
            int(config["layers"]),
            float(config["learning_rate"]),
            float(config["alpha"]),
            seed,
        )

    def epoch(self, model: Any, config: Mapping[str, Any], seed: int, done: int) -> Epoch:
        data, rmse = self._data, self._train.rmse
        loss = self._train.train_epoch(model, data)
        return Epoch(
            validation=rmse(model, data.x_val, data.y_val),
            test=rmse(model, data.x_test, data.y_test),
            loss=loss,
        )


def learner(dataset: str, data: str = "", samples: int = 0) -> Any:
    """The learner of a suite data set (`data`, `samples`: LeNet's images)."""
    if dataset == "digits":
        return Digits()
    if dataset == "diabetes":
        return Diabetes()
    return LeNet(data, samples)


def _decay(config: Mapping[str, Any]) -> float:
    return float(config.get("lr_decay", 0.0))  # LeNet's default: a constant rate
