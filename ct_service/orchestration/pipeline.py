"""The pipeline's steps. Each one re-reads its state from MLflow, does nothing when
that state says it already ran (so a replayed message is harmless), persists its
result, and returns the next step for the caller to enqueue."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from mlflow.entities import Run

from ct_service import keys as names
from ct_service import notify, policy, registry, run_tags, search_picture
from ct_service.attempt import Attempt, AttemptStatus
from ct_service.checkout import (
    remove,
)
from ct_service.exceptions import CtError, PipelineNotFound, ProjectError
from ct_service.execution import env_manager
from ct_service.execution.executor import AttemptRequest, AttemptResult, Halt, Heartbeat
from ct_service.execution.lease import Lease, holder
from ct_service.execution.loader import executor_for
from ct_service.execution.local import refuse_docker_only
from ct_service.execution.stop_watch import StopWatch
from ct_service.keystore import held, keystore_for
from ct_service.orchestration import (
    champion_scoring,
    data_inputs,
    git_source,
    production_start,
    promotion_terms,
    status_reports,
)
from ct_service.orchestration.git_source import GitSource
from ct_service.orchestration.pushes import PushRecord, PushRecords, push_records_for
from ct_service.orchestration.scoring import refuse_pushed_code_outside_a_container
from ct_service.project import ENTRY_POINT, load_project
from ct_service.report import summarize
from ct_service.settings import Settings
from ct_service.space import Role
from ct_service.stop_early import StopRule
from ct_service.stop_interval import gaps
from ct_service.target import Budget, Direction, Target, choose_target
from ct_service.tracking import Outcome, Pipeline, PipelineSpec, PipelineStatus, Tracker

log = logging.getLogger(__name__)


class Task(str, Enum):
    """Celery task names, one per step (workers.tasks runs each; its queue is set in
    orchestration/queue.py)."""

    INTAKE = "ct.pipeline.intake"  # intake(): the MLflow runs of the pushes recorded
    START = "ct.pipeline.start"  # start(): check the push still matters, create attempt 1
    RUN_ATTEMPT = "ct.train.run_attempt"  # run_attempt(): train one attempt
    REPRODUCE = "ct.train.reproduce"  # reproduce.train(): a registered version trained again
    DECIDE = "ct.pipeline.decide"  # decide(): the policy's verdict on the attempt
    SCORE_CHAMPION = "ct.train.score_champion"  # score_champion(): production on the data
    PROMOTE = "ct.registry.promote"  # promote(): register, alias production
    NOTIFY = "ct.notify.send"  # notify_people(): e-mail and chat
    REPORT_STATUS = "ct.status.report"  # status_reports.send(): the commit's status on its host
    RESUME = "ct.pipeline.resume"  # recovery: an attempt killed from outside, resumed
    WATCHDOG_SCAN = "ct.watchdog.scan"  # recovery: Celery beat's periodic scan


@dataclass(frozen=True)
class Step:
    task: Task
    args: tuple[str, ...]


def create(
    settings: Settings,
    location: str,
    overrides: Mapping[str, Any] | None = None,
    *,
    commit: str | None = None,
    target: Target | None = None,
    budget: Budget | None = None,
    adopt_run_id: str = "",
    source: GitSource | None = None,
) -> str:
    """Persist a new pipeline (status queued) and return its id; nothing runs yet.
    `location` is a project folder, or with `source` the project's path in the
    repository."""
    if source is not None:
        return git_source.create_pipeline(
            settings, source, location, overrides, commit, target, budget
        )
    project = load_project(location)
    if settings.execution == "local":  # refused before anything is recorded:
        refuse_docker_only(project.path)
        env_manager.choose(project.path, settings.env_manager)  # a manager it cannot have
    checked = project.initial_config(overrides)  # bad parameters are refused here
    chosen_target, target_from = choose_target(target, settings, project.target)
    data = data_inputs.declared_version(settings, project, overrides or {})  # before recording
    spec = PipelineSpec(
        project_path=str(project.path),
        project_name=project.name,
        model_name=settings.model_name or project.name,
        initial_config=data_inputs.pinned_config(
            settings, data, {name: checked[name] for name in overrides or {}}
        ),
        target=chosen_target,
        target_from=target_from,
        budget=budget or settings.budget,
        commit=project.commit() if commit is None else commit,
    )
    return Tracker(settings).create_pipeline(spec, adopt_run_id, data.to_tags() if data else None)


def intake(settings: Settings, started: Callable[[Step], None]) -> frozenset[str]:
    """Create the pipeline run of each push the webhook recorded that has none yet,
    oldest first, handing each run's start step to `started` at once; the pushes it
    looked at. A push refused for what it is (a ct-service error: its record names
    what this service cannot fetch) is marked failed with the reason (the status API
    shows it) and the others go on; any other error stops the intake for its retry,
    the pushes still waiting: nothing recorded is dropped for a passing outage."""
    records = push_records_for(settings)
    if records is None:
        raise ProjectError("pushed pipelines need the webhook's Redis (CT_BROKER_URL)")
    waiting = records.waiting()
    for push_id in waiting:
        try:
            step = create_from_push(settings, push_id)
        except CtError as error:
            log.warning("push %s cannot become a pipeline: %s", push_id, error)
            records.failed(push_id, str(error))
            continue
        if step is not None:
            started(step)
    return frozenset(waiting)


def create_from_push(settings: Settings, push_id: str) -> Step | None:
    """Create one recorded push's MLflow run, tagged with the pipeline id the webhook
    answered; its start step. Idempotent: a second call finds the run it created; a
    commit that already has a pipeline (a push redelivered after its delivery keys
    expired) maps the push to that one and starts nothing."""
    records = push_records_for(settings)
    if records is None:
        raise ProjectError("a pushed pipeline needs the webhook's Redis (CT_BROKER_URL)")
    record = records.load(push_id)
    if record is None:
        log.warning("push %s waits without its record; nothing to create", push_id)
        records.forget(push_id)
        return None
    if records.run_of(push_id):
        return None
    keys = keystore_for(settings)
    claim = names.create_claim(push_id)
    if not keys.claim(claim, holder(), names.CREATE_CLAIM_SECONDS):
        return None  # another intake is creating it right now
    try:
        with held(keys, claim, holder(), names.CREATE_CLAIM_SECONDS):  # MLflow may be slow
            return _create_run(settings, records, record)
    finally:
        keys.delete(claim)


def _create_run(settings: Settings, records: PushRecords, record: PushRecord) -> Step | None:
    push_id = record.pipeline_id
    tracker = Tracker(settings)
    existing = tracker.pipeline_for_push(push_id)
    if existing:  # created by an intake that died before it said so
        records.created(push_id, existing)
        return Step(Task.START, (existing,))  # start is idempotent
    earlier = tracker.pipeline_for_commit(record.url, record.branch, record.commit)
    if earlier:  # a delivery again (or a replay) of a commit trained already
        records.same_commit_as(record, earlier, tracker.pipeline(earlier).spec.source_sequence)
        return None
    run_id = git_source.create_pipeline(
        settings,
        GitSource(
            url=record.url,
            branch=record.branch,
            sequence=record.sequence,
            repository=record.repository,
            changed_since=record.changed_since,
            watched=record.watched,
        ),
        record.project,
        None,
        record.commit,
        record.chosen_target(),
        None,
        push_id=push_id,
    )
    records.created(push_id, run_id)
    status_reports.due(tracker, run_id)
    return Step(Task.START, (run_id,))


def _newer_push(settings: Settings, tracker: Tracker, pipeline: Pipeline) -> str:
    """A later push to the pipeline's branch: one whose run exists, or one the
    webhook recorded whose run is not created yet. Later means its commit was first
    seen later (pushes.py numbers a commit once): a delivery of an older commit, however
    late, never ends a newer pipeline."""
    newer = tracker.newer_pipeline(pipeline)
    records = push_records_for(settings)
    repository = pipeline.tags.get(run_tags.SOURCE_REPOSITORY, "")
    spec = pipeline.spec
    if newer or records is None or not repository or not spec.source_sequence:
        return newer
    for push_id in records.numbered_after(repository, spec.source_branch, spec.source_sequence):
        if _first_seen_after(tracker, records, push_id, spec.source_sequence):
            return push_id
    return ""


def _first_seen_after(tracker: Tracker, records: PushRecords, push_id: str, sequence: int) -> bool:
    """Whether a push numbered after `sequence` carries a commit first seen after it.
    A push whose commit has a pipeline already ranks as that pipeline: a replay of a
    commit first seen before the webhook kept first sights got a new number, and the
    commit's pipeline run in MLflow keeps the one it had (the intake maps the push to
    it; until then this check does)."""
    run_id = records.run_of(push_id)
    if not run_id:
        record = records.load(push_id)
        if record is None:  # nothing left but its number
            return True
        run_id = tracker.pipeline_for_commit(record.url, record.branch, record.commit)
    if not run_id:
        return True
    try:
        return tracker.pipeline(run_id).spec.source_sequence > sequence
    except PipelineNotFound:  # its run was deleted: its number decides
        return True


def _end_untrained(
    settings: Settings, tracker: Tracker, pipeline_id: str, outcome: Outcome, reason: str
) -> None:
    """Finish a pipeline that has nothing to train; nobody is notified."""
    remove(settings.home / "work" / pipeline_id)  # gone before anyone sees it finished
    tracker.set_tags(
        pipeline_id,
        {
            run_tags.STATUS: PipelineStatus.FINISHED.value,
            run_tags.OUTCOME: outcome.value,
            run_tags.REASON: reason,
        },
    )
    tracker.client.set_terminated(pipeline_id, "FINISHED")
    status_reports.due(tracker, pipeline_id)


def start(settings: Settings, pipeline_id: str) -> Step | None:
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    if pipeline.status is not PipelineStatus.QUEUED:
        return None
    if pipeline.spec.source_branch:
        newer = _newer_push(settings, tracker, pipeline)
        if newer:  # the rule: the newest push to a branch is trained, older queued ones not
            reason = f"superseded by pipeline {newer} for a newer push"
            _end_untrained(settings, tracker, pipeline_id, Outcome.SUPERSEDED, reason)
            return None
    if pipeline.tags.get(run_tags.SOURCE_CHANGED_SINCE) and not git_source.model_code_changed(
        settings, pipeline
    ):
        reason = "skipped: no change to the model code"
        _end_untrained(settings, tracker, pipeline_id, Outcome.SKIPPED, reason)
        return None
    # Read the project at the pipeline's commit: a git source's overrides are checked
    # against its MLproject only now.
    project = load_project(git_source.project_folder(settings, pipeline))
    if pipeline.spec.target_from == "default" and project.target is not None:
        tracker.retarget(pipeline_id, project.target, "ct.yaml")  # read at its commit
        pipeline = tracker.pipeline(pipeline_id)
    # the parameters asked for (the declared data's folder among them); the rest are defaults
    given = data_inputs.pin_at_start(settings, tracker, pipeline, project)
    config, reason = project.initial_config(given), "initial configuration"
    if run_tags.RESUME_FROM_PARAM in config:  # a run is given ct.checkpoint_run, which only
        config[run_tags.RESUME_FROM_PARAM] = ""  # the service sets: record that, not a default
    declared = project.declared()
    continues, start_epoch = "", 0
    retrained = production_start.first_from_production(tracker, pipeline, project, config)
    if retrained is not None:  # production on new data: its configuration (and weights)
        config, reason = retrained.config, retrained.reason
        continues, start_epoch = retrained.continues, retrained.start_epoch
    else:
        prior = tracker.prior_attempts(pipeline, declared=declared)  # same parameters, space
        warm = policy.warm_start(config, set(given), prior, project.space, pipeline.spec.target)
        if warm is not None:
            config, reason = warm
    first = policy.within_epoch_budget(
        policy.Decision(policy.Action.TRAIN, reason, config, continues=continues),
        [],
        project.space,
        pipeline.spec.budget,
        start_epoch=start_epoch,
    )
    config, reason = first.config, first.reason
    tracker.set_tags(
        pipeline_id,
        {
            run_tags.INITIAL_CONFIG: json.dumps(config, sort_keys=True),
            run_tags.DECLARED: declared,
            **({run_tags.SCHEDULE: project.schedule.to_json()} if project.schedule else {}),
        },
    )
    attempt_id = tracker.create_attempt(
        pipeline, 1, config, reason, continues=continues, start_epoch=start_epoch
    )
    tracker.set_tags(pipeline_id, {run_tags.STATUS: PipelineStatus.RUNNING.value})
    status_reports.due(tracker, pipeline_id)
    return Step(Task.RUN_ATTEMPT, (pipeline_id, attempt_id))


def run_attempt(settings: Settings, pipeline_id: str, attempt_id: str) -> Step | None:
    """Train one queued attempt: claim it, ready its environment, mark it running,
    run it under a lease, record how it ended. A failure before training starts
    releases the claim and puts the attempt back in the queue, so a retry of this
    step runs it again."""
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    tags = _queued_attempt(tracker, pipeline, attempt_id)
    if tags is None:
        return None
    keys = keystore_for(settings)
    claim = names.run_claim(attempt_id)
    if not keys.claim(claim, holder(), names.RUN_CLAIM_SECONDS):
        return None  # a duplicate message is starting it right now
    try:
        with held(keys, claim, holder(), names.RUN_CLAIM_SECONDS):  # an image build is slow
            executor = executor_for(settings)
            request = _attempt_request(settings, pipeline, attempt_id, tags)
            production_start.check_checkpoint_run(tracker, pipeline, request.parameters)
            request = data_inputs.attach(settings, tracker, pipeline, attempt_id, request)
            request, choices = executor.prepare(request)
        refuse_pushed_code_outside_a_container(settings, pipeline, executor.name)
        watch = _stop_watch(settings, tracker, pipeline, attempt_id, tags)
        tracker.set_tags(
            attempt_id,
            {
                **choices,
                run_tags.STATUS: AttemptStatus.RUNNING.value,
                run_tags.EXECUTOR: executor.name,
                run_tags.WORKER: holder(),
                run_tags.HEARTBEAT: f"{time.time():.0f}",
                run_tags.STARTED: f"{time.time():.3f}",
            },
        )
    except BaseException:
        keys.delete(claim)
        raise
    lease = Lease(tracker.client, keys, attempt_id, settings.recovery)
    try:
        result = executor.run(request, _heartbeat(lease, watch))
    finally:
        lease.release()
    return _record_result(tracker, pipeline, attempt_id, result, request.log_path)


def _stop_watch(
    settings: Settings, tracker: Tracker, pipeline: Pipeline, attempt_id: str, tags: dict[str, str]
) -> StopWatch:
    """What watches the attempt's validation curve to stop it early: the project's
    rule, judged up to the most epochs its search space allows (under an epoch
    budget: its own epochs, all the budget left it; on a rung of successive halving:
    the horizon its decision recorded), beside the curves of the
    pipeline's other finished attempts (not the one it continues), with the
    validation-test gaps they measured (stop_interval)."""
    project = load_project(git_source.project_folder(settings, pipeline))
    rule = project.stop_rule
    target = pipeline.spec.target
    metric = rule.validation_metric(target)
    finished = (
        [a for a in tracker.attempts(pipeline, validation_metric=metric) if a.finished]
        if rule.enabled
        else []
    )
    watches_behind = rule.enabled and rule.behind
    carried_on = {attempt_id, *tracker.carried_on(attempt_id)} if watches_behind else set()
    others = [
        a.validation
        for a in finished
        if watches_behind and a.validation and a.run_id not in carried_on
    ]
    sign = 1.0 if target.direction is Direction.MAXIMIZE else -1.0
    measured = gaps(((a.metric, a.validation) for a in finished if a.metric is not None), sign)
    epochs = project.space.with_role(Role.EPOCHS)
    horizon = int(epochs[0].high) if len(epochs) == 1 else 0  # 0: never hopeless
    own = json.loads(tags.get(run_tags.CONFIG, "{}")).get(epochs[0].name) if horizon else None
    if pipeline.spec.budget.max_epochs and own is not None:
        horizon = min(horizon, int(float(own)))
    if tags.get(run_tags.HORIZON, "").isdigit():  # a rung: it may be continued past its own
        horizon = int(tags[run_tags.HORIZON])
    try:
        margin: float | None = float(tags.get(run_tags.STOP_MARGIN, ""))
    except ValueError:
        margin = None  # none asked for (or unreadable): the rule's own
    return StopWatch(
        tracker.client,
        attempt_id,
        target,
        rule,
        horizon,
        earlier=tracker.earlier_values(attempt_id, metric) if rule.enabled else (),
        margin=margin,
        earlier_curves=others,
        gaps=measured,
    )


def _heartbeat(lease: Lease, watch: StopWatch) -> Heartbeat:
    def beat() -> Halt | None:
        if not lease.refresh():
            return Halt("stopped: another run took the attempt over", interrupted=True)
        return watch.check()

    return beat


def _queued_attempt(tracker: Tracker, pipeline: Pipeline, attempt_id: str) -> dict[str, str] | None:
    """The attempt's tags when it waits to be trained; None when there is nothing to do."""
    tags = tracker.client.get_run(attempt_id).data.tags
    if tags.get(run_tags.PIPELINE_ID) != pipeline.id:
        raise PipelineNotFound(f"run {attempt_id} is not an attempt of pipeline {pipeline.id}")
    if tags.get(run_tags.STATUS) != AttemptStatus.QUEUED.value:
        log.info("attempt %s is %s already; nothing to do", attempt_id, tags.get(run_tags.STATUS))
        return None
    if pipeline.status is not PipelineStatus.RUNNING:
        return None
    return tags


