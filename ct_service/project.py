"""An MLflow project as ct-service sees it: MLproject parameters with their
defaults, the search space from its ct.yaml, and the git commit it is at."""

from __future__ import annotations

import hashlib
import shlex
import string
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ct_service.data_spec import DataSpec, TestTable
from ct_service.exceptions import ProjectError
from ct_service.project_files import read_bytes, read_yaml
from ct_service.promotion_mode import PromotionMode, parse_mode
from ct_service.schedule import Schedule
from ct_service.space import Config, SearchSpace
from ct_service.space_inference import infer_space
from ct_service.start_mode import StartMode, parse_data_trigger
from ct_service.stop_early import StopRule
from ct_service.target import Target

ENTRY_POINT = "main"
# The entry point that scores a given model on a given data folder, when the project
# declares one (docs/data.md#scoring): parameters MODEL_PARAM and the data's parameter.
EVALUATE = "evaluate"
MODEL_PARAM = "model_uri"  # evaluate's parameter: the local folder of an MLflow model
PARAMETER_TYPES = ("string", "float", "int", "path", "uri")  # what MLflow projects declare
# The MLproject types a searched parameter of each kind may have: a float sent to an
# int parameter ("2.0") would not parse.
NUMERIC_TYPES = {"int": ("int", "float", "string"), "float": ("float", "string")}
CT_YAML_KEYS = (
    "search_space",
    "stop_early",
    "target",
    "data",
    "schedule",
    "promotion",
    "scoring",
    "data_trigger",
)
# A filled-in command is one argument of `sh -c`: Linux takes at most 128 KiB there.
MAX_COMMAND_BYTES = 128 * 1024


@dataclass(frozen=True)
class Parameter:
    """An entry-point parameter as MLflow reads it: `name: float` is the short form
    of `name: {type: float}`, a parameter without a default (required)."""

    type: str = "string"
    default: Any = None

    @classmethod
    def from_spec(cls, name: str, spec: Any, where: Path) -> Parameter:
        if isinstance(spec, Mapping):
            parameter = cls(str(spec.get("type", "string")), spec.get("default"))
        elif isinstance(spec, str):
            parameter = cls(spec)
        else:
            raise ProjectError(f"{where}: parameter {name} must be a type or a mapping")
        if parameter.type not in PARAMETER_TYPES:
            raise ProjectError(
                f"{where}: parameter {name} has type {parameter.type!r}; "
                f"MLflow knows {', '.join(PARAMETER_TYPES)}"
            )
        return parameter

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class EntryPoint:
    """An entry point other than main: its parameters and command template."""

    parameters: Mapping[str, Parameter]
    command: str


