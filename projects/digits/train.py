"""Gradient boosting on scikit-learn's handwritten digits (8x8 images, 10 classes,
1,797 samples, shipped with scikit-learn: nothing to download), or on a data folder's
`train.csv` and `test.csv` (64 pixel columns and `label`, as evaluate.py reads).

Logs its parameters, the final test accuracy (no per-epoch curve) and the model
(`mlflow.sklearn.log_model(name="model")`), and tags the scikit-learn version and
interpreter it ran with, so that a reader can see which environment trained it.
"""

from __future__ import annotations

import argparse
import os
import sys

import mlflow
import mlflow.sklearn
import sklearn
from sklearn.datasets import load_digits
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split


def split(data: str = "builtin"):
    """(train_x, test_x, train_y, test_y): the fixed split (a quarter of the images for
    test, stratified, random_state 0), or a folder's train.csv and test.csv."""
    if data == "builtin":
        features, labels = load_digits(return_X_y=True)
        return train_test_split(features, labels, test_size=0.25, stratify=labels, random_state=0)
    import pandas as pd

    tables = []
    for name in ("train.csv", "test.csv"):
        path = os.path.join(data, name)
        if not os.path.isfile(path):
            raise SystemExit(f"error: {data} has no {name}")
        table = pd.read_csv(path)
        if "label" not in table:
            raise SystemExit(f"error: {path} has no label column")
        tables.append((table.drop(columns=["label"]).to_numpy(), table["label"].to_numpy()))
    (train_x, train_y), (test_x, test_y) = tables
    return train_x, test_x, train_y, test_y


def fit(train_x, train_y, n_estimators: int, learning_rate: float, max_depth: int, seed: int):
    """The fitted model (benchmarks/search.py trains the project through this too)."""
    model = GradientBoostingClassifier(
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        max_depth=max_depth,
        random_state=seed,
    )
    return model.fit(train_x, train_y)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-estimators", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--max-depth", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="builtin", help="builtin, or a folder of CSV files")
    args = parser.parse_args(argv)

    train_x, test_x, train_y, test_y = split(args.data)
    with mlflow.start_run():
        mlflow.set_tags({"sklearn.version": sklearn.__version__, "python.prefix": sys.prefix})
        model = fit(train_x, train_y, args.n_estimators, args.learning_rate, args.max_depth,
                    args.seed)  # fmt: skip
        accuracy = accuracy_score(test_y, model.predict(test_x))
        mlflow.log_metric("test_accuracy", float(accuracy))
        # MLflow's default (skops) refuses the estimator's internal types unless each
        # is listed as trusted; the model is loaded in its own logged environment.
        mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            input_example=test_x[:2],
        )
        print(f"test_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
