"""Score a LeNet model on the test set of an MNIST folder and log the test metrics.

`python evaluate.py --model-uri MODEL --data FOLDER`, or as the MLflow project's
`evaluate` entry point: ct-service runs it to score a registered model (production,
a challenger) on a data version, handing it the model as a local folder and the data
as a read-only folder. It logs `test_accuracy`, `test_loss` and `test_samples` on
its own run, the same names training logs, and imports nothing from ct-service.
"""

from __future__ import annotations

import argparse
import sys

import mnist

EPSILON = 1e-7  # Keras's clip of probabilities in its cross-entropy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", required=True, help="an MLflow model: folder or URI")
    parser.add_argument("--data", default="keras", help='"keras", an IDX folder or an .npz')
    parser.add_argument("--batch-size", type=int, default=1000)
    return parser.parse_args(argv)


def score(model_uri: str, location: str, batch_size: int) -> dict[str, float]:
    """Test accuracy and loss of the model's probabilities on the test images."""
    import mlflow
    import numpy as np

    data = mnist.load(location)
    images = (data.x_test.astype("float32") / 255.0)[..., None]
    labels = data.y_test.astype("int64")
    model = mlflow.pyfunc.load_model(model_uri)
    probabilities = np.concatenate(
        [
            np.asarray(model.predict(images[start : start + batch_size]))
            for start in range(0, len(images), batch_size)
        ]
    )
    chosen = np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1.0)
    return {
        "test_accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "test_loss": float(-np.mean(np.log(chosen))),
        "test_samples": float(len(labels)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        mnist.check_location(args.data)
    except mnist.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import mlflow

    metrics = score(args.model_uri, args.data, args.batch_size)
    with mlflow.start_run():
        mlflow.log_metrics(metrics)
    print(" ".join(f"{name}={value:.4f}" for name, value in metrics.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
