"""MkDocs hook: the Names page (names.md), written at every build from the modules
that own the names, `ct_service/run_tags.py` (MLflow tags and params) and
`ct_service/keys.py` (Redis keys), so the page cannot drift from the code.

The modules are read, not imported: each constant's value and its comment (on its
line, or the comment block right above it), each key function's f-string and its
docstring, and the `# -- section --` comments as headings.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RUN_TAGS = ROOT / "ct_service" / "run_tags.py"
KEYS = ROOT / "ct_service" / "keys.py"
PAGE = "names.md"


def on_files(files: Files, config: Any) -> Files:
    """Add the generated page to the site's files (before the nav is checked)."""
    files.append(File.generated(config, PAGE, content=page()))
    return files


def page() -> str:
    return "\n".join(
        [
            "# Names",
            "",
            "Every MLflow tag and parameter name the service writes or reads is a constant in",
            "`ct_service/run_tags.py`; every Redis key is built by `ct_service/keys.py`. This",
            "page is generated from those two modules each time the site is built",
            "(`docs/hooks/names.py`): edit the comments there, not here.",
            "",
            "## MLflow tags and parameters",
            "",
            *_docstring(RUN_TAGS),
            *_run_tags(),
            "## Redis keys",
            "",
            *_docstring(KEYS),
            *_keys(),
        ]
    )


def _docstring(path: Path) -> list[str]:
    text = ast.get_docstring(ast.parse(path.read_text())) or ""
    return [f"> {_cell(line)}".rstrip() for line in text.splitlines()] + [""]


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}


def _is_section(comment: str) -> bool:
    return comment.startswith("--")


def _section_title(comment: str) -> str:
    return comment.strip("- ").rstrip("-").strip()


def _meaning(node: ast.stmt, comments: dict[int, str], lines: list[str]) -> str:
    """The comment on the statement's lines, else the comment block right above it."""
    end = node.end_lineno or node.lineno
    inline = [comments[n] for n in range(node.lineno, end + 1) if n in comments]
    if inline:
        return " ".join(inline)
    above: list[str] = []
    number = node.lineno - 1
    while number in comments and lines[number - 1].lstrip().startswith("#"):
        if _is_section(comments[number]):
            break
        above.insert(0, comments[number])
        number -= 1
    return " ".join(above)


def _cell(text: str) -> str:
    """Text for a table cell: pipes escaped, and `<...>` outside code spans shown as
    text (Markdown would take it for an HTML tag)."""
    parts = text.replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _run_tags() -> list[str]:
    source = RUN_TAGS.read_text()
    lines = source.splitlines()
    comments = _comments(source)
    tree = ast.parse(source)
    sections = sorted((n, _section_title(c)) for n, c in comments.items() if _is_section(c))
    out: list[str] = []
    section = -1
    for node in tree.body:
        if not isinstance(node, ast.Assign) or not isinstance(node.targets[0], ast.Name):
            continue
        if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            continue  # a tuple of names, not a name
        current = max((i for i, (n, _) in enumerate(sections) if n < node.lineno), default=-1)
        if current != section:
            section = current
            title = sections[current][1] if current >= 0 else "Names"
            out += ["", f"### {title[0].upper()}{title[1:]}", "", "| name | constant | meaning |"]
            out.append("| --- | --- | --- |")
        name = node.targets[0].id
        value = node.value.value
        meaning = _meaning(node, comments, lines)
        out.append(f"| {_cell(f'`{value}`')} | `{name}` | {_cell(meaning)} |")
    return out + [""]


def _template(function: ast.FunctionDef) -> str:
    """`claim:run:<attempt_id>` from `return f"claim:run:{attempt_id}"`."""
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.JoinedStr):
            parts = []
            for part in node.value.values:
                if isinstance(part, ast.Constant):
                    parts.append(str(part.value))
                elif isinstance(part, ast.FormattedValue):  # the last name in it: args
                    names = [n.id for n in ast.walk(part.value) if isinstance(n, ast.Name)]
                    parts.append(f"<{names[-1] if names else ast.unparse(part.value)}>")
            return "".join(parts)
    return function.name


def _keys() -> list[str]:
    source = KEYS.read_text()
    lines = source.splitlines()
    comments = _comments(source)
    tree = ast.parse(source)
    constants = ["| constant | value | meaning |", "| --- | --- | --- |"]
    built = [
        "| key (after its prefix) | built by | what it holds, its lifetime |",
        "| --- | --- | --- |",
    ]
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            value = ast.get_source_segment(source, node.value) or ""
            name = node.targets[0].id
            meaning = _meaning(node, comments, lines)
            constants.append(f"| `{name}` | {_cell(f'`{value}`')} | {_cell(meaning)} |")
        elif isinstance(node, ast.FunctionDef):
            doc = " ".join((ast.get_docstring(node) or "").split())
            key = _cell(f"`{_template(node)}`")
            built.append(f"| {key} | `keys.{node.name}()` | {_cell(doc)} |")
    return [
        "### Keys",
        "",
        *built,
        "",
        "### Prefixes, lifetimes and fixed keys",
        "",
        *constants,
        "",
    ]
