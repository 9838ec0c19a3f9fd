"""Checkout against a real git repository served over file://, as a worker does."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, init_repository

from ct_service.checkout import ZERO_SHA, changed_paths, fetch_commit, redact, remove, url_problem
from ct_service.exceptions import CheckoutError


@pytest.fixture
def repo(tmp_path: Path) -> tuple[str, list[str]]:
    """A repository with three commits; returns its URL and the commit ids."""
    src = tmp_path / "src"
    src.mkdir()
    init_repository(src)
    commits = []
    for files in (
        {"README.md": "1"},
        {"projects/lenet/train.py": "epochs = 2"},
        {"README.md": "2"},
    ):
        for name, text in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        git(src, "add", ".")
        git(src, "commit", "-q", "-m", "change")
        commits.append(git(src, "rev-parse", "HEAD"))
    return src.as_uri(), commits


@pytest.mark.integration
def test_fetches_exactly_the_pushed_commit_not_the_tip(repo, tmp_path: Path):
    url, commits = repo
    work = fetch_commit(url, commits[1], tmp_path / "work")
    assert git(work, "rev-parse", "HEAD") == commits[1]
    assert (work / "projects/lenet/train.py").read_text() == "epochs = 2"
    assert (work / "README.md").read_text() == "1"  # the tip's README is "2"
    assert git(work, "rev-list", "--count", "HEAD") == "1"  # shallow
    remove(work)
    assert not work.exists()


@pytest.mark.integration
def test_lists_the_paths_two_commits_differ_in(repo, tmp_path: Path):
    url, commits = repo
    work = fetch_commit(url, commits[2], tmp_path / "work")
    assert changed_paths(work, url, commits[1], commits[2]) == {"README.md"}
    assert changed_paths(work, url, commits[0], commits[2]) == {
        "README.md",
        "projects/lenet/train.py",
    }
    assert changed_paths(work, url, ZERO_SHA, commits[2]) is None  # a new branch: all of it


@pytest.mark.integration
def test_an_unknown_commit_or_repository_is_a_clear_error(repo, tmp_path: Path):
    url, _ = repo
    with pytest.raises(CheckoutError, match="git fetch failed"):
        fetch_commit(url, "f" * 40, tmp_path / "a")
    with pytest.raises(CheckoutError, match="git fetch failed"):
        fetch_commit((tmp_path / "nowhere").as_uri(), "f" * 40, tmp_path / "b")
    with pytest.raises(CheckoutError, match="not a commit id"):
        fetch_commit(url, "main", tmp_path / "c")


@pytest.mark.integration
def test_credentials_in_urls_never_reach_an_error():
    assert redact("fatal: unable to access 'https://ci:ghp_T0KEN@github.com/a/b.git/'") == (
        "fatal: unable to access 'https://***@github.com/a/b.git/'"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "url",
    [
        "https://ci:ghp_T0KEN@github.com/acme/models.git",
        "https://ghp_T0KEN@github.com/acme/models.git",  # a token as the user name
        "https://x-access-token@github.com/acme/models.git",
        "ssh://git:pa55@github.com/acme/models.git",
    ],
)
def test_no_credential_is_accepted_in_a_git_url(url: str) -> None:
    """Git puts the URL on command lines that `ps` shows every user (its own, and
    git-remote-https's), so a token must come from a credential helper."""
    assert url_problem(url).startswith("put no credentials in the git URL")
    assert url_problem("ssh://git@github.com/acme/models.git") == ""  # a user, no secret
