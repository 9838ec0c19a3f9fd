"""ct-service: continuous training for MLflow projects."""

__version__ = "0.1.0"
