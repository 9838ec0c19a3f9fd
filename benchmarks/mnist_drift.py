"""MNIST version 2 for the drift scenario (#32 item 5, docs/data.md): the same images
with a shift a model trained on version 1 does not yet handle.

    python benchmarks/mnist_drift.py --source ../shared/data/mnist --out /tmp/mnist-v2

Of each set (train and test) a seeded third of the images is rotated by 30 to 60
degrees (either way, about its centre, bilinear, zero fill) and another third has
its contrast inverted (255 - pixel); the last third and every label stay as they
are. The output is the four IDX files, gzipped as MNIST ships them, byte for byte the
same for the same source and seed (gzip without a name or a time stamp), so version
2 is one data version wherever it is made. Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SETS = {  # images file -> labels file (version 1's names)
    "train-images-idx3-ubyte": "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
ROTATION_DEGREES = (30.0, 60.0)
SEED = 2
CHUNK = 2000  # images rotated at once (memory: about 50 MB a chunk)


class DriftError(ValueError):
    """The source does not hold MNIST's IDX files."""


@dataclass(frozen=True)
class Shifted:
    """Which images of one set were changed, for the record (`--json`)."""

    file: str
    images: int
    rotated: int
    inverted: int


def shift(
    images: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shifted images, indices rotated, indices inverted): disjoint thirds, by `rng`."""
    order = rng.permutation(len(images))
    third = len(images) // 3
    rotated, inverted = np.sort(order[:third]), np.sort(order[third : 2 * third])
    angles = rng.uniform(*ROTATION_DEGREES, size=third) * rng.choice((-1.0, 1.0), size=third)
    out = images.copy()
    for start in range(0, third, CHUNK):
        chosen = rotated[start : start + CHUNK]
        out[chosen] = rotate(images[chosen], angles[start : start + CHUNK])
    out[inverted] = 255 - images[inverted]
    return out, rotated, inverted


def rotate(images: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Each of `images` (n, rows, cols) rotated about its centre by its `degrees`
    (counter-clockwise), bilinear, pixels from outside the image black: numpy only,
    so the result is the same on every machine."""
    count, rows, cols = images.shape
    theta = np.deg2rad(np.asarray(degrees, dtype=np.float64))[:, None, None]
    cy, cx = (rows - 1) / 2.0, (cols - 1) / 2.0
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    # where each output pixel comes from: the inverse rotation
    sy = cy + (y - cy) * np.cos(theta) - (x - cx) * np.sin(theta)
    sx = cx + (y - cy) * np.sin(theta) + (x - cx) * np.cos(theta)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    fy, fx = sy - y0, sx - x0
    padded = np.pad(images.astype(np.float64), ((0, 0), (1, 1), (1, 1)))  # a black border
    which = np.arange(count)[:, None, None]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (yy >= -1) & (yy <= rows) & (xx >= -1) & (xx <= cols)
        values = padded[which, np.clip(yy, -1, rows) + 1, np.clip(xx, -1, cols) + 1]
        return np.where(inside, values, 0.0)

    value = (
        at(y0, x0) * (1 - fy) * (1 - fx)
        + at(y0, x0 + 1) * (1 - fy) * fx
        + at(y0 + 1, x0) * fy * (1 - fx)
        + at(y0 + 1, x0 + 1) * fy * fx
    )
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


def read_idx(path: Path) -> tuple[int, np.ndarray]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        raw = stream.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic == IMAGE_MAGIC:
        count, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
        return magic, np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)
    if magic == LABEL_MAGIC:
        return magic, np.frombuffer(raw, np.uint8, offset=8)
    raise DriftError(f"{path} is not an IDX image or label file (magic {magic:#x})")


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX as MNIST ships it, gzipped without a file name or time (reproducible)."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out,
    ):
        out.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def find(source: Path, name: str) -> Path:
    for candidate in (source / f"{name}.gz", source / name):
        if candidate.is_file():
            return candidate
    raise DriftError(f"{source} has neither {name} nor {name}.gz")


def make_version_2(source: Path, out: Path, seed: int = SEED) -> list[Shifted]:
    """Write version 2 of `source` into `out` (created; files replaced)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for images_name, labels_name in SETS.items():
        _, images = read_idx(find(source, images_name))
        _, labels = read_idx(find(source, labels_name))
        shifted, rotated, inverted = shift(images, rng)
        write_idx(out / f"{images_name}.gz", shifted)
        write_idx(out / f"{labels_name}.gz", labels)
        made.append(Shifted(images_name, len(images), len(rotated), len(inverted)))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--source", type=Path, required=True, help="MNIST version 1's folder")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write v2 to")
    parser.add_argument("--seed", type=int, default=SEED, help="default: %(default)s")
    parser.add_argument("--json", action="store_true", help="print what was changed as JSON")
    args = parser.parse_args(argv)
    if os.path.realpath(args.source) == os.path.realpath(args.out):
        print("error: --out must not be the source folder", file=sys.stderr)
        return 2
    try:
        made = make_version_2(args.source, args.out, args.seed)
    except (DriftError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(m) for m in made], indent=2))
    else:
        for m in made:
            print(f"{m.file}: {m.images} images, {m.rotated} rotated 30-60 degrees, "
                  f"{m.inverted} inverted")  # fmt: skip
        print(f"version 2 in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
