"""Pushed files are packed without following a symlink out of the project: a link
to /proc/self/environ, a secret file or the host's /etc must never become a regular
file in a container's code or an image build context. Links that stay inside the
project are kept as links (the check lives in ct_service/project_files.py, which
reads the project's files for the worker)."""

from __future__ import annotations

import fnmatch
import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from ct_service.project_files import refuse_escaping_links


def archive_project(source: Path, leave_out: Iterable[str]) -> IO[bytes]:
    """The project folder as a tar archive (a temporary file, read from its start)
    of the folder's contents, to unpack in the container's working folder, owned by
    root, links kept as links, names matching a pattern of `leave_out` left out at
    any depth; after refusing links that leave the project."""
    refuse_escaping_links(source)
    patterns = tuple(leave_out)

    def as_root(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if any(fnmatch.fnmatch(os.path.basename(member.name), p) for p in patterns):
            return None  # a folder left out is not descended into
        member.uid = member.gid = 0
        member.uname = member.gname = "root"
        return member

    archive = tempfile.TemporaryFile()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for entry in sorted(source.iterdir()):
            tar.add(entry, arcname=entry.name, filter=as_root)
    archive.seek(0)
    return archive
