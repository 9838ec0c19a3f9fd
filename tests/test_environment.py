"""Choosing an execution environment by reading a project's code and files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import LENET

from ct_service.exceptions import ProjectError
from ct_service.execution.environment import choose, frameworks, load_images

MLPROJECT = "name: p\nentry_points:\n  main:\n    command: python train.py\n"


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "MLproject").write_text(MLPROJECT)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.mark.unit
def test_lenet_is_built_from_its_own_dockerfile() -> None:
    environment = choose(LENET)
    assert environment.dockerfile == LENET / "Dockerfile"
    assert environment.reason == "the project has a Dockerfile"


@pytest.mark.unit
def test_a_keras_project_without_a_dockerfile_gets_the_tensorflow_image(tmp_path: Path) -> None:
    folder = project(tmp_path, {"train.py": "import numpy as np\nfrom keras import layers\n"})
    environment = choose(folder)
    assert environment.image == "ct-train-tensorflow:latest"
    assert environment.framework == "tensorflow"
    assert environment.reason == "imports in train.py: keras: the tensorflow image"


@pytest.mark.unit
def test_a_pytorch_project_with_no_configured_image_fails_fast_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    folder = project(tmp_path, {"model/net.py": "import torch.nn as nn\nimport sklearn\n"})
    with pytest.raises(ProjectError) as raised:
        choose(folder)
    assert str(raised.value) == (
        "p uses pytorch (imports in model/net.py: torch) and no environment is configured "
        "for pytorch: declare its dependencies (python_env.yaml or requirements.txt), add "
        "'pytorch: IMAGE' to CT_ENVIRONMENTS_FILE, or give the project a Dockerfile or a "
        "docker_env image"
    )


@pytest.mark.unit
def test_a_configured_table_adds_images(tmp_path: Path) -> None:
    table = tmp_path / "environments.yaml"
    table.write_text("pytorch: registry.example/torch-train:2.13\n")
    folder = project(tmp_path, {"train.py": "import torch\n"})
    environment = choose(folder, load_images(str(table)))
    assert environment.image == "registry.example/torch-train:2.13"


@pytest.mark.unit
def test_a_declared_docker_env_wins(tmp_path: Path) -> None:
    folder = project(tmp_path, {"train.py": "import torch\n", "Dockerfile": "FROM x\n"})
    (folder / "MLproject").write_text(MLPROJECT + "docker_env:\n  image: mine:1\n")
    assert choose(folder).image == "mine:1"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"requirements.txt": "scikit-learn>=1.4  # models\npandas\n"}, ["sklearn"]),
        ({"python_env.yaml": "dependencies:\n  - tensorflow-cpu>=2.16\n"}, ["tensorflow"]),
        (
            {"conda.yaml": "dependencies:\n  - python=3.11\n  - pip:\n    - torch==2.13\n"},
            ["pytorch"],
        ),
        ({"a.py": "import xgboost\nimport sklearn\n"}, ["xgboost", "sklearn"]),
        ({"a.py": "from . import torch\nimport os\n"}, []),  # a relative import is local
        ({"a.py": "def broken(:\n"}, []),
    ],
)
def test_frameworks_are_read_from_imports_and_requirements(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    assert list(frameworks(project(tmp_path, files))) == expected


@pytest.mark.unit
def test_a_project_with_no_known_framework_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="declares no dependencies"):
        choose(project(tmp_path, {"train.py": "import json\n"}))


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- torch\n", "expected 'framework: image' lines"),
        ("cobol: img\n", "unknown framework(s) cobol"),
        ("pytorch: ''\n", "expected 'framework: image' lines"),
    ],
)
def test_a_bad_environments_file_names_itself(tmp_path: Path, text: str, message: str) -> None:
    table = tmp_path / "environments.yaml"
    table.write_text(text)
    with pytest.raises(ProjectError, match="CT_ENVIRONMENTS_FILE") as raised:
        load_images(str(table))
    assert message in str(raised.value)


# -- an image from what the project declares (no Dockerfile, no docker_env) -----------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("files", "source", "requirements"),
    [
        (
            {
                "python_env.yaml": "python: '3.11'\nbuild_dependencies: [pip]\n"
                "dependencies: [scikit-learn==1.5.2, mlflow>=3.17]\n"
            },
            "python_env.yaml",
            ("pip", "scikit-learn==1.5.2", "mlflow>=3.17"),
        ),
        (  # MLflow's examples list their requirements file in python_env.yaml
            {
                "python_env.yaml": "dependencies: ['-r requirements.txt']\n",
                "requirements.txt": "# pinned\npandas==2.2.3  # frames\n\nnumpy\n",
            },
            "python_env.yaml",
            ("pandas==2.2.3", "numpy"),
        ),
        (
            {"conda.yaml": "dependencies:\n  - python=3.11\n  - pip\n  - pip: [xgboost]\n"},
            "conda.yaml",
            ("xgboost",),
        ),
        ({"requirements.txt": "lightgbm>=4\n"}, "requirements.txt", ("lightgbm>=4",)),
    ],
)
def test_a_project_without_a_dockerfile_gets_an_image_from_its_declared_dependencies(
    tmp_path: Path, files: dict[str, str], source: str, requirements: tuple[str, ...]
) -> None:
    environment = choose(project(tmp_path, {"train.py": "import sklearn\n", **files}))
    assert environment.requirements == requirements
    assert environment.image == "" and environment.dockerfile is None
    assert environment.reason == (
        f"no Dockerfile: an image built from its {source} ({len(requirements)} requirements)"
    )


@pytest.mark.unit
def test_the_operators_table_overrides_what_the_project_declares(tmp_path: Path) -> None:
    folder = project(tmp_path, {"train.py": "import torch\n", "requirements.txt": "torch\n"})
    environment = choose(folder, {"pytorch": "registry.example/torch:2.13"})
    assert environment.image == "registry.example/torch:2.13"
    assert (
        environment.reason
        == "imports in train.py: torch: the pytorch image of CT_ENVIRONMENTS_FILE"
    )
    assert choose(folder).requirements == ("torch",)  # without the table: its own


@pytest.mark.unit
def test_conda_packages_are_refused_for_an_image_built_with_pip(tmp_path: Path) -> None:
    folder = project(
        tmp_path, {"conda.yaml": "dependencies:\n  - python=3.11\n  - cudatoolkit=11.8\n"}
    )
    with pytest.raises(ProjectError, match=re.escape("asks for conda packages (cudatoolkit=11.8)")):
        choose(folder)


@pytest.mark.unit
def test_a_declaration_without_requirements_still_gets_an_image_of_its_own(
    tmp_path: Path,
) -> None:
    environment = choose(project(tmp_path, {"python_env.yaml": "dependencies: []\n"}))
    assert environment.declared and environment.requirements == ()
    assert environment.image == "" and environment.dockerfile is None