def _attempt_request(
    settings: Settings, pipeline: Pipeline, attempt_id: str, tags: dict[str, str]
) -> AttemptRequest:
    """What to run: the project at its commit, with the attempt's parameters, within
    the attempt time limit and what is left of the pipeline's time budget."""
    timeout = settings.attempt_timeout_seconds
    if pipeline.spec.budget.max_wall_seconds:
        timeout = max(
            1.0, min(timeout, pipeline.spec.budget.max_wall_seconds - pipeline.elapsed_seconds)
        )
    return AttemptRequest(
        project_uri=str(git_source.project_folder(settings, pipeline)),
        entry_point=ENTRY_POINT,
        parameters=Tracker.run_parameters(tags),
        experiment_id=pipeline.experiment_id,
        run_id=attempt_id,
        timeout_seconds=timeout,
        log_path=settings.home / "logs" / f"attempt-{attempt_id}.log",
    )


def _record_result(
    tracker: Tracker, pipeline: Pipeline, attempt_id: str, result: AttemptResult, log_path: Path
) -> Step | None:
    """Keep the attempt's output, end its run, and hand it on: to resumption when it
    was killed from outside, else to the policy."""
    run = tracker.client.get_run(attempt_id)
    if run.data.tags.get(run_tags.STATUS) == AttemptStatus.RESUMED.value:
        log.warning("attempt run %s was resumed by another run meanwhile", attempt_id)
        return None
    _keep_log(tracker, attempt_id, log_path)
    if tracker.pipeline(pipeline.id).outcome == Outcome.CANCELLED.value:
        return None  # cancel() ended the attempt while it trained; nothing to decide
    if result.refused:
        tracker.set_tags(attempt_id, {run_tags.REFUSED: result.refused})
    if result.interrupted:
        tracker.set_tags(
            attempt_id,
            {run_tags.STATUS: AttemptStatus.INTERRUPTED.value, run_tags.FAILURE: result.failure},
        )
        return Step(Task.RESUME, (pipeline.id, attempt_id))
    failure = result.failure
    stopped_early = run.data.tags.get(run_tags.STOPPED_EARLY, "")
    if stopped_early and not result.succeeded and failure.startswith("stopped early"):
        failure = ""  # a hopeless run that ignored the request: ended here, on purpose
    elif result.succeeded and pipeline.spec.target.metric not in run.data.metrics:
        logged = ", ".join(sorted(run.data.metrics)) or "none"
        failure = (
            f"the run finished without logging the target metric "
            f"{pipeline.spec.target.metric}; it logged: {logged}"
        )
    if run.info.status == "RUNNING":  # killed before MLflow could end it
        tracker.client.set_terminated(attempt_id, "FAILED" if failure else "FINISHED")
    status = AttemptStatus.FAILED if failure else AttemptStatus.FINISHED
    tracker.set_tags(attempt_id, {run_tags.STATUS: status.value, run_tags.FAILURE: failure})
    return Step(Task.DECIDE, (pipeline.id, attempt_id))


