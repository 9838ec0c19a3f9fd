"""The watched-repository allow-list: a valid file loads; every mistake is refused
at start with the file, the entry and the key in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_service.exceptions import SettingsError
from ct_service.repositories import load_repositories
from ct_service.webhook.push import Provider

GOOD = """
repositories:
  - name: acme/models
    provider: github
    url: https://github.com/acme/models.git
    secret_env: CT_SECRET_ACME
    branches: [main, release]
    project: projects/lenet
    watch: [requirements.txt, shared/]
    target: {metric: rmse, threshold: 0.8, direction: minimize}
  - name: team/vision
    provider: bitbucket
    url: git@bitbucket.org:team/vision.git
    secret_file: {secret_file}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "repositories.yaml"
    path.write_text(text)
    return path


@pytest.mark.unit
def test_a_valid_file_loads(tmp_path: Path):
    secret_file = tmp_path / "bb-secret"
    secret_file.write_text("bb-s3cret\n")
    repos = load_repositories(
        write(tmp_path, GOOD.replace("{secret_file}", str(secret_file))),
        {"CT_SECRET_ACME": "gh-s3cret"},
    )
    acme = repos[(Provider.GITHUB, "acme/models")]
    assert acme.secret == "gh-s3cret" and "gh-s3cret" not in repr(acme)
    assert acme.branches == ("main", "release")
    assert acme.project == "projects/lenet"
    assert acme.target is not None and acme.target.describe() == "rmse <= 0.8"
    vision = repos[(Provider.BITBUCKET, "team/vision")]
    assert vision.secret == "bb-s3cret"
    assert vision.branches == ("main",) and vision.project == "." and vision.target is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("changed", "retrains"),
    [
        ({"projects/lenet/train.py"}, True),
        ({"requirements.txt"}, True),
        ({"shared/data.py"}, True),
        ({"README.md", "docs/index.md"}, False),
        ({"projects/lenet-old/train.py"}, False),  # a sibling folder with a longer name
        (set(), False),
    ],
)
def test_the_path_filter(tmp_path: Path, changed, retrains):
    secret_file = tmp_path / "s"
    secret_file.write_text("x")
    repos = load_repositories(
        write(tmp_path, GOOD.replace("{secret_file}", str(secret_file))), {"CT_SECRET_ACME": "x"}
    )
    assert repos[(Provider.GITHUB, "acme/models")].watches(frozenset(changed)) is retrains


ENTRY = "  - {name: acme/models, provider: github, url: 'https://h/acme/models.git', secret_env: S"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("repositories: []", "expected a non-empty list under 'repositories'"),
        ("{not yaml", "not valid YAML"),
        (
            f"repositories:\n{ENTRY}, secret: hunter2}}",
            "unknown key(s) secret (put secrets in secret_env or secret_file)",
        ),
        (f"repositories:\n{ENTRY}, provider: svn}}", "repositories[0].provider must be one of"),
        (
            "repositories:\n  - {name: acme/models, provider: github, url: 'ftp://h/x', secret_env: S}",
            "repositories[0].url: the git URL must be https://, ssh:// or git@host:path",
        ),
        (
            f"repositories:\n{ENTRY}, project: ../../etc}}",
            "repositories[0].project: '../../etc' must stay inside the repository",
        ),
        (
            f"repositories:\n{ENTRY}, branches: 5}}",
            "repositories[0].branches must be a list of non-empty strings",
        ),
        (f"repositories:\n{ENTRY}, target: {{threshold: high}}}}", "repositories[0].target:"),
        (
            f"repositories:\n{ENTRY}}}\n{ENTRY}}}",
            "repositories[1]: github acme/models is listed twice",
        ),
        (
            "repositories:\n  - {name: acme/models, provider: github, url: 'https://h/x', secret_env: MISSING}",
            "repositories[0].secret_env: MISSING is not set",
        ),
    ],
)
def test_mistakes_are_refused_with_their_place(tmp_path: Path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as raised:
        load_repositories(path, {"S": "x"})
    assert message in str(raised.value)
    assert str(path) in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.unit
def test_an_unreadable_file_names_the_variable(tmp_path: Path):
    with pytest.raises(SettingsError, match="CT_REPOSITORIES_FILE: cannot read"):
        load_repositories(tmp_path / "missing.yaml", {})
