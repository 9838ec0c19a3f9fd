"""Real LeNet training for the search benchmark's baseline strategies, in this
process, through projects/lenet's own code (its data loader, split and network).

Every run is cached per (configuration, training seed) as per-epoch curves: training
E epochs with a seed is the first E epochs of training more with it (same data
order, same initial weights), so a strategy asking for fewer epochs than cached gets
that prefix, and one asking for more continues the kept model. Each request is
charged every epoch it asks for, cached or not: strategies are compared on the same
learning curves, at their full compute.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LENET = Path(__file__).resolve().parent.parent / "projects" / "lenet"
KEPT_MODELS = 24  # models kept in memory to continue; an evicted one is retrained
ARCHITECTURE = ("conv_blocks", "filters", "dense_units", "dropout", "learning_rate", "lr_decay")


@dataclass
class Curve:
    """One configuration trained with one seed: a value per epoch trained so far."""

    val_accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # training loss
    val_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # training only, per epoch
    wall_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Charge:
    """What one request costs and tells: the epochs it trained and their results."""

    epochs: int
    sample_epochs: int
    cpu_seconds: float
    wall_seconds: float
    val_accuracy: tuple[float, ...]
    test_accuracy: float


class Trainer:
    """`store`: a JSON file of curves kept between runs (only for the same data and
    subset); a stored curve is a measured one, charged in full like any cached one."""

    def __init__(self, data: str, train_samples: int, val_fraction: float = 0.1, store: str = ""):
        sys.path.insert(0, str(LENET))
        import mnist
        import train

        self.train_samples = train_samples
        self.val_fraction = val_fraction
        self._data = mnist.load(data)
        self._split = train.split
        self._store = Path(store) if store else None
        self._curves: dict[tuple, Curve] = self._load(data)
        self._models: dict[tuple, Any] = {}
        self._source = data

    def charge(self, config: Mapping[str, Any], seed: int, epochs: int, start: int = 0) -> Charge:
        """Train `config` with `seed` for `epochs` (from the cache where it can); the
        charge covers epochs start+1..epochs (a trial trained on epoch by epoch)."""
        key = _key(config, seed)
        curve = self._curves.setdefault(key, Curve())
        while len(curve.val_accuracy) < epochs:
            self._train_one_epoch(key, config, seed, curve)
        return Charge(
            epochs=epochs,
            sample_epochs=(epochs - start) * self.fitted_samples(),
            cpu_seconds=sum(curve.cpu_seconds[start:epochs]),
            wall_seconds=sum(curve.wall_seconds[start:epochs]),
            val_accuracy=tuple(curve.val_accuracy[:epochs]),
            test_accuracy=curve.test_accuracy[epochs - 1],
        )

    def curve(self, config: Mapping[str, Any], seed: int) -> Curve:
        """What `config` trained with `seed` measured so far."""
        return self._curves[_key(config, seed)]

    def fitted_samples(self) -> int:
        """Images trained on per epoch (the subset less its validation split)."""
        n_val = max(1, int(round(self.train_samples * self.val_fraction)))
        return self.train_samples - n_val

    def _train_one_epoch(self, key: tuple, config: Mapping[str, Any], seed: int, curve: Curve):
        import keras
        from network import Architecture, build, learning_rate_at

        (x_train, y_train), (x_val, y_val), (x_test, y_test) = self._splits(seed)
        model = self._models.pop(key, None)
        if model is None:
            if curve.val_accuracy:  # evicted: retrain from scratch (charged as cached)
                for values in curve.__dict__.values():
                    values.clear()
            keras.utils.set_random_seed(seed)
            arch = Architecture(
                int(config["conv_blocks"]),
                int(config["filters"]),
                int(config["dense_units"]),
                float(config["dropout"]),
            )
            model = build(arch, float(config["learning_rate"]))
        self._models[key] = model  # most recently used last
        while len(self._models) > KEPT_MODELS:
            self._models.pop(next(iter(self._models)))
        done = len(curve.val_accuracy)
        rate = learning_rate_at(done, float(config["learning_rate"]), _decay(config))
        model.optimizer.learning_rate.assign(rate)  # LeNet's schedule, epoch by epoch
        cpu, wall = time.process_time(), time.perf_counter()
        history = model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            initial_epoch=done,
            epochs=done + 1,
            batch_size=int(config.get("batch_size", 128)),
            verbose=0,
        )
        curve.cpu_seconds.append(time.process_time() - cpu)
        curve.wall_seconds.append(time.perf_counter() - wall)
        curve.val_accuracy.append(float(history.history["val_accuracy"][-1]))
        curve.loss.append(float(history.history["loss"][-1]))
        curve.val_loss.append(float(history.history["val_loss"][-1]))
        _, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
        curve.test_accuracy.append(float(test_accuracy))
        self._save()

    def _load(self, data: str) -> dict[tuple, Curve]:
        if self._store is None or not self._store.is_file():
            return {}
        kept = json.loads(self._store.read_text())
        if kept.get("data") != str(Path(data).resolve()) or kept.get("samples") != (
            self.train_samples
        ):
            return {}
        return {
            (tuple(entry["architecture"]), entry["seed"]): Curve(**entry["curve"])
            for entry in kept["curves"]
        }

    def _save(self) -> None:
        if self._store is None:
            return
        entries = [
            {"architecture": list(key[0]), "seed": key[1], "curve": curve.__dict__}
            for key, curve in self._curves.items()
        ]
        kept = {
            "data": str(Path(self._source).resolve()),
            "samples": self.train_samples,
            "curves": entries,
        }
        partial = self._store.with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(kept))
        partial.replace(self._store)

    def _splits(self, seed: int):
        cached = getattr(self, "_split_cache", None)
        if cached is None or cached[0] != seed:
            self._split_cache = (
                seed,
                self._split(self._data, self.train_samples, self.val_fraction, seed),
            )
        return self._split_cache[1]


def _decay(config: Mapping[str, Any]) -> float:
    return float(config.get("lr_decay", 0.0))  # LeNet's default: a constant rate


def _key(config: Mapping[str, Any], seed: int) -> tuple:
    values = {**config, "lr_decay": _decay(config)}
    return (tuple(float(values[name]) for name in ARCHITECTURE), seed)