def decide(settings: Settings, pipeline_id: str, attempt_id: str) -> Step | tuple[Step, ...] | None:
    """The policy's verdict once an attempt has ended. With several attempts training
    at once (CT_PARALLEL_ATTEMPTS), the one that ends last decides from all of them;
    one that ends while others still train waits, unless it met the target: then it
    is promoted at once and the others are asked to stop. Each round is decided
    exactly once (a claim, and the pipeline's ct.decided_through)."""
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    if pipeline.status is not PipelineStatus.RUNNING:
        return None
    project = load_project(git_source.project_folder(settings, pipeline))
    target = pipeline.spec.target
    attempts = tracker.attempts(
        pipeline, validation_metric=project.stop_rule.validation_metric(target)
    )
    ended = next((a for a in attempts if a.run_id == attempt_id), None)
    if ended is None or ended.status not in (AttemptStatus.FINISHED, AttemptStatus.FAILED):
        return None
    if ended.decision and not ended.decision.startswith(run_tags.WAITING):
        return None  # decided already
    training = [a for a in attempts if a.status in IN_FLIGHT]
    if training and not (ended.finished and target.is_met(ended.metric)):
        waiting = f"{run_tags.WAITING}{len(training)} attempt(s) of this round still train"
        tracker.set_tags(attempt_id, {run_tags.DECISION: waiting})
        return None
    latest = attempts[-1].number
    if int(pipeline.tags.get(run_tags.DECIDED_THROUGH, "0")) >= latest:
        return None
    keys = keystore_for(settings)
    claim = names.decide_claim(pipeline_id, "promote" if training else str(latest))
    if not keys.claim(claim, holder(), names.DECIDE_CLAIM_SECONDS):
        return None  # another attempt of the round is deciding it right now
    try:
        decisions = policy.decide_several(
            [a for a in attempts if a.status not in IN_FLIGHT],
            project.space,
            target,
            pipeline.spec.budget,
            slots=settings.parallel_attempts,
            prior=tracker.prior_attempts(pipeline),
            elapsed_seconds=pipeline.elapsed_seconds,
            stop_rule=project.stop_rule if project.stop_rule.enabled else None,
        )
        step = _act(tracker, pipeline, attempts, decisions, project.space_inferred)
        tracker.set_tags(attempt_id, {run_tags.DECISION: step.verdict})
        tracker.set_tags(pipeline_id, {run_tags.DECIDED_THROUGH: str(latest)})
    except BaseException:
        keys.delete(claim)
        raise
    if training:
        _stop_the_rest(tracker, training, f"attempt {ended.number} met the target")
    return step.next