@dataclass(frozen=True)
class Project:
    path: Path
    name: str
    parameters: Mapping[str, Parameter]
    space: SearchSpace
    command: str = ""  # the entry point's command template
    space_inferred: bool = False  # ct.yaml declares no search_space: read off the parameters
    stop_rule: StopRule = StopRule()  # ct.yaml's stop_early: when to stop an attempt early
    target: Target | None = None  # ct.yaml's target, used unless the pipeline is given one
    data: DataSpec | None = None  # ct.yaml's data: the versioned input (data_spec.py)
    schedule: Schedule | None = None  # ct.yaml's schedule: when to retrain (schedule.py)
    promotion: PromotionMode | None = None  # ct.yaml's promotion: manual waits for a person
    evaluate: EntryPoint | None = None  # the MLproject's `evaluate` entry point, if any
    scoring: TestTable | None = None  # ct.yaml's scoring: mlflow.models.evaluate's table
    # ct.yaml's data_trigger.start: how a pipeline retraining production starts
    start: StartMode = StartMode.CONFIG

    def command_line(self, values: Mapping[str, str], entry_point: str = ENTRY_POINT) -> str:
        """The entry point's command with these parameter values, as MLflow builds it
        (EntryPoint.compute_command): declared parameters substituted (shell-quoted),
        others appended as `--name value` (both quoted); defaults fill what `values`
        leaves out. MLflow fills the command with str.format; here only the plain
        `{name}` fields load_project accepted are filled, never a format spec of the
        push's, and the result is at most MAX_COMMAND_BYTES long. `entry_point`: main, or
        evaluate when the project declares it."""
        parameters, template = self.parameters, self.command
        if entry_point != ENTRY_POINT:
            if entry_point != EVALUATE or self.evaluate is None:
                raise ProjectError(f"{self.name}: its MLproject has no {entry_point!r} entry point")
            parameters, template = self.evaluate.parameters, self.evaluate.command
        given = {**{n: str(p.default) for n, p in parameters.items() if not p.required}}
        given.update({n: str(v) for n, v in values.items()})
        declared = {n: shlex.quote(v) for n, v in given.items() if n in parameters}
        parts = []
        length = 0
        for literal, field in command_fields(template, self.name):
            missing = field and field not in declared
            if missing:
                raise ProjectError(f"{self.name}: its command needs a value for {field}")
            parts += [literal, declared[field] if field else ""]
            length += len(literal) + len(parts[-1])
            if length > MAX_COMMAND_BYTES:
                raise ProjectError(
                    f"{self.name}: its command would be longer than {MAX_COMMAND_BYTES:,} "
                    "characters once its parameters are filled in"
                )
        extra = [
            f"--{shlex.quote(n)} {shlex.quote(v)}"
            for n, v in sorted(given.items())
            if n not in parameters
        ]
        return " ".join(["".join(parts), *extra])

    @property
    def defaults(self) -> dict[str, Any]:
        return {n: p.default for n, p in self.parameters.items() if not p.required}

    def initial_config(self, overrides: Mapping[str, Any] | None = None) -> Config:
        """The first attempt's parameters: defaults, then the overrides; every
        required parameter must be given."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.parameters))
        if unknown:
            known = ", ".join(sorted(self.parameters))
            raise ProjectError(
                f"unknown parameter(s) {', '.join(unknown)}; {self.name} has: {known}"
            )
        missing = sorted(
            n for n, p in self.parameters.items() if p.required and overrides.get(n) is None
        )
        if missing:
            given = " ".join(f"-P {n}=..." for n in missing)
            raise ProjectError(
                f"{self.name}: required parameter(s) without a value: {', '.join(missing)} "
                f"(give {given})"
            )
        return self.space.normalise({**self.defaults, **overrides})

    def declared(self) -> str:
        """A digest of what the project declares (its MLproject and ct.yaml): an
        earlier pipeline's configurations carry over only while it is the same."""
        digest = hashlib.sha256()
        for name in ("MLproject", "ct.yaml"):
            file = self.path / name
            content = read_bytes(self.path, file) if file.is_file() else b""
            digest.update(name.encode() + b"\0" + content)
        return digest.hexdigest()[:16]

    def commit(self) -> str:
        """The git commit the project folder is at, or "" outside a repository."""
        try:
            result = subprocess.run(
                ["git", "-C", str(self.path), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""


def load_project(location: str | Path) -> Project:
    path = Path(location).resolve()
    mlproject = path / "MLproject"
    if not mlproject.is_file():
        raise ProjectError(f"{path} is not an MLflow project: it has no MLproject file")
    spec = _read_yaml(path, mlproject)
    main = _entry_point(spec, ENTRY_POINT, mlproject)
    if main is None:
        raise ProjectError(f"{mlproject} has no '{ENTRY_POINT}' entry point")
    parameters = dict(main.parameters)
    ct_yaml = path / "ct.yaml"
    ct_spec = _read_yaml(path, ct_yaml) if ct_yaml.is_file() else {}
    unknown = sorted(str(key) for key in ct_spec if key not in CT_YAML_KEYS)
    if unknown:
        raise ProjectError(
            f"{ct_yaml}: unknown key(s) {', '.join(unknown)}; known: {', '.join(CT_YAML_KEYS)}"
        )
    inferred = "search_space" not in ct_spec  # no ct.yaml, or one that declares no space
    try:
        if inferred:
            space = infer_space({n: (p.type, p.default) for n, p in parameters.items()})
        else:
            space = SearchSpace.from_spec(ct_spec["search_space"])
        stop_rule = StopRule.from_spec(ct_spec.get("stop_early"))
        target = Target.from_spec(ct_spec["target"]) if "target" in ct_spec else None
        data = DataSpec.from_spec(ct_spec["data"], parameters) if "data" in ct_spec else None
        schedule = Schedule.from_spec(ct_spec["schedule"]) if "schedule" in ct_spec else None
        promotion = (
            parse_mode(ct_spec["promotion"], "promotion") if "promotion" in ct_spec else None
        )
        scoring = TestTable.from_spec(ct_spec["scoring"]) if "scoring" in ct_spec else None
        start = parse_data_trigger(ct_spec.get("data_trigger"))
    except (ValueError, TypeError) as error:
        raise ProjectError(f"{ct_yaml}: {error}") from None
    undeclared = sorted(d.name for d in space.dimensions if d.name not in parameters)
    if undeclared:
        raise ProjectError(f"{ct_yaml}: not parameters of the MLproject: {', '.join(undeclared)}")
    for d in space.dimensions:
        declared_type = parameters[d.name].type
        if declared_type not in NUMERIC_TYPES[d.kind]:
            raise ProjectError(
                f"{ct_yaml}: {d.name} is searched as {d.kind}, but the MLproject "
                f"declares it {declared_type}"
            )
    name = str(spec.get("name") or path.name)
    return Project(
        path,
        name,
        parameters,
        space,
        main.command,
        space_inferred=inferred,
        stop_rule=stop_rule,
        target=target,
        data=data,
        schedule=schedule,
        promotion=promotion,
        evaluate=_entry_point(spec, EVALUATE, mlproject),
        scoring=scoring,
        start=start,
    )


def _entry_point(spec: Mapping[str, Any], name: str, mlproject: Path) -> EntryPoint | None:
    """An entry point of the MLproject, its command's fields checked; None when absent."""
    entry = (spec.get("entry_points") or {}).get(name)
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise ProjectError(f"{mlproject}: the '{name}' entry point must be a mapping")
    declared = entry.get("parameters") or {}
    if not isinstance(declared, Mapping):
        raise ProjectError(f"{mlproject}: '{name}' parameters must be a mapping")
    parameters = {
        str(key): Parameter.from_spec(str(key), value, mlproject) for key, value in declared.items()
    }
    command = entry.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ProjectError(f"{mlproject}: the '{name}' entry point has no command")
    for _, field in command_fields(command, mlproject):
        if field and field not in parameters:
            raise ProjectError(
                f"{mlproject}: the '{name}' command names {{{field}}}, which is not "
                "one of its parameters"
            )
    return EntryPoint(parameters, command)


def command_fields(command: str, where: object) -> list[tuple[str, str]]:
    """The command template as (literal text, parameter name or "") pairs, read by
    str.format's own parser without filling anything in; ProjectError for anything
    but a plain `{name}` field: a format spec (`{lr:>1000000000}` would pad to a
    gigabyte), a conversion, an attribute or index (`{lr.__class__}`), a positional
    field, or unbalanced braces."""
    try:
        parsed = list(string.Formatter().parse(command))
    except ValueError as error:
        raise ProjectError(f"{where}: its command is not a valid template: {error}") from None
    pairs = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (spec or conversion or not field.isidentifier()):
            shown = "{" + field + (f"!{conversion}" if conversion else "")
            shown += (f":{spec[:20]}" if spec else "") + "}"
            raise ProjectError(
                f"{where}: its command has the field {shown}; only plain {{name}} fields "
                "naming a parameter are filled in (no format specs, conversions or indexes)"
            )
        pairs.append((literal, field or ""))
    return pairs


def _read_yaml(project: Path, path: Path) -> dict[str, Any]:
    data = read_yaml(project, path) or {}
    if not isinstance(data, dict):
        raise ProjectError(f"{path} must hold a mapping")
    return data
