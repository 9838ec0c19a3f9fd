"""The documentation site builds with `mkdocs build --strict` (a broken link, an
unknown anchor or a page left out of the nav fails), and its Names page is generated
from the modules that own the names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from ct_service import keys, run_tags


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # its end-of-life banner
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    return folder


@pytest.mark.integration
def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md")) + ["names"]
    for page in pages:
        built = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.is_file(), page


@pytest.mark.integration
def test_names_page_lists_every_tag_and_key_the_code_defines(site: Path) -> None:
    html = (site / "names" / "index.html").read_text()
    tags = [v for v in vars(run_tags).values() if isinstance(v, str) and v.startswith("ct.")]
    assert tags and all(f"<code>{tag}</code>" in html for tag in tags)
    builders = [
        name
        for name, value in vars(keys).items()
        if callable(value) and value.__module__ == keys.__name__
    ]
    assert builders and all(f"keys.{name}()" in html for name in builders)
    assert "claim:run:&lt;attempt_id&gt;" in html  # the key as keys.run_claim builds it


@pytest.mark.integration
def test_readme_links_into_the_docs_reach_their_anchors(site: Path) -> None:
    links = re.findall(
        r"\]\(docs/([a-z-]+)\.md(?:#([a-z0-9-]+))?\)", (ROOT / "README.md").read_text()
    )
    assert links
    for page, anchor in links:
        built = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert built.is_file(), page
        if anchor:
            assert f'id="{anchor}"' in built.read_text(), f"docs/{page}.md#{anchor}"