IN_FLIGHT = (AttemptStatus.QUEUED, AttemptStatus.RUNNING, AttemptStatus.INTERRUPTED)


@dataclass(frozen=True)
class _Acted:
    next: Step | tuple[Step, ...]
    verdict: str  # the decision tag: "<verb>: <reason>"


def _act(
    tracker: Tracker,
    pipeline: Pipeline,
    attempts: list[Attempt],
    decisions: list[policy.Decision],
    space_inferred: bool,
) -> _Acted:
    """Carry out the policy's decisions: create the attempts to train, or mark the
    pipeline for promotion, or finish it."""
    first = decisions[0]
    if first.action is policy.Action.TRAIN and space_inferred:
        note = " (search space inferred from the MLproject; see `ct-service space`)"
        decisions = [replace(d, reason=d.reason + note) for d in decisions]
        first = decisions[0]
    for decision in decisions:
        log.info("pipeline %s: %s (%s)", pipeline.id, decision.action.value, decision.reason)
    if first.action is policy.Action.TRAIN:
        numbers = range(attempts[-1].number + 1, attempts[-1].number + 1 + len(decisions))
        steps = tuple(
            Step(Task.RUN_ATTEMPT, (pipeline.id, _create(tracker, pipeline, number, decision)))
            for number, decision in zip(numbers, decisions, strict=True)
        )
        which = ("attempts " if len(steps) > 1 else "attempt ") + " and ".join(map(str, numbers))
        status_reports.due(tracker, pipeline.id)
        return _Acted(steps[0] if len(steps) == 1 else steps, f"train {which}: {first.reason}")
    if first.action is policy.Action.PROMOTE:
        tracker.set_tags(
            pipeline.id,
            {
                run_tags.STATUS: PipelineStatus.PROMOTING.value,
                run_tags.CANDIDATE: first.derived_from,
                run_tags.REASON: first.reason,
            },
        )
        return _Acted(Step(Task.SCORE_CHAMPION, (pipeline.id,)), f"promote: {first.reason}")
    outcome, reason = _stop_outcome(attempts, first)
    _finish(tracker, pipeline.id, outcome, reason + _refusals(tracker, pipeline))
    return _Acted(Step(Task.NOTIFY, (pipeline.id,)), f"stop: {first.reason}")


