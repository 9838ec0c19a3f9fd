"""Real training for the search benchmark's baseline strategies, in this process,
through each project's own code, behind one small interface (a Learner: build a
configuration's model with a seed, train it one epoch more); search_learners.py holds
the three (LeNet, digits, diabetes).

Every run is cached per (configuration, training seed) as per-epoch curves: training
E epochs with a seed is the first E epochs of training more with it (same data
order, same initial weights), so a strategy asking for fewer epochs than cached gets
that prefix, and one asking for more continues the kept model. Each request is
charged every epoch it asks for, cached or not: strategies are compared on the same
learning curves, at their full compute.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

KEPT_MODELS = 24  # models kept in memory to continue; an evicted one is retrained
SAVE_SECONDS = 10.0  # the store is rewritten at most this often while training


@dataclass(frozen=True)
class Epoch:
    """What one more epoch measured."""

    validation: float  # the project's validation metric (nan: it has none)
    test: float  # the task's target metric
    loss: float = math.nan
    val_loss: float = math.nan
    stages: tuple[float, ...] = ()  # the test metric after each boosting stage (digits)


class Learner(Protocol):
    """One data set and project, trained in this process."""

    name: str  # what the curves depend on besides the configuration (data, size)
    architecture: tuple[str, ...]  # the parameters a curve depends on (epochs aside)
    epochs_name: str  # the configuration's epochs parameter; "" when it has none
    unit: str  # the compute unit: "sample-epochs" or "boosting stages"

    def cost(self, config: Mapping[str, Any]) -> int:
        """Compute units one epoch of `config` costs."""
        ...

    def build(self, config: Mapping[str, Any], seed: int) -> Any:
        """A fresh model, seeded."""
        ...

    def epoch(self, model: Any, config: Mapping[str, Any], seed: int, done: int) -> Epoch:
        """Train `model` one epoch more (after `done`), and measure it."""
        ...


@dataclass
class Curve:
    """One configuration trained with one seed: a value per epoch trained so far."""

    validation: list[float] = field(default_factory=list)
    test: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # training loss
    val_loss: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # training only, per epoch
    wall_seconds: list[float] = field(default_factory=list)
    stages: list[float] = field(default_factory=list)  # digits: test metric per stage


@dataclass(frozen=True)
class Charge:
    """What one request costs and tells: the epochs it trained and their results."""

    epochs: int
    compute: int  # in the learner's unit
    cpu_seconds: float
    wall_seconds: float
    validation: tuple[float, ...]
    test: float


class Trainer:
    """`store`: a JSON file of curves kept between runs (only for the same learner
    name); a stored curve is a measured one, charged in full like any cached one."""

    def __init__(self, learner: Learner, store: str = ""):
        self.learner = learner
        self._store = Path(store) if store else None
        self._curves: dict[tuple, Curve] = self._load()
        self._models: dict[tuple, Any] = {}
        self._saved = time.monotonic()

    def charge(self, config: Mapping[str, Any], seed: int, epochs: int, start: int = 0) -> Charge:
        """Train `config` with `seed` for `epochs` (from the cache where it can); the
        charge covers epochs start+1..epochs (a trial trained on epoch by epoch)."""
        key = self.key(config, seed)
        curve = self._curves.setdefault(key, Curve())
        while len(curve.test) < epochs:
            self._train_one_epoch(key, config, seed, curve)
        return Charge(
            epochs=epochs,
            compute=(epochs - start) * self.learner.cost(config),
            cpu_seconds=sum(curve.cpu_seconds[start:epochs]),
            wall_seconds=sum(curve.wall_seconds[start:epochs]),
            validation=tuple(curve.validation[:epochs]),
            test=curve.test[epochs - 1],
        )

    def curve(self, config: Mapping[str, Any], seed: int) -> Curve:
        """What `config` trained with `seed` measured so far."""
        return self._curves[self.key(config, seed)]

    def known(self, config: Mapping[str, Any], seed: int) -> Curve | None:
        """What `config` trained with `seed` measured, if it was trained."""
        return self._curves.get(self.key(config, seed))

    def key(self, config: Mapping[str, Any], seed: int) -> tuple:
        return (tuple(float(config[name]) for name in self.learner.architecture), seed)

    def _train_one_epoch(self, key: tuple, config: Mapping[str, Any], seed: int, curve: Curve):
        model = self._models.pop(key, None)
        if model is None:
            if curve.test:  # evicted: retrain from scratch (charged as cached)
                for values in curve.__dict__.values():
                    values.clear()
            model = self.learner.build(config, seed)
        self._models[key] = model  # most recently used last
        while len(self._models) > KEPT_MODELS:
            self._models.pop(next(iter(self._models)))
        cpu, wall = time.process_time(), time.perf_counter()
        measured = self.learner.epoch(model, config, seed, len(curve.test))
        curve.cpu_seconds.append(time.process_time() - cpu)
        curve.wall_seconds.append(time.perf_counter() - wall)
        curve.validation.append(measured.validation)
        curve.test.append(measured.test)
        curve.loss.append(measured.loss)
        curve.val_loss.append(measured.val_loss)
        curve.stages[:] = measured.stages or curve.stages
        if time.monotonic() - self._saved >= SAVE_SECONDS:
            self.save()

    def _load(self) -> dict[tuple, Curve]:
        if self._store is None or not self._store.is_file():
            return {}
        kept = json.loads(self._store.read_text())
        if kept.get("learner") != self.learner.name:
            return {}
        return {
            (tuple(entry["architecture"]), entry["seed"]): Curve(**entry["curve"])
            for entry in kept["curves"]
        }

    def save(self) -> None:
        """Write the store (after each search, and while training at most every
        SAVE_SECONDS)."""
        self._saved = time.monotonic()
        if self._store is None:
            return
        entries = [
            {"architecture": list(key[0]), "seed": key[1], "curve": curve.__dict__}
            for key, curve in self._curves.items()
        ]
        partial = self._store.with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"learner": self.learner.name, "curves": entries}))
        partial.replace(self._store)
