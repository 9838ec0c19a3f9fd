"""The trust boundary in compose (README "Security", issue 11 item 4), attacked on the
stack brought up for real (tests/compose_stack.py): a pushed project probes its
surroundings from inside its training container and reaches its worker's gateway and
nothing else of the service (the MLflow server neither), by name or by address, holds
no tracking-server credential, and cannot change the registry or its pipeline; from this host, only the webhook's port is published
beyond 127.0.0.1, and Redis, MLflow and Flower refuse requests without passwords."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from compose_stack import PROBE_TARGETS, Stack, address, container, get, push, stack_up, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from stack_up(tmp_path_factory)


def test_only_the_webhook_is_published_beyond_this_host(stack: Stack) -> None:
    published = {}
    for service in ("redis", "postgres", "mlflow", "webhook", "worker", "beat", "flower", "git"):
        ports = container(service).attrs["NetworkSettings"]["Ports"] or {}  # type: ignore[attr-defined]
        published[service] = sorted(
            {binding["HostIp"] for bindings in ports.values() if bindings for binding in bindings}
        )
    webhook = published.pop("webhook")
    assert webhook and set(webhook) <= {"0.0.0.0", "::"}  # every address of the host
    assert published == {
        "redis": [], "postgres": [], "worker": [], "beat": [], "git": [],
        "mlflow": ["127.0.0.1"], "flower": ["127.0.0.1"],
    }  # fmt: skip


def test_redis_mlflow_and_flower_refuse_requests_without_their_passwords(stack: Stack) -> None:
    redis = container("redis")
    no_password = redis.exec_run(["redis-cli", "ping"])  # type: ignore[attr-defined]
    assert b"NOAUTH" in no_password.output
    with_password = redis.exec_run(  # type: ignore[attr-defined]
        ["sh", "-c", 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli ping']
    )
    assert with_password.output.strip() == b"PONG"

    search = stack.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert get(search)[0] == 401
    assert get(search, "admin", "password1234")[0] == 401
    assert get(search, "admin", stack.passwords["mlflow_admin_password"])[0] == 200

    assert get(stack.flower_url + "/")[0] == 401
    assert get(stack.flower_url + "/", "admin", stack.passwords["flower_password"])[0] == 200


def test_training_code_reaches_only_its_gateway_and_cannot_change_the_registry(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    for name, value in stack.admin().items():
        monkeypatch.setenv(name, value)
    client = stack.client()
    # What the probe goes for: a production model, and the services' addresses (an
    # attacker may know them; the test leaves them on the probe's own experiment, the
    # one experiment its gateway lets it read).
    addresses = {service: address(service) for service in PROBE_TARGETS}
    client.create_experiment("ct/probe", tags={"addresses": json.dumps(addresses)})
    run_id = client.create_run(client.create_experiment("stack")).info.run_id
    client.create_registered_model("lenet")
    before = client.create_model_version("lenet", f"runs:/{run_id}/model", run_id=run_id).version
    client.set_registered_model_alias("lenet", "production", before)
    push(stack, "probe")

    def probed() -> dict[str, str] | None:
        experiment = client.get_experiment_by_name("ct/probe")
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], "tags.`probe.done` = 'yes'")
        return runs[0].data.tags if runs else None

    tags = wait_for(probed, 600, "the probe's findings")
    reached = {name: tags[f"probe.{name}"] for name in PROBE_TARGETS}
    assert reached == {
        "redis": "unresolvable", "postgres": "unresolvable", "flower": "unresolvable",
        "webhook": "unresolvable", "git": "unresolvable", "mlflow": "unresolvable",
    }, reached  # fmt: skip
    by_address = {k.removeprefix("probe.address."): v for k, v in tags.items() if ".address." in k}
    assert set(by_address) == set(PROBE_TARGETS)
    # the networks are kept apart: no answer at all (a refusal would prove a route)
    assert not {"open", "ConnectionRefusedError"} & set(by_address.values()), by_address
    assert tags["probe.user"] == ""  # no credential of the tracking server in the container
    assert tags["probe.tracking"].startswith("http://") and ":5000" not in tags["probe.tracking"]
    for action in ("set_alias", "delete_alias", "new_version", "make_admin", "pipeline_tag"):
        assert tags[f"probe.{action}"] == "PERMISSION_DENIED", (action, tags[f"probe.{action}"])
    environment = set(tags["probe.environment"].split(","))
    assert not {n for n in environment if n.startswith("CT_")}
    assert "MLFLOW_TRACKING_PASSWORD" not in environment
    assert client.get_model_version_by_alias("lenet", "production").version == before
    assert json.dumps(tags).count(stack.passwords["mlflow_admin_password"]) == 0