def _create(tracker: Tracker, pipeline: Pipeline, number: int, decision: policy.Decision) -> str:
    return tracker.create_attempt(
        pipeline,
        number,
        decision.config,
        decision.reason,
        decision.derived_from,
        continues=decision.continues,
        stop_margin=decision.stop_margin,
        horizon=decision.horizon,
    )


def _stop_the_rest(tracker: Tracker, training: list[Attempt], why: str) -> None:
    """Once a round's winner is promoted: queued attempts never start (run_attempt
    trains only for a running pipeline) and are marked so; running ones are asked to
    stop (projects that honour ct.stop_requested stop after their current batch)."""
    for attempt in training:
        if attempt.status is AttemptStatus.RUNNING:
            tracker.set_tags(attempt.run_id, {run_tags.STOP_REQUESTED: why})
        else:
            tracker.set_tags(
                attempt.run_id,
                {run_tags.STATUS: AttemptStatus.FAILED.value, run_tags.FAILURE: f"not run: {why}"},
            )
            tracker.client.set_terminated(attempt.run_id, "KILLED")


def _stop_outcome(attempts: list[Attempt], decision: policy.Decision) -> tuple[Outcome, str]:
    """How a pipeline the policy stops ends: failed when no attempt ever finished (the
    project cannot run: a missing module, a broken command), with the first
    attempt's reason; else budget exhausted or stopped."""
    if not any(a.status is AttemptStatus.FINISHED for a in attempts):
        first = attempts[0]
        return Outcome.FAILED, (
            f"no attempt finished; attempt {first.number} failed: "
            f"{first.failure or 'no reason given'}"
        )
    return (Outcome.BUDGET_EXHAUSTED if decision.budget_spent else Outcome.STOPPED), decision.reason


