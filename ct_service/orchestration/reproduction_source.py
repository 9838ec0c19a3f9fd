"""Where a reproduction's code comes from: the repository a version's commit is
fetched from (a local repository `--from` names, the pipeline's git source as the
allow-list has it, or the repository the project folder was in), and the project's
folder inside the fetched commit."""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePath

from ct_service.checkout import redact
from ct_service.exceptions import CtError, ProjectError
from ct_service.orchestration.git_source import trusted_source
from ct_service.reproduction import Reproduction
from ct_service.settings import Settings
from ct_service.tracking import Pipeline


class ReproductionError(CtError):
    """The version cannot be reproduced from its record (exit 2)."""


def source(
    settings: Settings,
    pipeline: Pipeline | None,
    project: str,
    commit: str,
    repository: Path | None,
) -> str:
    """Where the commit is fetched from: the local repository given, the pipeline's
    git source, or the repository the project folder is in."""
    if repository is not None:
        folder = repository.resolve()
        if not _holds(folder, commit):
            raise ReproductionError(f"{folder} is not a git repository that holds {commit}")
        return str(folder)
    if pipeline is not None and pipeline.spec.source_url:
        return redact(trusted_source(settings, pipeline)[0])
    folder = Path(project)
    top = _git(folder, "rev-parse", "--show-toplevel") if folder.is_dir() else ""
    if not top or not _holds(Path(top), commit):
        raise ReproductionError(
            f"the project folder {project} is gone or its repository no longer holds "
            f"{commit}: give --from a local repository that holds it"
        )
    return top


def fetch_url(settings: Settings, pipeline: Pipeline | None, reproduction: Reproduction) -> str:
    """A local repository (given with --from, or the project folder's) is fetched
    from as recorded; a URL only as the allow-list has it (git_source.trusted_source)."""
    if Path(reproduction.source).is_absolute():
        return reproduction.source
    if pipeline is None or not pipeline.spec.source_url:
        raise ReproductionError(
            f"{reproduction.source} is not the git source of a recorded pipeline; nothing "
            "was fetched"
        )
    return trusted_source(settings, pipeline)[0]


def project_folder(work: Path, reproduction: Reproduction) -> Path:
    """The project inside the fetched commit: the recorded path inside the repository,
    or for a project folder, the longest tail of its path the commit holds."""
    parts = [p for p in PurePath(reproduction.project).parts if p not in ("/", "\\")]
    root = work.resolve()
    for start in range(len(parts) + 1):
        candidate = work.joinpath(*parts[start:]).resolve()
        if candidate.is_relative_to(root) and (candidate / "MLproject").is_file():
            return candidate
    raise ProjectError(
        f"commit {reproduction.commit[:12]} holds no MLflow project at {reproduction.project}"
    )


def _holds(repository: Path, commit: str) -> bool:
    return bool(_git(repository, "cat-file", "-t", commit) == "commit")


def _git(folder: Path, *args: str) -> str:
    """`git -C folder ARGS`'s output, "" when git fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
