"""Every MLflow tag and parameter name the service writes or reads, each with its
meaning. A pipeline is a parent run, each attempt a nested run; their state lives
in these tags, which every step re-reads. The documentation's Names page is generated
from this module (docs/hooks/names.py): the comment beside a name is its meaning there.
"""

from __future__ import annotations

# -- on both kinds of run ------------------------------------------------------------
KIND = "ct.kind"  # "pipeline", "attempt", "score" (scoring.py) or "monitor" (decay)
STATUS = "ct.status"  # the run's state: PipelineStatus or AttemptStatus
REASON = "ct.reason"  # one line: why the pipeline ended / why this attempt was tried
PROJECT = "ct.project"  # the project's folder (or its path inside a git repository)
COMMIT = "ct.commit"  # the commit trained ("" when the folder is not a git checkout)

# -- pipeline runs -------------------------------------------------------------------
PROJECT_NAME = "ct.project_name"  # the MLproject's name; experiment ct/<name>
MODEL_NAME = "ct.model_name"  # the registered model it promotes to
TARGET = "ct.target"  # the target, for people ("test_accuracy >= 0.8")
TARGET_METRIC = "ct.target.metric"  # the metric to reach (on a model version: it was judged by)
TARGET_THRESHOLD = "ct.target.threshold"  # the value to reach
TARGET_DIRECTION = "ct.target.direction"  # maximize or minimize
TARGET_FROM = (
    "ct.target.from"  # given (command line, repositories.yaml), settings, ct.yaml, default
)
BUDGET = "ct.budget"  # the budget, for people ("5 attempts")
BUDGET_MAX_ATTEMPTS = "ct.budget.max_attempts"
BUDGET_MAX_WALL_SECONDS = "ct.budget.max_wall_seconds"  # 0.0 when unlimited
BUDGET_MAX_EPOCHS = "ct.budget.max_epochs"  # 0 when unlimited
INITIAL_CONFIG = "ct.initial_config"  # JSON: the first attempt's parameters
DECLARED = "ct.declared"  # digest of the project's MLproject and ct.yaml (warm starts match it)
OUTCOME = "ct.outcome"  # how it ended: promoted, kept-champion, budget-exhausted, ...
CANDIDATE = "ct.candidate"  # the attempt run that met the target
MODEL_VERSION = "ct.model_version"  # the registry version it promoted (or kept)
PROMOTION = "ct.promotion"  # one line: what the registry step did
NOTIFY = "ct.notify"  # why nobody was notified (else one NOTIFY_PREFIX tag per transport)
NOTIFY_PREFIX = "ct.notify."  # + transport name (email, webhook): "sent" or "failed: ..."
METRIC_PREFIX = "ct.metric."  # + metric name: the candidate's final metrics
DATA_PREFIX = "ct.data."  # + dataset name (on a model version): the digest it trained on
SOURCE_URL = "ct.source.url"  # git URL the workers fetch the commit from
SOURCE_BRANCH = "ct.source.branch"  # the branch pushed to
SOURCE_REPOSITORY = "ct.source.repository"  # <provider>:<name> of the allow-list entry
SOURCE_SEQUENCE = "ct.source.sequence"  # the push's place among pushes to its branch
SOURCE_CHANGED_SINCE = "ct.source.changed_since"  # the push's before-commit (Bitbucket)
SOURCE_WATCH = "ct.source.watch"  # JSON: the paths whose change trains
PUSH_ID = "ct.push_id"  # the pipeline id the webhook answered for the push
# The last word on the commit status sent to the git host (status_reports.py):
# "sent <state>: <description>", "retrying: <why>", "failed: <why>"
COMMIT_STATUS = "ct.commit_status"

# -- the registry: a registered model and its versions ------------------------------
# + UTC time and a nonce (on a registered model): one event of its production history,
# as JSON (history.py); the keys sort in time order
HISTORY_PREFIX = "ct.history."
# on a version that awaited approval: "waiting since ...", "approved by ... at ...",
# "rejected by ... at ...: <reason>" or "replaced by version N at ..."
APPROVAL = "ct.approval"