def score_champion(settings: Settings, pipeline_id: str) -> Step | None:
    """Score @production on the winner's data version (orchestration/champion_scoring.py),
    then promote."""
    if not champion_scoring.score_champion(settings, pipeline_id):
        return None
    return Step(Task.PROMOTE, (pipeline_id,))


def promote(settings: Settings, pipeline_id: str) -> Step | None:
    """Register the winner and compare it with production's score the scoring step
    recorded; production scored as another version than holds it now (moved by
    another pipeline meanwhile), or never scored (a message from before the scoring
    step), is scored first."""
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    if pipeline.status is not PipelineStatus.PROMOTING:
        return None
    champion = champion_scoring.recorded(pipeline)
    held = champion_scoring.current_champion(tracker, pipeline)
    scored_as = champion.version if champion is not None else ""
    if not champion_scoring.is_recorded(pipeline) or (
        scored_as != held and not _replay(tracker, pipeline, held)
    ):
        return Step(Task.SCORE_CHAMPION, (pipeline_id,))
    candidate = tracker.client.get_run(pipeline.tags[run_tags.CANDIDATE])
    metrics = candidate.data.metrics
    tags = {run_tags.METRIC_PREFIX + k: f"{v:.6g}" for k, v in metrics.items()}
    tags.update(
        {
            run_tags.PIPELINE_ID: pipeline_id,
            run_tags.ATTEMPT: candidate.data.tags.get(run_tags.ATTEMPT, ""),
            run_tags.COMMIT: pipeline.spec.commit,
            run_tags.PROJECT: pipeline.spec.project_path,
        }
    )
    tags.update(_lineage(candidate))
    tags.update(data_inputs.lineage_tags(candidate.data.tags))
    target = pipeline.spec.target
    promotion = registry.promote(
        tracker.client,
        pipeline.spec.model_name,
        candidate.info.run_id,
        metrics.get(target.metric),
        target,
        tags,
        cause=promotion_terms.cause(pipeline, tags),
        manual=promotion_terms.manual(settings, pipeline),
        champion_score=champion,
    )
    tracker.set_tags(
        pipeline_id,
        {run_tags.MODEL_VERSION: promotion.version, run_tags.PROMOTION: promotion.reason},
    )
    outcome = _promotion_outcome(promotion)
    reason = f"{pipeline.reason}; {promotion.reason}{_refusals(tracker, pipeline)}"
    _finish(tracker, pipeline_id, outcome, reason)
    return Step(Task.NOTIFY, (pipeline_id,))


