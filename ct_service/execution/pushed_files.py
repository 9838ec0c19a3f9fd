"""Pushed files are copied without following a symlink out of the project: a link
to /proc/self/environ, a secret file or the host's /etc must never become a regular
file in a work copy or an image build context. Links that stay inside the project
are kept as links."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from ct_service.exceptions import ProjectError


def refuse_escaping_links(root: Path, paths: Iterable[Path] | None = None) -> None:
    """Raise when a symlink among `paths` (default: everything under `root`) points
    outside `root`, after following every link on the way."""
    top = os.path.realpath(root)
    candidates = paths if paths is not None else _walk(root)
    for path in candidates:
        if not path.is_symlink():
            continue
        target = os.path.realpath(path)
        if target != top and not target.startswith(top + os.sep):
            shown = path.relative_to(root) if path.is_relative_to(root) else path
            raise ProjectError(
                f"{shown} is a symlink to {os.readlink(path)}, outside the project; "
                "pushed links may only point inside it"
            )


def copy_project(
    source: Path, destination: Path, ignore: Callable[[str, list[str]], Iterable[str]] | None
) -> None:
    """Copy a project folder, links kept as links, after refusing links that leave it."""
    refuse_escaping_links(source)
    shutil.copytree(source, destination, symlinks=True, ignore=ignore)


def _walk(root: Path) -> Iterable[Path]:
    for folder, dirs, files in os.walk(root):  # does not descend into linked folders
        for name in dirs + files:
            yield Path(folder) / name
