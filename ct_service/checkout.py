"""Fetch exactly one commit of a watched repository into a work directory (a
shallow fetch of that SHA, never a branch tip that may have moved on), and list
the paths two commits differ in, for providers whose pushes do not say.

Git never prompts (GIT_TERMINAL_PROMPT=0), and errors never show the URL's
credentials."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ct_service.counters import COUNTERS, Kind
from ct_service.exceptions import CheckoutError

SHA = re.compile(r"^[0-9a-f]{40}$")
ZERO_SHA = "0" * 40  # a push's `before` for a new branch, `after` for a deleted one
# user:password@ in a URL, the password possibly holding '@' (the last '@' of the
# authority ends it); a bare user (ssh://git@host) is not a credential.
CREDENTIALS = re.compile(r"(://)[^/\s]*@")
PASSWORD = re.compile(r"://[^/\s:@]*:[^/\s]*@")
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)[^\s]+$")  # git@host:org/repo


def url_problem(url: str, allow_file: bool = False) -> str:
    """Why git must not fetch from `url` ("" when it may): only https, ssh and
    scp-style URLs; file:// and local paths only where the operator allows them
    (CT_GIT_ALLOW_FILE=1); never an option in disguise or a password in the URL. An
    https URL takes no user either: a token is often given as the user name, and git
    puts the URL on command lines (its own, git-remote-https's) that `ps` shows."""
    if url.startswith("-") or not url.strip() or any(c.isspace() for c in url):
        return "a git URL cannot start with '-' or hold spaces"
    if PASSWORD.search(url) or (url.startswith("https://") and CREDENTIALS.search(url)):
        return (
            "put no credentials in the git URL, a token as the user name included; use a "
            "credential helper (and credential.username) or an SSH key"
        )
    if url.startswith(("https://", "ssh://")) or SCP_LIKE.match(url):
        return ""
    if url.startswith("file://") or url.startswith("/"):
        return "" if allow_file else "local repositories need CT_GIT_ALLOW_FILE=1"
    return "the git URL must be https://, ssh:// or git@host:path"


def fetch_commit(url: str, sha: str, into: Path, timeout_seconds: float = 300) -> Path:
    """Check out `sha` of `url` into the new folder `into`; returns `into`."""
    if not SHA.match(sha):
        raise CheckoutError(f"not a commit id: {sha!r}")
    if url.startswith("-"):
        raise CheckoutError("a git URL cannot start with '-'")
    into.mkdir(parents=True)
    _git(into, timeout_seconds, "init", "-q")
    _git(into, timeout_seconds, "fetch", "-q", "--depth", "1", "--", url, sha)
    _git(into, timeout_seconds, "checkout", "-q", "--detach", "FETCH_HEAD")
    head = _git(into, timeout_seconds, "rev-parse", "HEAD").strip()
    if head != sha:
        raise CheckoutError(f"fetched {head} instead of {sha}")
    return into


def branch_head(url: str, branch: str, timeout_seconds: float = 60) -> str:
    """The commit `branch` of `url` points at now (`git ls-remote`; nothing fetched)."""
    if url.startswith("-") or branch.startswith("-"):
        raise CheckoutError("a git URL or branch cannot start with '-'")
    ref = f"refs/heads/{branch}"
    lines = _git(Path.cwd(), timeout_seconds, "ls-remote", "--", url, ref).splitlines()
    found = [line.split()[0] for line in lines if line.endswith(f"\t{ref}")]
    if not found or not SHA.match(found[0]):
        raise CheckoutError(f"{redact(url)} has no branch {branch}")
    return found[0]


def changed_paths(
    workdir: Path, url: str, before: str, after: str, timeout_seconds: float = 300
) -> frozenset[str] | None:
    """Paths that differ between `before` and the checked-out `after`; None when
    there is no `before` (a new branch): then everything counts as changed."""
    if before == ZERO_SHA or not SHA.match(before):
        return None
    _git(workdir, timeout_seconds, "fetch", "-q", "--depth", "1", "--", url, before)
    names = _git(workdir, timeout_seconds, "diff", "--name-only", "--no-renames", before, after)
    return frozenset(line for line in names.splitlines() if line)


def remove(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


def redact(text: str) -> str:
    """`https://user:token@host/repo` becomes `https://***@host/repo`."""
    return CREDENTIALS.sub(r"\1***@", text)


def _git(cwd: Path, timeout_seconds: float, *args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        with COUNTERS.timed(Kind.GIT):
            result = subprocess.run(
                ["git", *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_seconds,
            )
    except subprocess.TimeoutExpired:
        raise CheckoutError(f"git {args[0]} timed out after {timeout_seconds:.0f} s") from None
    except FileNotFoundError:
        raise CheckoutError("git is not installed") from None
    if result.returncode != 0:
        detail = redact(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "")
        raise CheckoutError(f"git {args[0]} failed: {detail or f'exit code {result.returncode}'}")
    return result.stdout


def touches(changed: frozenset[str], watched: tuple[str, ...]) -> bool:
    """Whether any changed path is, or lies under, a watched path ("." is everything)."""
    return any(
        w == "." or path == w or path.startswith(w.rstrip("/") + "/")
        for path in changed
        for w in watched
    )