def _replay(tracker: Tracker, pipeline: Pipeline, held: str) -> bool:
    """Whether the version holding @production is the pipeline's own winner (a promote
    step that moved it and died before it finished)."""
    if not held:
        return False
    version = tracker.client.get_model_version(pipeline.spec.model_name, held)
    return version.run_id == pipeline.tags.get(run_tags.CANDIDATE)


def _promotion_outcome(promotion: registry.Promotion) -> Outcome:
    if promotion.waiting:
        return Outcome.AWAITING_APPROVAL
    return Outcome.PROMOTED if promotion.promoted else Outcome.KEPT_CHAMPION


def _refusals(tracker: Tracker, pipeline: Pipeline) -> str:
    """ "; training code's calls refused: ..." for the pipeline's reason, naming each
    attempt whose code tried to reach beyond its own run; "" when none did."""
    refused = [
        f"attempt {run.data.tags.get(run_tags.ATTEMPT, '?')}: {run.data.tags[run_tags.REFUSED]}"
        for run in tracker.attempt_runs(pipeline)
        if run.data.tags.get(run_tags.REFUSED)
    ]
    return f"; training code's calls refused: {'; '.join(refused)}" if refused else ""


def _lineage(candidate: Run) -> dict[str, str]:
    """What a model in production traces back to from the registry alone: the digest
    of each dataset it trained on, and the environment image it trained in."""
    tags = {
        run_tags.DATA_PREFIX + dataset_input.dataset.name: dataset_input.dataset.digest
        for dataset_input in (candidate.inputs.dataset_inputs if candidate.inputs else [])
    }
    for name in (run_tags.EXECUTOR, run_tags.ENVIRONMENT_IMAGE, run_tags.ENVIRONMENT_IMAGE_ID):
        if candidate.data.tags.get(name):
            tags[name] = candidate.data.tags[name]
    return tags


def notify_people(settings: Settings, pipeline_id: str) -> Step | None:
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    if pipeline.status is not PipelineStatus.NOTIFYING:
        return None
    rule = _stop_rule(settings, pipeline)
    metric = rule.validation_metric(pipeline.spec.target)
    attempts = tracker.attempts(pipeline, validation_metric=metric)
    picture = _log_picture(tracker, pipeline, attempts, metric, rule)
    summary = summarize(settings, pipeline, attempts, picture)
    results = notify.send_all(summary, notify.transports(settings))
    # The checkout goes before the status says finished, so a finished pipeline has
    # none left on disk; were the worker to die here, the step runs again and
    # fetches the commit once more to read its stop rule.
    remove(settings.home / "work" / pipeline_id)
    tags = {run_tags.NOTIFY_PREFIX + name: result for name, result in results.items()}
    if not results:
        tags[run_tags.NOTIFY] = "no transport configured"
    tags[run_tags.STATUS] = PipelineStatus.FINISHED.value
    tracker.set_tags(pipeline_id, tags)
    run_status = "FAILED" if pipeline.outcome == Outcome.FAILED.value else "FINISHED"
    tracker.client.set_terminated(pipeline_id, run_status)
    return None


