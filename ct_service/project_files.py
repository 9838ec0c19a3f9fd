"""Reading a project's files on the worker, with bounds: the only way the service
reads what a push contains (MLproject, ct.yaml, the declared environment, a
Dockerfile, the Python files scanned for imports).

Before a byte is read, the file's links are resolved: a file that resolves outside
the project (`evil.py -> /dev/zero`, `MLproject -> /proc/self/environ`) or to
anything but a regular file (a device, a FIFO) is refused, and the file is opened
without blocking and checked again by its descriptor, so what is checked is what is
read. At most a limit of bytes is read; a larger file is refused. YAML is parsed
with a bound on what its aliases expand to (a billion-laughs document is a few
hundred bytes). Each refusal is a ProjectError naming the file and the limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ct_service.exceptions import ProjectError

MAX_FILE_BYTES = 1_000_000  # a declaration: MLproject, ct.yaml, requirements, Dockerfile
MAX_SOURCE_BYTES = 1_000_000  # a Python file read for its imports
MAX_PYTHON_FILES = 200  # Python files read for imports (the first, by path)
# YAML nodes a document may hold once its aliases are expanded: far above any
# MLproject or environment file, far below what a few aliases nested can expand to.
MAX_YAML_NODES = 100_000


def refuse_escaping_links(root: Path, paths: Iterable[Path] | None = None) -> None:
    """Raise when a symlink among `paths` (default: everything under `root`) points
    outside `root`, after following every link on the way."""
    candidates = paths if paths is not None else _walk(root)
    for path in candidates:
        if path.is_symlink() and not _inside(root, os.path.realpath(path)):
            raise ProjectError(
                f"{_shown(root, path)} is a symlink to {os.readlink(path)}, outside the "
                "project; pushed links may only point inside it"
            )


def read_bytes(project: Path, path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `path`, a regular file inside `project` once its links are
    resolved, at most `limit` of them; ProjectError otherwise (nothing read)."""
    shown = _shown(project, path)
    real = os.path.realpath(path)
    if not _inside(project, real):
        target = f"a symlink to {os.readlink(path)}" if path.is_symlink() else "a path"
        raise ProjectError(
            f"{shown} is {target}, outside the project; pushed links may only point inside it"
        )
    try:
        descriptor = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        raise ProjectError(f"{shown} cannot be read: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ProjectError(f"{shown} is not a regular file; only regular files are read")
        if status.st_size > limit:
            raise ProjectError(f"{shown} is larger than {limit:,} bytes; it is not read")
        data = file.read(limit + 1)
    if len(data) > limit:  # grew since it was looked at
        raise ProjectError(f"{shown} is larger than {limit:,} bytes; it is not read")
    return data


def read_text(project: Path, path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of `path`, bounded as read_bytes."""
    try:
        return read_bytes(project, path, limit).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProjectError(
            f"{_shown(project, path)} cannot be read as UTF-8 text: {error}"
        ) from None


def read_yaml(project: Path, path: Path) -> Any:
    """The YAML document in `path` (None when empty), read as read_text does and
    parsed safely, its aliases expanding to at most MAX_YAML_NODES nodes."""
    return parse_yaml(read_text(project, path), _shown(project, path))


def parse_yaml(text: str, where: object) -> Any:
    """`text` as yaml.safe_load reads it, once its node graph is known to stay within
    MAX_YAML_NODES when aliases are expanded (and to hold no alias to itself)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            _within_bound(root, where)
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProjectError(f"{where}: not valid YAML: {error}") from None
    except RecursionError:
        raise ProjectError(f"{where}: YAML nested too deeply") from None


def python_files(project: Path, limit: int = MAX_PYTHON_FILES) -> list[Path]:
    """The project's Python files that are read for their imports: the first `limit`
    by path, outside hidden folders; linked folders are not followed (a link to /
    would walk the whole machine), linked files are checked when they are read."""
    found = []
    for folder, dirs, files in os.walk(project):  # does not descend into linked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in files if name.endswith(".py")]
    return sorted(found)[:limit]


def _within_bound(root: yaml.Node, where: object) -> None:
    """Count the nodes of `root` as if every alias were expanded; each node is
    counted once (memoised), so a bomb is measured without being expanded."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            raise ProjectError(f"{where}: a YAML alias refers to the node that holds it")
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key_node) + size(value) for key_node, value in node.value)
        visiting.discard(key)
        if total > MAX_YAML_NODES:
            raise ProjectError(
                f"{where}: its YAML aliases expand to more than {MAX_YAML_NODES:,} nodes; "
                "it is not read"
            )
        sizes[key] = total
        return total

    size(root)


def _inside(root: Path, real: str) -> bool:
    top = os.path.realpath(root)
    return real == top or real.startswith(top + os.sep)


def _shown(root: Path, path: Path) -> Path:
    """`path` as a message shows it: under the project's folder name."""
    return Path(root.name) / path.relative_to(root) if path.is_relative_to(root) else path


def _walk(root: Path) -> Iterable[Path]:
    for folder, dirs, files in os.walk(root):  # does not descend into linked folders
        for name in dirs + files:
            yield Path(folder) / name