# -- attempt runs --------------------------------------------------------------------
PIPELINE_ID = "ct.pipeline_id"  # the pipeline run it belongs to
ATTEMPT = "ct.attempt"  # its number in the pipeline, from 1
CONFIG = "ct.config"  # JSON: the parameters it trains with
DERIVED_FROM = "ct.derived_from"  # the attempt run whose configuration it changes
# the policy's verdict on it: promote, retry, stop (on a model version: the last
# decision about it, as the production history recorded it)
DECISION = "ct.decision"
WAITING = "wait: "  # a DECISION's prefix while other attempts of its round still train
DECIDED_THROUGH = "ct.decided_through"  # on the pipeline: the last attempt number decided on
# On the pipeline, written by a worker before it retries a step after an infrastructure
# failure, "" again once a retried step succeeds (the console prints each new value):
# "<step>: <the error's one-line text>; next try at HH:MM:SS UTC". Best effort: not
# written when the tracking store itself is what failed.
RETRY = "ct.retry"
FAILURE = "ct.failure"  # one line: why it failed
EXECUTOR = "ct.executor"  # local or docker
WORKER = "ct.worker"  # host:pid of the worker that ran it
STARTED = "ct.started"  # Unix seconds its worker began running it (its elapsed time's start)
HEARTBEAT = "ct.heartbeat"  # Unix seconds of its worker's last heartbeat (the lease)
CONTAINER = "ct.container"  # the Docker container it trains in
ENVIRONMENT = "ct.environment"  # why this environment (image, or local env manager) was chosen
ENVIRONMENT_BUILD = "ct.environment.build"  # local: "building", "built in N s" or "cached"
ENVIRONMENT_IMAGE = "ct.environment.image"  # the image's tag
ENVIRONMENT_IMAGE_ID = "ct.environment.image_id"  # the image's content id
ENVIRONMENT_BUILT = "ct.environment.built"  # "true" when this attempt built the image
REFUSED = "ct.refused"  # one line: calls its training code made outside its run, refused

# -- resumption: a run whose process died is continued by a new run ------------------
REPLACES_RUN = "ct.replaces_run"  # on the new run: the dead run it takes over from
REPLACED_BY = "ct.replaced_by"  # on the dead run: the run that took it over
# -- continuation: an attempt that only trains an earlier one longer starts from it --
# on an attempt's first run: the earlier attempt's run it extends (a warm start from
# production's weights: production's run, outside the pipeline; see START_EPOCH)
CONTINUES = "ct.continues"
# On an attempt that continues production's run: the epoch it starts from, trained by
# production (not charged to the pipeline's epoch budget)
START_EPOCH = "ct.start_epoch"
# Set by the worker while the attempt trains, read by the project (LeNet's epoch
# callback): please stop after the current batch, keep the last complete epoch, then
# log the test metrics and the model as usual. Its value is the reason.
STOP_REQUESTED = "ct.stop_requested"
STOPPED_EARLY = "ct.stopped_early"  # "<target met|behind|hopeless>: <reason>": why stopped
STOP_MARGIN = "ct.stop_margin"  # the validation margin its target-met stop asks for
# the most epochs its stop watch judges it by, when it may be continued past its own
# epochs (a rung of successive halving); absent: the space's most, or its own epochs
# under an epoch budget
HORIZON = "ct.horizon"
# the interval its stop watch judged with (JSON: margin, noise and how it was measured,
# the validation-test gap and its spread, the attempts it was measured on, z)
STOP_INTERVAL = "ct.stop_interval"
CHECKPOINT_RUN = "ct.checkpoint_run"  # on a resumed or continuing run: whose checkpoint it loads
RESUMES = "ct.resumes"  # on the new run: how many times this attempt was resumed

# What a resuming run copies from the run it takes over from.
INHERITED_BY_RESUMPTION = (
    KIND,
    PIPELINE_ID,
    PROJECT,
    ATTEMPT,
    CONFIG,
    REASON,
    DERIVED_FROM,
    START_EPOCH,
)