def _stop_rule(settings: Settings, pipeline: Pipeline) -> StopRule:
    """The project's stop rule: the per-epoch validation metric it watches and the
    margin its "target met" stop asks for."""
    try:
        return load_project(git_source.project_folder(settings, pipeline)).stop_rule
    except Exception:  # the project never became readable: the default rule
        return StopRule()


def _log_picture(
    tracker: Tracker, pipeline: Pipeline, attempts: list[Attempt], metric: str, rule: StopRule
) -> bytes:
    """Draw the search and log it on the pipeline run; b"" when there is nothing
    to draw or it could not be stored (the picture must not cost the notification)."""
    try:
        picture = search_picture.draw(
            attempts,
            pipeline.spec.target,
            metric,
            pipeline.spec.project_name,
            margin=rule.margin if rule.enabled else None,
        )
        if picture is None:
            return b""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / search_picture.FILE_NAME
            path.write_bytes(picture)
            tracker.client.log_artifact(pipeline.id, str(path))
        return picture
    except Exception as error:
        log.warning("pipeline %s: no search picture: %s", pipeline.id, error)
        return b""


def fail(settings: Settings, pipeline_id: str, reason: str) -> Step | None:
    """End a pipeline whose step broke for a reason retrying cannot fix, and every
    attempt run it left open (queued, or marked running by the broken step)."""
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    if pipeline.status in (PipelineStatus.NOTIFYING, PipelineStatus.FINISHED):
        return None
    for attempt in tracker.attempts(pipeline, curves=False):
        if attempt.status in (AttemptStatus.QUEUED, AttemptStatus.RUNNING):
            tracker.set_tags(
                attempt.run_id,
                {run_tags.STATUS: AttemptStatus.FAILED.value, run_tags.FAILURE: reason},
            )
            if tracker.client.get_run(attempt.run_id).info.status == "RUNNING":
                tracker.client.set_terminated(attempt.run_id, "FAILED")
    _finish(tracker, pipeline_id, Outcome.FAILED, reason)
    return Step(Task.NOTIFY, (pipeline_id,))


def cancel(settings: Settings, pipeline_id: str, reason: str) -> bool:
    """End a pipeline a person stopped: finished, outcome cancelled, with `reason`;
    its queued attempts never start and its running ones are asked to stop (the
    stop request projects honour; a worker's steps for a finished pipeline do
    nothing). False when it had ended already. Nobody is notified: they asked."""
    tracker = Tracker(settings)
    pipeline = tracker.pipeline(pipeline_id)
    if pipeline.status is PipelineStatus.FINISHED:
        return False
    tracker.set_tags(
        pipeline_id,
        {
            run_tags.STATUS: PipelineStatus.FINISHED.value,
            run_tags.OUTCOME: Outcome.CANCELLED.value,
            run_tags.REASON: reason,
        },
    )
    for attempt in tracker.attempts(pipeline, curves=False):
        if attempt.status not in IN_FLIGHT:
            continue
        if attempt.status is AttemptStatus.RUNNING:
            tracker.set_tags(attempt.run_id, {run_tags.STOP_REQUESTED: reason})
        tracker.set_tags(
            attempt.run_id,
            {run_tags.STATUS: AttemptStatus.FAILED.value, run_tags.FAILURE: f"cancelled: {reason}"},
        )
        if tracker.client.get_run(attempt.run_id).info.status == "RUNNING":
            tracker.client.set_terminated(attempt.run_id, "KILLED")
    remove(settings.home / "work" / pipeline_id)
    tracker.client.set_terminated(pipeline_id, "KILLED")
    status_reports.due(tracker, pipeline_id)
    return True


def _finish(tracker: Tracker, pipeline_id: str, outcome: Outcome, reason: str) -> None:
    tracker.set_tags(
        pipeline_id,
        {
            run_tags.STATUS: PipelineStatus.NOTIFYING.value,
            run_tags.OUTCOME: outcome.value,
            run_tags.REASON: reason,
        },
    )
    status_reports.due(tracker, pipeline_id)


def _keep_log(tracker: Tracker, attempt_id: str, log_path) -> None:
    try:
        tracker.client.log_artifact(attempt_id, str(log_path), "logs")
    except Exception as error:  # the log is a convenience; its loss must not fail the attempt
        log.warning("could not store %s in MLflow: %s", log_path, error)
