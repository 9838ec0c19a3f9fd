"""The LeNet MLflow project on its own: parameter checks, and a short real run on
MNIST that logs everything and leaves a model that loads through `models:/`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LENET, ct_env, mlflow_run

sys.path.insert(0, str(LENET))
import mnist  # noqa: E402  (the project's own loader)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--conv-blocks", "5"],
            "error: conv_blocks must be between 1 and 4 for 28x28 input, got 5",
        ),
        (["--epochs", "-1"], "error: epochs must be at least 1, got -1"),
        (["--data", "/nonexistent/mnist"], "error: data folder not found: /nonexistent/mnist"),
        (
            ["--data", "/nonexistent/mnist.npz"],
            "error: data file not found: /nonexistent/mnist.npz",
        ),
        (["--dropout", "1.5"], "error: dropout must be in [0, 1), got 1.5"),
        (["--lr-decay", "1"], "error: lr_decay must be in [0, 1), got 1.0"),
        (["--epochs", "2.5"], "error: argument --epochs: expected a whole number, got '2.5'"),
    ],
)
def test_bad_parameters_exit_with_one_line_before_training(tmp_path: Path, args, reason):
    result = subprocess.run(
        [sys.executable, str(LENET / "train.py"), *args],
        cwd=tmp_path,  # MLflow's default experiment keeps artifacts in ./mlruns
        capture_output=True,
        text=True,
        env=ct_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db"),
    )
    assert result.returncode == 2
    assert result.stderr.strip() == reason
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started


@pytest.mark.unit
def test_idx_folder_gzipped_or_not_and_npz_load_the_same(tmp_path: Path, mnist_dir: Path):
    import gzip
    import shutil

    from_gz = mnist.load(str(mnist_dir))
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in mnist.IDX_FILES.values():
        with gzip.open(mnist_dir / f"{name}.gz") as src, open(plain / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    from_plain = mnist.load(str(plain))
    npz = tmp_path / "mnist.npz"
    np.savez(
        npz,
        x_train=from_gz.x_train,
        y_train=from_gz.y_train,
        x_test=from_gz.x_test,
        y_test=from_gz.y_test,
    )
    from_npz = mnist.load(str(npz))
    assert from_gz.x_train.shape == (60000, 28, 28) and from_gz.x_test.shape == (10000, 28, 28)
    assert set(np.unique(from_gz.y_test)) == set(range(10))
    for other in (from_plain, from_npz):
        assert np.array_equal(other.x_train, from_gz.x_train)
        assert np.array_equal(other.y_test, from_gz.y_test)


@pytest.mark.integration
def test_a_folder_without_mnist_is_refused(tmp_path: Path):
    with pytest.raises(mnist.DataError, match="has neither train-images-idx3-ubyte nor"):
        mnist.check_location(str(tmp_path))


@pytest.mark.slow
def test_a_short_mlflow_run_logs_everything(tmp_path: Path, mnist_dir: Path):
    import keras
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = ct_env(MLFLOW_TRACKING_URI=uri)
    params = {"epochs": 2, "max_train_samples": 2000, "data": mnist_dir}
    result = mlflow_run(LENET, params, env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch 2/2" in result.stdout

    client = mlflow.MlflowClient(uri, uri)
    [run] = client.search_runs(["0"])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["conv_blocks"] == "2"
    assert run.data.params["data"] == str(mnist_dir)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run.info.run_id, name)
        assert sorted(m.step for m in history) == [1, 2], name
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    assert run.data.metrics["test_loss"] > 0
    contexts = {
        d.dataset.name: ({t.value for t in d.tags}, d.dataset.digest)
        for d in run.inputs.dataset_inputs
    }
    assert contexts["mnist-train"][0] == {"training"} and contexts["mnist-train"][1]
    assert contexts["mnist-test"][0] == {"testing"}

    checkpoints = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert checkpoints == ["checkpoints/epoch-0001.keras", "checkpoints/epoch-0002.keras"]
    assert run.data.tags["checkpoint.last_epoch"] == "2"
    local = client.download_artifacts(
        run.info.run_id, "checkpoints/epoch-0002.keras", str(tmp_path)
    )
    restored = keras.models.load_model(local)
    assert int(restored.optimizer.iterations.numpy()) > 0  # optimizer state came along

    mlflow.set_tracking_uri(uri)
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "lenet-test")
    model = mlflow.pyfunc.load_model(f"models:/lenet-test/{version.version}")
    assert model.metadata.signature is not None
    assert model.metadata.saved_input_example_info is not None
    images = mnist.load(str(mnist_dir)).x_test[:200].astype("float32")[..., None] / 255.0
    probabilities = np.asarray(model.predict(images))
    assert probabilities.shape == (200, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)


def train_py(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LENET / "train.py"), *args],
        cwd=tmp_path,  # MLflow's default experiment keeps artifacts in ./mlruns
        capture_output=True,
        text=True,
        env=ct_env(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db"),
        timeout=600,
    )


@pytest.mark.slow
def test_a_run_resumes_from_another_runs_last_checkpoint(tmp_path: Path, mnist_dir: Path):
    import keras
    import mlflow

    common = ["--max-train-samples", "1000", "--data", str(mnist_dir)]
    common += ["--learning-rate", "0.004", "--lr-decay", "0.5"]
    first = train_py(tmp_path, "--epochs", "2", *common)
    assert first.returncode == 0, first.stderr[-2000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri, uri)
    [original] = client.search_runs(["0"])
    fewer = train_py(tmp_path, "--epochs", "1", "--resume-from", original.info.run_id, *common)
    assert fewer.returncode == 2
    assert fewer.stderr.strip() == (
        f"error: resume_from: run {original.info.run_id} already trained 2 epochs, "
        "more than the 1 asked for"
    )
    # all epochs trained (the run died before logging its model): nothing is trained
    # again; the checkpoint's model is evaluated and logged
    done = train_py(tmp_path, "--epochs", "2", "--resume-from", original.info.run_id, *common)
    assert done.returncode == 0, done.stderr[-2000:]
    [finished] = [r for r in client.search_runs(["0"]) if r.info.run_id != original.info.run_id]
    assert finished.data.metrics["test_accuracy"] > 0
    assert not client.get_metric_history(finished.info.run_id, "loss")  # no epoch again
    source = f"source_run_id = '{finished.info.run_id}'"
    assert client.search_logged_models(experiment_ids=["0"], filter_string=source)
    client.delete_run(finished.info.run_id)
    missing = train_py(tmp_path, "--epochs", "4", "--resume-from", "f" * 32, *common)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        f"error: resume_from: no run {'f' * 32}",
    )

    resumed = train_py(tmp_path, "--epochs", "4", "--resume-from", original.info.run_id, *common)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {original.info.run_id} after epoch 2" in resumed.stdout
    [run] = [r for r in client.search_runs(["0"]) if r.info.run_id != original.info.run_id]
    assert run.data.tags["checkpoint.loaded_from"] == original.info.run_id
    assert run.data.tags["checkpoint.loaded_epoch"] == "2"
    for name in ("loss", "val_accuracy"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, name)) == [3, 4]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
        "checkpoints/epoch-0003.keras",
        "checkpoints/epoch-0004.keras",
    ]
    before = keras.models.load_model(
        client.download_artifacts(
            original.info.run_id, "checkpoints/epoch-0002.keras", str(tmp_path / "a")
        )
    )
    after = keras.models.load_model(
        client.download_artifacts(
            run.info.run_id, "checkpoints/epoch-0003.keras", str(tmp_path / "b")
        )
    )
    steps_after_two_epochs = int(before.optimizer.iterations.numpy())
    per_epoch = steps_after_two_epochs // 2
    # the optimizer went on counting from the checkpoint: exactly one more epoch of steps
    assert int(after.optimizer.iterations.numpy()) == steps_after_two_epochs + per_epoch
    # and the learning rate schedule went on from the base's epochs (0.004 halved each
    # epoch: epoch 2 at 0.002, epoch 3 at 0.001), not from the continued run's first
    assert float(before.optimizer.learning_rate.numpy()) == pytest.approx(0.002)
    assert float(after.optimizer.learning_rate.numpy()) == pytest.approx(0.001)


@pytest.mark.integration
def test_fashion_mnist_from_debians_package_loads_like_mnist(mnist_dir: Path):
    """The search benchmark's harder task (`make fashion-mnist` installs it; `make test`
    does too): the same IDX format, different images."""
    fashion = Path("/usr/share/datasets/fashion-mnist")
    if not (fashion / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"Fashion-MNIST not found in {fashion}: run `make fashion-mnist`")
    data = mnist.load(str(fashion))
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert set(np.unique(data.y_test)) == set(range(10))
    assert not np.array_equal(data.x_test[:100], mnist.load(str(mnist_dir)).x_test[:100])