# -- reproductions (`ct-service reproduce`, docs/reproduce.md) ----------------------
# A reproduction is a run of its own (KIND "reproduction") in the project's experiment:
# the recorded configuration of a registered version trained again at its commit.
REPRODUCES_MODEL = "ct.reproduces.model"  # the registered model whose version it trains again
REPRODUCES_VERSION = "ct.reproduces.version"  # that version's number
REPRODUCES_RUN = "ct.reproduces.run"  # the run that trained that version (its record)
REPRODUCES_PIPELINE = "ct.reproduces.pipeline"  # that run's pipeline ("" when not recorded)
REPRODUCTION_SOURCE = "ct.reproduction.source"  # where its code was fetched from (no credentials)
REPRODUCTION_METRIC = "ct.reproduction.metric"  # the metric compared: the pipeline's target metric
REPRODUCTION_RECORDED = "ct.reproduction.recorded"  # the version's recorded value of that metric
REPRODUCTION_DELTA = "ct.reproduction.delta"  # the reproduction's value minus the recorded one
REPRODUCTION_TOLERANCE = "ct.reproduction.tolerance"  # the largest |delta| that still reproduces
REPRODUCTION_ALLOW_OTHER_DATA = "ct.reproduction.allow_other_data"  # "true": other data compared
# reproduced, differs, data-changed (refused: other data), failed (ReproductionOutcome)
REPRODUCTION_OUTCOME = "ct.reproduction.outcome"
REPRODUCTION_DATA = "ct.reproduction.data"  # one line: the data digests recorded against now
REPRODUCTION_ENVIRONMENT = "ct.reproduction.environment"  # one line: the environment, then and now
# On a registered model version: its reproduction runs, oldest first, comma-separated
REPRODUCTIONS = "ct.reproductions"
REPRODUCTION_LAST = "ct.reproduction.last"  # on a version: "<run id>: <outcome>, <one line>"

# -- written by the project (the contract of docs/your-project.md) ------------------
CHECKPOINT_LAST_EPOCH = "checkpoint.last_epoch"  # the last epoch with a logged checkpoint
RESUME_FROM_PARAM = "resume_from"  # parameter: continue that run from its last checkpoint

# -- data and triggers (docs/data.md) --------------------------------------------------
# On a pipeline (pinned when it is created or started), on each attempt (what it was
# given) and on a registered version (what it trained on):
DATA_SOURCE = "ct.data_source"  # the declared source: s3://bucket/prefix/ or a folder
DATA_PARAM = "ct.data_param"  # the MLproject parameter that gets the data's local folder
DATA_VERSION = "ct.data_version"  # the data version: a content digest of the source
DATA_OBJECTS = "ct.data_objects"  # "<objects> <bytes>" of that version
# On a pipeline: what started it ("run", "push", "data", "schedule", "decay"; absent: run or push)
TRIGGER = "ct.trigger"
# On a pipeline: one line, why it started ("data changed: version ...", "schedule ...")
TRIGGER_REASON = "ct.trigger_reason"
SCHEDULE = "ct.schedule"  # on a pipeline: its project's ct.yaml schedule (JSON), read at start
SCHEDULED_BRANCH = "ct.schedule.branch"  # on a pipeline a repositories.yaml schedule started
# On a pipeline that retrains production (data, schedule, decay): the run that trained
# production's version, whose parameters its first attempt takes and, with ct.yaml
# `data_trigger: {start: weights}`, whose checkpoint it may load (the one run outside
# the pipeline its attempts may read), and that version's number
WARM_START_RUN = "ct.warm_start.run"
WARM_START_VERSION = "ct.warm_start.version"

# -- scoring a registered model on a data version (orchestration/scoring.py) ---------
# A scoring run (ct.kind "score") carries MODEL_NAME, the DATA_* tags of the version it
# scored on, and:
SCORED_VERSION = "ct.scored_version"  # the registered version it scored
SCORE_METRIC = "ct.score.metric"  # the metric it measured (the pipeline's target metric)
SCORE_METHOD = "ct.score.method"  # "evaluate entry point" or "mlflow.models.evaluate"
# A monitoring run (ct.kind "monitor", one per model) logs each score of @production on
# a data version: the metric as a series (one step per scoring) and `<metric>/data/<12
# digits>` per data version; its tags name what each step scored:
MONITOR_STEP_PREFIX = "ct.monitor.step."  # + step: "v<version> on <data version> (<run id>)"
DECAY = "ct.decay"  # on a scoring run of the decay watch: its verdict, one line
# On a pipeline being promoted: what its winner is compared with (champion.ChampionScore
# as JSON: production's version, its score re-scored on the winner's data version or its
# stored metric with the reason); "none" when no version held @production.
CHAMPION_SCORE = "ct.champion_score"
# On a registered version: the champion score it was judged against (the same JSON).
COMPARISON = "ct.comparison"
