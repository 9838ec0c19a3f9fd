"""The production history and the approval of candidates, on a real MLflow registry:
a real `mlflow server` (restarted in the middle: nothing is lost) or a temporary
SQLite store. The models are small pyfunc models (what is under test is the registry's
record, which does not care what a model computes); promotions are made as the
pipeline's promote step makes them, with the cause it builds, and everything a person
does goes through the `ct-service` command itself."""

from __future__ import annotations

import json

import mlflow
import pytest
from helpers import MlflowServer

from ct_service import approval, history, registry, run_tags
from ct_service.cli import main
from ct_service.exceptions import ApprovalError, RollbackError
from ct_service.history import Cause, Event, Move, Trigger
from ct_service.target import Target

MODEL = "digits"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Constant(mlflow.pyfunc.PythonModel):
    def __init__(self, value: float):
        self.value = value

    def predict(self, context, model_input, params=None):
        return [self.value] * len(model_input)


def candidate(accuracy: float) -> str:
    with mlflow.start_run() as run:
        mlflow.log_metric("test_accuracy", accuracy)
        mlflow.pyfunc.log_model(name="model", python_model=Constant(accuracy))
    return run.info.run_id


def pushed(pipeline_id: str) -> Cause:
    """A pipeline started by a push, as promotion_terms.cause() describes it."""
    return Cause(
        Trigger.PUSH,
        pipeline_id=pipeline_id,
        commit=COMMIT,
        branch="main",
        repository="github:acme/models",
        data="mnist=5b7e0f0c1d2a",
    )


def promote(client, accuracy: float, pipeline_id: str, manual: bool = False):
    return registry.promote(
        client,
        MODEL,
        candidate(accuracy),
        accuracy,
        Target(),
        {run_tags.PIPELINE_ID: pipeline_id},
        cause=pushed(pipeline_id),
        manual=manual,
    )


