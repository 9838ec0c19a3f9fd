"""Promotion, champion/challenger and rollback on a real MLflow registry (SQLite).
The models are small pyfunc models: what is under test is the registry logic,
which does not care what the model computes."""

from __future__ import annotations

import warnings

import mlflow
import pytest

from ct_service import registry
from ct_service.cli import main
from ct_service.exceptions import ModelNotFound, RollbackError
from ct_service.target import Target


class Constant(mlflow.pyfunc.PythonModel):
    def __init__(self, value: float):
        self.value = value

    def predict(self, context, model_input, params=None):
        return [self.value] * len(model_input)


@pytest.fixture
def client(settings):
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    return mlflow.MlflowClient(settings.tracking_uri, settings.registry_uri)


def candidate(accuracy: float) -> str:
    with mlflow.start_run() as run:
        mlflow.log_metric("test_accuracy", accuracy)
        mlflow.pyfunc.log_model(name="model", python_model=Constant(accuracy))
    return run.info.run_id


def promote(client, run_id: str, accuracy: float):
    return registry.promote(client, "digits", run_id, accuracy, Target(), {"ct.pipeline_id": "p"})


def production(client) -> str:
    return str(client.get_model_version_by_alias("digits", "production").version)


@pytest.mark.integration
def test_champion_challenger_and_rollback(client, settings, capsys, monkeypatch):
    first = promote(client, candidate(0.90), 0.90)
    assert first.promoted and first.version == "1" and production(client) == "1"
    assert client.get_model_version("digits", "1").current_stage == "Production"

    worse = promote(client, candidate(0.85), 0.85)
    assert not worse.promoted
    assert production(client) == "1"  # the better champion stays
    assert "kept version 1 in production" in worse.reason
    assert client.get_model_version("digits", "2").tags["ct.decision"] == worse.reason

    equal = promote(client, candidate(0.90), 0.90)
    assert not equal.promoted and production(client) == "1"

    better = promote(client, candidate(0.95), 0.95)
    assert better.promoted and better.version == "4"
    assert production(client) == "4"
    assert str(client.get_model_version_by_alias("digits", "previous-production").version) == "1"
    assert client.get_model_version("digits", "4").current_stage == "Production"
    assert client.get_model_version("digits", "1").current_stage == "Archived"
    assert mlflow.pyfunc.load_model("models:/digits@production").predict([[0]]) == [0.95]
    assert mlflow.pyfunc.load_model("models:/digits/Production").predict([[0]]) == [0.95]

    monkeypatch.setenv("CT_HOME", str(settings.home))
    assert main(["rollback", "digits"]) == 0
    assert "rolled back digits to version 1 (was 4)" in capsys.readouterr().out
    assert production(client) == "1"
    assert str(client.get_model_version_by_alias("digits", "previous-production").version) == "4"
    assert client.get_model_version("digits", "1").current_stage == "Production"
    assert client.get_model_version("digits", "4").current_stage == "Archived"
    assert mlflow.pyfunc.load_model("models:/digits@production").predict([[0]]) == [0.90]


@pytest.mark.integration
def test_registering_the_same_run_twice_gives_the_same_version(client):
    run_id = candidate(0.9)
    assert promote(client, run_id, 0.9).version == promote(client, run_id, 0.9).version == "1"
    assert len(client.search_model_versions("name = 'digits'")) == 1


@pytest.mark.integration
def test_rollback_without_a_previous_version_is_refused(client):
    promote(client, candidate(0.9), 0.9)
    with pytest.raises(RollbackError, match="no @previous-production"):
        registry.rollback(client, "digits")


@pytest.mark.integration
def test_rollback_of_a_model_the_registry_does_not_hold_names_it(
    client, settings, capsys, monkeypatch
):
    with pytest.raises(ModelNotFound, match="^no registered model 'digits'; none is registered"):
        registry.rollback(client, "digits")
    promote(client, candidate(0.9), 0.9)
    monkeypatch.setenv("CT_HOME", str(settings.home))
    capsys.readouterr()  # MLflow's lines about registering it
    assert main(["rollback", "digitz"]) == 2
    assert capsys.readouterr().err == "error: no registered model 'digitz'; registered: digits\n"


@pytest.mark.integration
def test_promotion_keeps_the_stage_deprecation_out_of_users_output(client, capfd):
    run_id = candidate(0.9)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        promote(client, run_id, 0.9)
    assert not [w for w in caught if "deprecat" in str(w.message).lower()]
    out, err = capfd.readouterr()
    assert "deprecat" not in (out + err).lower()
