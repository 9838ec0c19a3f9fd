"""Load MNIST from Keras's download cache, a folder of IDX files, or an .npz file."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


class DataError(ValueError):
    """The data location is missing or does not hold MNIST."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def check_location(location: str) -> None:
    """Fail fast (before TensorFlow is imported) when a local location is unusable."""
    if location == "keras":
        return
    if location.endswith(".npz"):
        if not os.path.isfile(location):
            raise DataError(f"data file not found: {location}")
        return
    if not os.path.isdir(location):
        raise DataError(f"data folder not found: {location}")
    for name in IDX_FILES.values():
        if _idx_path(location, name) is None:
            raise DataError(f"{location} has neither {name} nor {name}.gz")


def load(location: str) -> Mnist:
    check_location(location)
    if location == "keras":
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        return Mnist(x_train, y_train, x_test, y_test, source="keras.datasets.mnist")
    if location.endswith(".npz"):
        with np.load(location) as npz:
            arrays = {key: npz[key] for key in IDX_FILES}
        return Mnist(**arrays, source=os.path.abspath(location))
    arrays = {key: _read_idx(_idx_path(location, name)) for key, name in IDX_FILES.items()}
    return Mnist(**arrays, source=os.path.abspath(location))


def _idx_path(folder: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_idx(path: str | None) -> np.ndarray:
    assert path is not None
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic == IMAGE_MAGIC:
        count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
        return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)
    if magic == LABEL_MAGIC:
        return np.frombuffer(raw, np.uint8, offset=8)
    raise DataError(f"{path} is not an IDX image or label file (magic {magic:#x})")