def ct(capsys, *argv: str) -> tuple[int, str, str]:
    """`ct-service ARGV` in this process: its exit code, stdout and stderr."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def production(client) -> str:
    return str(client.get_model_version_by_alias(MODEL, "production").version)


def connect(uri: str) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(uri, uri)


@pytest.fixture
def sqlite_client(settings, monkeypatch):
    monkeypatch.setenv("CT_HOME", str(settings.home))
    return connect(settings.tracking_uri)


@pytest.mark.slow
def test_every_move_is_in_the_history_with_cause_and_scores_and_survives_a_restart(
    tmp_path, monkeypatch, capsys
):
    """Promote, keep, promote, rollback, propose, replace, approve (twice), propose,
    reject, rollback --to an older version: `history` lists each, newest first, with
    its cause and both scores; the MLflow server restarted on the same store gives the
    same history; the tags the MLflow UI shows are on the model and its versions."""
    server = MlflowServer(tmp_path)
    try:
        monkeypatch.setenv("CT_HOME", str(tmp_path / "ct"))
        monkeypatch.setenv("CT_TRACKING_URI", server.url)
        client = connect(server.url)

        assert promote(client, 0.90, "p1").version == "1"
        kept = promote(client, 0.85, "p2")
        assert not kept.promoted and production(client) == "1"
        assert promote(client, 0.95, "p3").version == "3" and production(client) == "3"
        code, out, _ = ct(capsys, "rollback", MODEL)
        assert code == 0 and out == f"rolled back {MODEL} to version 1 (was 3)\n"

        waiting = promote(client, 0.97, "p4", manual=True)
        assert waiting.waiting and not waiting.promoted and production(client) == "1"
        assert f"ct-service approve {MODEL} 4" in waiting.reason
        newer = promote(client, 0.98, "p5", manual=True)
        assert newer.waiting and production(client) == "1"
        candidate_alias = client.get_model_version_by_alias(MODEL, "candidate")
        assert str(candidate_alias.version) == "5"

        code, _, err = ct(capsys, "approve", MODEL, "4")
        assert code == 2
        assert err == (
            f"error: version 4 of {MODEL!r} is not awaiting approval: the candidate is version 5\n"
        )
        code, out, _ = ct(capsys, "approve", MODEL, "5")
        assert code == 0 and production(client) == "5"
        assert out.startswith("version 5 approved by ")
        assert "test_accuracy 0.98 against production's 0.9 (version 1)" in out
        code, out, _ = ct(capsys, "approve", MODEL, "5")  # the same again: nothing changes
        assert code == 0 and out == "version 5 was approved already\n"

        assert promote(client, 0.99, "p6", manual=True).waiting
        code, out, _ = ct(capsys, "reject", MODEL, "6", "--reason", "fails on the March data")
        assert code == 0 and "rejected by" in out and "fails on the March data" in out
        assert production(client) == "5"

        code, out, _ = ct(capsys, "rollback", MODEL, "--to", "3")
        assert code == 0 and out == f"rolled back {MODEL} to version 3 (was 5)\n"
        code, _, err = ct(capsys, "rollback", MODEL, "--to", "2")
        assert code == 2
        assert err == (
            f"error: version 2 of {MODEL!r} was never in production; versions that were: 1, 3, 5\n"
        )

        code, out, _ = ct(capsys, "history", MODEL, "--json")
        assert code == 0
        before_restart = json.loads(out)
        moves = [
            (e["move"], e["from_version"], e["to_version"], e["candidate"])
            for e in before_restart["events"]
        ]
        assert moves == [
            ("rolled-back", "5", "3", "3"),
            ("rejected", "5", "5", "6"),
            ("proposed", "5", "5", "6"),
            ("approved", "1", "5", "5"),
            ("proposed", "1", "1", "5"),
            ("replaced", "1", "1", "4"),
            ("proposed", "1", "1", "4"),
            ("rolled-back", "3", "1", "1"),
            ("promoted", "1", "3", "3"),
            ("kept", "1", "1", "2"),
            ("promoted", "", "1", "1"),
        ]
        events = before_restart["events"]
        times = [e["time"] for e in events]
        assert times == sorted(times, reverse=True)
        assert before_restart["aliases"] == {
            "production": "3",
            "previous-production": "5",
            "candidate": "",
        }
        first = events[-1]  # the first promotion: a push, its commit and data
        assert first["cause"] == {
            "trigger": "push",
            "pipeline_id": "p1",
            "commit": COMMIT,
            "branch": "main",
            "repository": "github:acme/models",
            "data": "mnist=5b7e0f0c1d2a",
            "person": "",
        }
        assert (first["metric"], first["candidate_score"], first["production_score"]) == (
            "test_accuracy",
            0.9,
            None,
        )
        kept_event = events[-2]
        assert (kept_event["candidate_score"], kept_event["production_score"]) == (0.85, 0.9)
        assert kept_event["reason"] == kept.reason
        for event in (events[0], events[1], events[3], events[7]):  # rollbacks, approval, reject
            assert event["cause"]["trigger"] == "person" and event["cause"]["person"]
            assert event["cause"]["pipeline_id"] == ""
        assert (events[0]["candidate_score"], events[0]["production_score"]) == (0.95, 0.98)
        assert (events[1]["candidate_score"], events[1]["production_score"]) == (0.99, 0.98)
        assert "fails on the March data" in events[1]["reason"]
        assert (events[3]["candidate_score"], events[3]["production_score"]) == (0.98, 0.9)

        code, table, _ = ct(capsys, "history", MODEL)
        assert code == 0
        lines = table.splitlines()
        assert lines[0] == f"{MODEL}: @production 3, @previous-production 5"
        assert lines[1].split() == [
            "when", "(UTC)", "move", "production", "version", "scores", "cause", "reason"
        ]  # fmt: skip
        assert len(lines) == 2 + len(events)
        assert "rolled-back  5 -> 3" in lines[2] and "test_accuracy 0.9500 vs 0.9800" in lines[2]
        assert (
            "push github:acme/models main@01234567, data mnist=5b7e0f0c1d2a, pipeline p1"
            in (lines[-1])
        )

        server.stop()
        server.start()  # the same store: nothing is lost
        code, out, _ = ct(capsys, "history", MODEL, "--json")
        assert code == 0 and json.loads(out) == before_restart

        client = connect(server.url)  # what the MLflow UI shows on the model's pages
        model_tags = client.get_registered_model(MODEL).tags
        stored = [k for k in model_tags if k.startswith(run_tags.HISTORY_PREFIX)]
        assert len(stored) == len(events)
        assert json.loads(model_tags[max(stored)])["move"] == "rolled-back"
        versions = {v: client.get_model_version(MODEL, v).tags for v in ("2", "4", "5", "6")}
        assert versions["2"][run_tags.DECISION] == kept.reason
        assert versions["4"][run_tags.APPROVAL].startswith("replaced by version 5 at ")
        assert versions["5"][run_tags.APPROVAL].startswith("approved by ")
        assert versions["6"][run_tags.APPROVAL].startswith("rejected by ")
        assert versions["6"][run_tags.APPROVAL].endswith(": fails on the March data")
        assert versions["6"][run_tags.TARGET_METRIC] == "test_accuracy"
    finally:
        server.stop()


@pytest.mark.integration
def test_a_replayed_promotion_records_its_decision_once(sqlite_client):
    """The promote step is retried after a worker died: the version, the move and the
    history event are each there once."""
    client = sqlite_client
    run_id = candidate(0.9)
    for _ in range(2):
        registry.promote(client, MODEL, run_id, 0.9, Target(), {}, cause=pushed("p1"), manual=False)
    assert [e.move for e in history.read(client, MODEL).events] == [Move.PROMOTED]
    waiting = candidate(0.95)
    for _ in range(2):
        registry.promote(
            client, MODEL, waiting, 0.95, Target(), {}, cause=pushed("p2"), manual=True
        )
    assert [e.move for e in history.read(client, MODEL).events] == [Move.PROPOSED, Move.PROMOTED]


@pytest.mark.integration
def test_a_manual_winner_never_moves_production_by_itself(sqlite_client):
    """With no version in production yet, and with one: @production stays, the winner
    holds @candidate, and what it says names the command to run."""
    client = sqlite_client
    first = promote(client, 0.9, "p1", manual=True)
    assert first.waiting and not first.promoted
    assert registry.aliases(client, MODEL) == {
        "production": "",
        "previous-production": "",
        "candidate": "1",
    }
    assert "against no version in production" in first.reason
    approval.approve(client, MODEL, "1", "alice")
    worse = promote(client, 0.8, "p2", manual=True)  # no better: kept, nothing to approve
    assert not worse.waiting and "kept version 1 in production" in worse.reason
    better = promote(client, 0.95, "p3", manual=True)
    assert better.waiting and production(client) == "1"
    assert better.reason == (
        f"version 3 awaits approval as @candidate: test_accuracy 0.95 against production's "
        f"0.9 (version 1); production v1 not re-scored (no re-score was made for it); "
        f"compared with its stored test_accuracy 0.9; to promote it: ct-service approve "
        f"{MODEL} 3; to drop it: ct-service reject {MODEL} 3 --reason '...'"
    )


@pytest.mark.integration
def test_approve_and_reject_refuse_anything_but_the_waiting_candidate(sqlite_client, capsys):
    client = sqlite_client
    promote(client, 0.9, "p1")
    with pytest.raises(ApprovalError, match="^version 1 of 'digits' is not awaiting approval: no "):
        approval.approve(client, MODEL, "1", "alice")  # in production, but never approved
    promote(client, 0.95, "p2", manual=True)
    code, _, err = ct(capsys, "reject", MODEL, "9", "--reason", "no")
    assert (code, err) == (
        2,
        "error: version 9 of 'digits' is not awaiting approval: the candidate is version 2\n",
    )
    code, _, err = ct(capsys, "reject", MODEL, "2", "--reason", "  ")
    assert (code, err) == (2, "error: a rejection needs a reason (--reason TEXT)\n")
    code, _, err = ct(capsys, "approve", "digitz", "2")
    assert (code, err) == (2, "error: no registered model 'digitz'; registered: digits\n")
    code, out, _ = ct(capsys, "reject", MODEL, "2", "--reason", "too slow", "--json")
    assert code == 0
    assert json.loads(out)["changed"] is True and json.loads(out)["production"] == "1"
    code, out, _ = ct(capsys, "reject", MODEL, "2", "--reason", "too slow")
    assert (code, out) == (0, "version 2 was rejected already\n")
    assert [e.move for e in history.read(client, MODEL).events] == [
        Move.REJECTED,
        Move.PROPOSED,
        Move.PROMOTED,
    ]


@pytest.mark.integration
def test_rollback_to_the_version_in_production_is_refused(sqlite_client):
    client = sqlite_client
    promote(client, 0.9, "p1")
    promote(client, 0.95, "p2")
    with pytest.raises(RollbackError, match="^version 2 of 'digits' holds @production already$"):
        registry.rollback(client, MODEL, "2", "alice")
    with pytest.raises(RollbackError, match="was never in production; versions that were: 1, 2"):
        registry.rollback(client, MODEL, "7", "alice")


@pytest.mark.unit
def test_an_event_comes_back_from_its_tag_and_keys_sort_in_time_order():
    event = Event(
        Move.APPROVED, "1", "2", "2", "test_accuracy", 0.95, 0.9, "approved", pushed("p1"), 5.5
    )
    key, value = event.to_tag()
    assert key.startswith("ct.history.19700101T000005.500000Z-")
    assert Event.from_tag(value) == event
    later = Event(**{**event.__dict__, "time": 5.6})
    assert later.to_tag()[0] > key
    with pytest.raises(ValueError, match="not a history event"):
        Event.from_tag('{"move": "teleported"}')


@pytest.mark.unit
@pytest.mark.parametrize(
    ("cause", "text"),
    [
        (
            pushed("0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            "push github:acme/models main@01234567, data mnist=5b7e0f0c1d2a, pipeline 0f1e2d3c",
        ),
        (Cause(Trigger.RUN, pipeline_id="ab" * 16, commit=COMMIT, person="bob"),
         "run 01234567 by bob, pipeline abababab"),
        (Cause(Trigger.PERSON, person="alice"), "person alice"),
        (Cause(Trigger.SCHEDULE, pipeline_id="cd" * 16), "schedule, pipeline cdcdcdcd"),
    ],
)  # fmt: skip
def test_a_cause_reads_as_one_line(cause, text):
    assert cause.describe() == text


@pytest.mark.unit
def test_an_unreadable_tag_is_named_not_fatal():
    found = history.Read([], ["ct.history.20260101T000000.000000Z-beef"])
    from ct_service.cli.history_table import history_table

    assert history_table(MODEL, {"production": "1", "candidate": ""}, found).splitlines() == [
        f"{MODEL}: @production 1",
        "no production history yet",
        "1 tag(s) hold no event: ct.history.20260101T000000.000000Z-beef",
    ]


@pytest.mark.integration
def test_the_status_api_approves_rejects_and_lists_behind_its_token(
    sqlite_client, settings, tmp_path, redis_url, monkeypatch
):
    """The same two actions as the commands, on the webhook's status API: refused
    without the bearer token, a clear JSON error for a version that is not the
    candidate, and the person the request names in the history."""
    from dataclasses import replace

    from ct_service.webhook.app import create_app

    monkeypatch.setenv("HOOK_SECRET", "a-secret")
    repositories = tmp_path / "repositories.yaml"
    repositories.write_text(
        "repositories:\n  - {name: acme/models, provider: github, "
        "url: 'https://git.example.com/acme/models.git', secret_env: HOOK_SECRET}\n"
    )
    token = "status-api-token-0123456789"
    api = create_app(
        replace(
            settings, broker_url=redis_url, repositories_file=str(repositories), api_token=token
        )
    ).test_client()
    client = sqlite_client
    promote(client, 0.9, "p1")
    promote(client, 0.95, "p2", manual=True)
    promote(client, 0.97, "p3", manual=True)  # replaces version 2

    approve = f"/models/{MODEL}/versions/3/approve"
    assert api.post(approve, json={"by": "alice"}).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert api.post(approve, json={"by": "alice"}, headers=wrong).status_code == 401
    signed = {"Authorization": f"Bearer {token}"}
    answer = api.post(f"/models/{MODEL}/versions/2/approve", json={}, headers=signed)
    assert answer.status_code == 409
    assert answer.json == {
        "error": "version 2 of 'digits' is not awaiting approval: the candidate is version 3"
    }
    assert api.post(f"/models/{MODEL}/versions/2/reject", headers=signed).status_code == 400
    missing = api.post("/models/digitz/versions/3/approve", json={}, headers=signed)
    assert missing.status_code == 404 and "no registered model 'digitz'" in missing.json["error"]

    answer = api.post(approve, json={"by": "alice\n"}, headers=signed)
    assert answer.status_code == 200
    assert answer.json["production"] == "3" and answer.json["changed"] is True
    again = api.post(approve, json={"by": "alice"}, headers=signed)
    assert again.status_code == 200 and again.json["changed"] is False
    assert production(client) == "3"

    listed = api.get(f"/models/{MODEL}/history", headers=signed)
    assert listed.status_code == 200
    latest = listed.json["events"][0]
    assert latest["move"] == "approved"
    assert latest["cause"] == {
        "trigger": "person",
        "pipeline_id": "",
        "commit": "",
        "branch": "",
        "repository": "",
        "data": "",
        "person": "alice (via the status API)",
    }
    assert api.get(f"/models/{MODEL}/history").status_code == 401


@pytest.mark.unit
@pytest.mark.parametrize(
    ("project", "repository", "branch", "mode"),
    [
        (None, {}, "main", "automatic"),
        ("manual", {}, "main", "manual"),
        (None, {"*": "manual"}, "dev", "manual"),
        (None, {"main": "manual"}, "main", "manual"),
        (None, {"main": "manual"}, "dev", "automatic"),
        (None, {"main": "manual", "*": "automatic"}, "feature", "automatic"),
        ("manual", {"main": "automatic"}, "main", "manual"),  # a project may ask for more care
        ("automatic", {"*": "manual"}, "main", "manual"),  # never for less
    ],
)  # fmt: skip
def test_manual_promotion_comes_from_the_project_or_its_repository_branch(
    project, repository, branch, mode
):
    from ct_service.promotion_mode import PromotionMode, required

    modes = {b: PromotionMode(m) for b, m in repository.items()}
    chosen = required(PromotionMode(project) if project else None, modes, branch)
    assert chosen is PromotionMode(mode)


@pytest.mark.unit
def test_repositories_yaml_gives_promotion_per_repository_or_branch_and_names_a_bad_one(tmp_path):
    from ct_service.exceptions import SettingsError
    from ct_service.promotion_mode import PromotionMode
    from ct_service.repositories import Provider, load_repositories

    path = tmp_path / "repositories.yaml"
    entry = "  - {name: acme/%s, provider: github, url: 'https://git.example.com/a.git'%s}\n"
    path.write_text(
        "repositories:\n"
        + entry % ("all", ", promotion: manual")
        + entry % ("main", ", promotion: {main: manual}")
        + entry % ("none", "")
    )
    found = load_repositories(path, {})
    assert found[Provider.GITHUB, "acme/all"].promotion == (("*", PromotionMode.MANUAL),)
    assert found[Provider.GITHUB, "acme/main"].promotion == (("main", PromotionMode.MANUAL),)
    assert found[Provider.GITHUB, "acme/none"].promotion == ()
    path.write_text("repositories:\n" + entry % ("x", ", promotion: {main: by-hand}"))
    with pytest.raises(SettingsError, match=r"repositories\[0\].promotion.main must be"):
        load_repositories(path, {})


@pytest.mark.unit
def test_ct_yaml_promotion_is_read_and_a_bad_value_named(tmp_path):
    from ct_service.exceptions import ProjectError
    from ct_service.project import load_project
    from ct_service.promotion_mode import PromotionMode

    (tmp_path / "MLproject").write_text(
        "name: p\nentry_points:\n  main:\n    command: python t.py\n"
    )
    assert load_project(tmp_path).promotion is None
    (tmp_path / "ct.yaml").write_text("promotion: manual\n")
    assert load_project(tmp_path).promotion is PromotionMode.MANUAL
    (tmp_path / "ct.yaml").write_text("promotion: sometimes\n")
    with pytest.raises(
        ProjectError, match="promotion must be automatic or manual, got 'sometimes'"
    ):
        load_project(tmp_path)


@pytest.mark.unit
def test_a_pushed_pipeline_finds_its_repository_s_promotion(tmp_path):
    """The pipeline's recorded repository picks the allow-list entry; one started by
    `ct-service run --git` is matched by its URL; a local one has none."""
    from ct_service.orchestration.promotion_terms import repository_modes
    from ct_service.promotion_mode import PromotionMode
    from ct_service.settings import Settings
    from ct_service.tracking import Pipeline, PipelineSpec, PipelineStatus

    path = tmp_path / "repositories.yaml"
    path.write_text(
        "repositories:\n  - {name: acme/models, provider: gitlab, "
        "url: 'https://git.example.com/acme/models.git', promotion: {main: manual}}\n"
    )
    settings = Settings(home=tmp_path / "ct", repositories_file=str(path))

    def made(url: str, tags: dict[str, str]) -> Pipeline:
        spec = PipelineSpec("projects/p", "p", "p", {}, source_url=url, source_branch="main")
        return Pipeline("id", "1", spec, PipelineStatus.PROMOTING, 0, tags=tags)

    url = "https://git.example.com/acme/models.git"
    expected = {"main": PromotionMode.MANUAL}
    assert repository_modes(
        settings, made(url, {"ct.source.repository": "gitlab:acme/models"})
    ) == (expected)
    assert repository_modes(settings, made(url, {})) == expected
    assert repository_modes(settings, made("", {})) == {}
    assert repository_modes(settings, made("https://elsewhere.example/x.git", {})) == {}


@pytest.mark.unit
def test_a_pipeline_s_cause_names_its_push_or_who_ran_it_and_its_data():
    from ct_service.orchestration.promotion_terms import cause
    from ct_service.tracking import Pipeline, PipelineSpec, PipelineStatus

    spec = PipelineSpec(
        "projects/lenet", "lenet", "lenet", {}, commit=COMMIT, source_url="u", source_branch="main"
    )
    tags = {
        "ct.push_id": "7" * 32,
        "ct.source.repository": "github:acme/models",
        "mlflow.user": "worker",
    }
    push = Pipeline("ab" * 16, "1", spec, PipelineStatus.PROMOTING, 0, tags=tags)
    data = {"ct.data.mnist": "5b7e0f0c1d2a3b4c", "ct.metric.test_accuracy": "0.9"}
    assert cause(push, data) == Cause(
        Trigger.PUSH,
        pipeline_id="ab" * 16,
        commit=COMMIT,
        branch="main",
        repository="github:acme/models",
        data="mnist=5b7e0f0c1d2a",
        person="",  # the worker's account did not push
    )
    local = PipelineSpec("/home/bob/lenet", "lenet", "lenet", {}, commit="")
    run = Pipeline("cd" * 16, "1", local, PipelineStatus.PROMOTING, 0, tags={"mlflow.user": "bob"})
    assert cause(run, {}) == Cause(Trigger.RUN, pipeline_id="cd" * 16, person="bob")


@pytest.mark.unit
def test_a_data_or_scheduled_pipeline_s_cause_names_its_trigger_and_data_version():
    from ct_service.orchestration.promotion_terms import cause
    from ct_service.tracking import Pipeline, PipelineSpec, PipelineStatus

    spec = PipelineSpec("/srv/lenet", "lenet", "lenet", {}, commit=COMMIT)
    for trigger in ("data", "schedule"):
        tags = {
            "ct.trigger": trigger,
            "ct.data_version": "9f8e7d6c5b4a39281706",
            "mlflow.user": "w",
        }
        found = cause(Pipeline("ef" * 16, "1", spec, PipelineStatus.PROMOTING, 0, tags=tags), {})
        assert found == Cause(
            Trigger(trigger), pipeline_id="ef" * 16, commit=COMMIT, data="version 9f8e7d6c5b4a"
        )
        assert (
            found.describe() == f"{trigger} 01234567, data version 9f8e7d6c5b4a, pipeline efefefef"
        )


@pytest.mark.integration
def test_a_manual_winner_is_judged_and_approved_against_production_re_scored(sqlite_client):
    """`promotion: manual` uses the same comparison: the proposal names production's
    re-scored number and data version, approving it repeats them (ct.comparison on the
    version), and a score of another version than holds @production is not used."""
    from ct_service.champion import ChampionScore

    client = sqlite_client
    promote(client, 0.9, "p1")
    digest = "c0ffee" * 10 + "abcd"
    rescored = ChampionScore.rescored("1", "test_accuracy", 0.6, 0.9, digest,
                                      "evaluate entry point", "r1")  # fmt: skip
    proposed = registry.promote(
        client, MODEL, candidate(0.8), 0.8, Target(), {run_tags.PIPELINE_ID: "p2"},
        cause=pushed("p2"), manual=True, champion_score=rescored,
    )  # fmt: skip
    assert proposed.waiting and production(client) == "1"  # 0.8 beats 0.6, not the stored 0.9
    assert proposed.reason.startswith(
        "version 2 awaits approval as @candidate: test_accuracy 0.8 against production's "
        "0.6 (version 1); both on data version c0ffeec0ffee: production v1 re-scored by "
        "evaluate entry point, its stored test_accuracy 0.9; to promote it: "
    )
    approved = approval.approve(client, MODEL, "2", "alice")
    assert "test_accuracy 0.8 against production's 0.6 (version 1); both on data version" in (
        approved.reason
    )
    [event] = [e for e in history.read(client, MODEL).events if e.move is Move.APPROVED]
    assert event.production_score == 0.6 and event.data_version == digest

    stale = ChampionScore.rescored(
        "1", "test_accuracy", 0.1, 0.9, digest, "evaluate entry point", "r1"
    )  # fmt: skip  (scored before version 2 took @production)
    kept = registry.promote(
        client, MODEL, candidate(0.7), 0.7, Target(), {run_tags.PIPELINE_ID: "p3"},
        cause=pushed("p3"), champion_score=stale,
    )  # fmt: skip
    assert not kept.promoted and "its test_accuracy 0.8 is not worse than the candidate's 0.7" in (
        kept.reason
    )
    assert "production v2 not re-scored (production moved after scoring)" in kept.reason


@pytest.mark.unit
def test_an_event_recorded_before_champion_scores_is_still_read() -> None:
    old = {
        "move": "kept", "from_version": "1", "to_version": "1", "candidate": "2",
        "metric": "test_accuracy", "candidate_score": 0.8, "production_score": 0.9,
        "reason": "kept version 1", "cause": {"trigger": "run"}, "time": 1.0,
    }  # fmt: skip
    event = Event.from_tag(json.dumps(old))
    assert event.production_score == 0.9 and event.data_version == event.production_basis == ""
