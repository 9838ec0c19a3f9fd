"""Score a digits model on a test set and log `test_accuracy` on its own run.

`python evaluate.py --model-uri MODEL [--data FOLDER]`, or as the MLflow project's
`evaluate` entry point (ct-service runs it to score a registered model on a data
version). The test set is the fixed split train.py holds out (`--data builtin`), or
a folder's `test.csv`: 64 pixel columns and a `label` column.
"""

from __future__ import annotations

import argparse
import os
import sys

import mlflow
import mlflow.pyfunc
import numpy as np
from sklearn.metrics import accuracy_score
from train import split

TEST_FILE = "test.csv"
LABEL = "label"


def test_set(location: str) -> tuple[np.ndarray, np.ndarray]:
    if location == "builtin":
        _, test_x, _, test_y = split()
        return test_x, test_y
    path = os.path.join(location, TEST_FILE)
    if not os.path.isfile(path):
        raise SystemExit(f"error: {location} has no {TEST_FILE}")
    import pandas as pd

    table = pd.read_csv(path)
    if LABEL not in table:
        raise SystemExit(f"error: {path} has no {LABEL} column")
    return table.drop(columns=[LABEL]).to_numpy(), table[LABEL].to_numpy()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--data", default="builtin")
    args = parser.parse_args(argv)

    features, labels = test_set(args.data)
    model = mlflow.pyfunc.load_model(args.model_uri)
    accuracy = accuracy_score(labels, np.asarray(model.predict(features)))
    with mlflow.start_run():
        mlflow.log_metrics({"test_accuracy": float(accuracy), "test_samples": float(len(labels))})
    print(f"test_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
