"""What the Docker daemon itself would fetch for a pushed Dockerfile, read before it
is built.

The daemon works in the host's network, not in CT_DOCKER_BUILD_NETWORK (that network
is only where RUN steps run): `ADD http://127.0.0.1:6379/...`, a git source or a base
image on a registry host the push names would be fetched from there. So a pushed
Dockerfile is read first, the way the engine's parser reads it (BuildKit's
frontend/dockerfile/parser, which Docker's classic builder uses too): the escape
directive, continuation lines with comments and blank lines among them, instruction
names in any case, `--flag` words with quotes and escapes, JSON arrays, ONBUILD.
review() returns

- refusals: an ADD source that is not a plain path of the build context (a URL, a git
  address, or a variable, quote or escape that only the build resolves and that could
  make one), an image named through anything but a global ARG, and what Docker
  versions read differently (an escape directive after the first line, a line ending
  in two escape characters);
- the images the daemon would resolve (FROM, COPY --from, RUN --mount from=, the
  syntax directive), which images.py checks against the engine.

Lines are not interpreted beyond that: RUN steps run in the operator's build network,
and anything the parser would refuse the engine refuses too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Go's unicode.IsSpace, which the engine's parser trims lines and instructions with.
GO_SPACES = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
GO_SPACES += "\u2028\u2029\u202f\u205f\u3000"
# What its flag reader takes for a space: it reads the line byte by byte, as runes.
BYTE_SPACES = "\t\n\v\f\r \x85\xa0"
WORDS = re.compile(r"[\t\v\f\r ]+")  # what separates an instruction's words
ESCAPE_LIKE = re.compile(r"#\s*escape\s*=", re.IGNORECASE)
ESCAPE_DIRECTIVE = re.compile(r"#[ \t]*escape[ \t]*=[ \t]*([\\`])[ \t]*", re.IGNORECASE)
SYNTAX_DIRECTIVE = re.compile(r"#\s*syntax\s*=\s*(.*?)\s*", re.IGNORECASE)
# A path of the build context as ADD may name one: letters, digits, a few marks and
# glob characters. No ':' or '@' (URLs, git@host:repo), '$', quotes or escapes.
PLAIN_SOURCE = re.compile(r"[\w.,/+=~%*?\[\]^!-]+")
REFERENCE = re.compile(r"[A-Za-z0-9._:/@-]+")  # an image reference, nothing to resolve
# an image reference with global ARGs in it: $NAME or ${NAME}, nothing else
WITH_ARGS = re.compile(r"(?:[A-Za-z0-9._:/@-]|\$[A-Za-z_]\w*|\$\{[A-Za-z_]\w*\})+", re.ASCII)
ARG_USE = re.compile(r"\$(?:([A-Za-z_]\w*)|\{([A-Za-z_]\w*)\})", re.ASCII)
REMOTE = re.compile(r"[a-z][a-z0-9+.-]*://|[^/\s]+@[^/\s]+:|github\.com/", re.IGNORECASE)
DOCKER_HUB = ("docker.io", "index.docker.io")
QUOTES_AND_ESCAPES = set("\"'`\\$")


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts, from 1
    keyword: str  # as written; read() compares it in upper case
    flags: tuple[str, ...]  # its --name=value words, quotes and escapes removed
    rest: str  # what follows the flags


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str


@dataclass(frozen=True)
class Reference:
    """An image the daemon would resolve: from the engine, else from a registry."""

    line: int
    instruction: str  # "FROM", "COPY --from", "RUN --mount from", "# syntax", "ONBUILD ..."
    name: str  # ARGs resolved
    base: bool  # a stage's base (FROM): its ONBUILD triggers run in this build


@dataclass(frozen=True)
class Review:
    refusals: tuple[Refusal, ...]
    images: tuple[Reference, ...]


def review(text: str, build_args: Mapping[str, str] | None = None) -> Review:
    """The refusals and image references of a Dockerfile built with `build_args`."""
    lines = _physical_lines(text)
    escape, refusals, syntax = _directives(lines)
    reader = _Reader(escape, build_args or {})
    reader.refusals += refusals
    for number, value in syntax:
        reader.image_or_stage(number, "# syntax", value, onbuild=True)
    doubled = re.compile(re.escape(escape) * 2 + r"[ \t]*$")
    for number, line in enumerate(lines, 1):
        if not _is_comment(line) and doubled.search(line):
            reader.refuse(
                number,
                f"the line ends in two escape characters ({escape}{escape}): Docker versions "
                "differ on whether the next line continues it",
            )
    for number, line in _logical_lines(lines, escape):
        reader.read(_instruction(number, line, escape))
    return Review(tuple(reader.refusals), tuple(reader.images))


def review_triggers(triggers: Iterable[str]) -> Review:
    """The ONBUILD triggers of a base image (its config's OnBuild lines, which run in
    a build FROM it), read as ONBUILD instructions; a refusal's line is the trigger's
    position, from 1."""
    reader = _Reader("\\", {})
    for number, trigger in enumerate(triggers, 1):
        for _, line in _logical_lines(_physical_lines(trigger), "\\"):
            reader.read(_instruction(number, line, "\\"), onbuild=True)
    return Review(tuple(reader.refusals), tuple(reader.images))


def registry_host(reference: str) -> str:
    """The registry host an image reference names, "" for Docker Hub: the first path
    component is a host when it holds '.' or ':', is localhost, or has capitals (the
    rule of Docker's reference parser)."""
    first, slash, _ = reference.split("@", 1)[0].partition("/")
    named = any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    if not slash or not named:
        return ""
    return "" if first in DOCKER_HUB else first


class _Reader:
    """Reads instructions in order: global ARGs (before the first FROM, which base
    images may use), stage names, and what each instruction makes the daemon fetch."""

    def __init__(self, escape: str, build_args: Mapping[str, str]):
        self.escape = escape
        self.build_args = build_args
        self.global_args: dict[str, str] = {}  # declared before the first FROM
        self.unreadable: set[str] = set()  # of those, values only the build resolves
        self.stages: set[str] = set()  # names of the stages so far, lower case
        self.in_stage = False
        self.refusals: list[Refusal] = []
        self.images: list[Reference] = []

    def refuse(self, line: int, reason: str) -> None:
        self.refusals.append(Refusal(line, reason))

    def read(self, instruction: Instruction, onbuild: bool = False) -> None:
        keyword = instruction.keyword.upper()
        if not instruction.keyword.isascii():
            self.refuse(instruction.line, f"instruction {instruction.keyword!r} is not ASCII")
        elif keyword == "ONBUILD" and not onbuild:
            inner = _instruction(instruction.line, instruction.rest, self.escape)
            self.read(inner, onbuild=True)
        elif keyword == "ARG" and not self.in_stage and not onbuild:
            self._global_arg(instruction)
        elif keyword == "FROM" and not onbuild:
            self._from(instruction)
        elif keyword == "ADD":
            self._add(instruction, "ONBUILD ADD" if onbuild else "ADD")
        elif keyword == "COPY":
            for value in _flag_values(instruction.flags, "from"):
                where = "ONBUILD COPY --from" if onbuild else "COPY --from"
                self.image_or_stage(instruction.line, where, value, onbuild)
        elif keyword == "RUN":
            for value in _flag_values(instruction.flags, "mount"):
                self._mount(instruction.line, value, onbuild)

    def image_or_stage(self, line: int, where: str, value: str, onbuild: bool) -> None:
        if not REFERENCE.fullmatch(value):
            self.refuse(
                line,
                f"{where} {value}: not a plain image or stage name (it cannot be checked "
                "before the build)",
            )
        elif not value.isdigit() and (onbuild or value.lower() not in self.stages):
            self.images.append(Reference(line, where, value, base=False))

    def _global_arg(self, instruction: Instruction) -> None:
        """ARG NAME[=value] ...; a word with a quote, escape or variable makes every
        name of the instruction unreadable (its words may not be the ones seen here)."""
        words = WORDS.split(instruction.rest) if instruction.rest else []
        unclear = any(QUOTES_AND_ESCAPES & set(w) or self.escape in w for w in words)
        for word in words:
            name, _, value = word.partition("=")
            self.global_args[name] = value
            if unclear:
                self.unreadable.add(name)
            else:
                self.unreadable.discard(name)

    def _from(self, instruction: Instruction) -> None:
        self.in_stage = True
        words = WORDS.split(instruction.rest) if instruction.rest else []
        if not words:
            return  # the engine refuses it
        name = self._resolve(instruction.line, words[0])
        if name is not None and name.lower() != "scratch" and name.lower() not in self.stages:
            self.images.append(Reference(instruction.line, "FROM", name, base=True))
        if len(words) == 3 and words[1].lower() == "as":
            self.stages.add(words[2].lower())

    def _resolve(self, line: int, word: str) -> str | None:
        """FROM's image with the global ARGs in it replaced; None when refused."""
        if not WITH_ARGS.fullmatch(word):
            self.refuse(
                line,
                f"FROM {word}: not a plain image reference (quotes, escapes and variable "
                "forms other than $NAME or ${NAME} cannot be checked before the build)",
            )
            return None
        unknown: list[str] = []

        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name in self.build_args and name in self.global_args:
                return self.build_args[name]
            if name not in self.global_args or name in self.unreadable:
                unknown.append(name)
                return ""
            return self.global_args[name]

        resolved = ARG_USE.sub(value, word)
        if unknown:
            self.refuse(
                line,
                f"FROM {word}: ${unknown[0]} is not a global ARG whose value can be read "
                "before the build",
            )
            return None
        if not REFERENCE.fullmatch(resolved):
            self.refuse(line, f"FROM {word}: resolves to {resolved!r}, not an image reference")
            return None
        return resolved

    def _add(self, instruction: Instruction, where: str) -> None:
        words = _list_words(instruction.rest)
        if words is None:
            self.refuse(instruction.line, f"{where}: a JSON array of something else than strings")
            return
        for source in words[:-1] if len(words) > 1 else words:
            if PLAIN_SOURCE.fullmatch(source):
                continue
            if REMOTE.match(source):
                why = (
                    "a remote source: the Docker daemon would fetch it in the host's network "
                    "(CT_DOCKER_BUILD_NETWORK does not apply to it); put the file into the "
                    "project and COPY it"
                )
            else:
                why = (
                    "not a plain path of the project (a variable, quote or escape is resolved "
                    "only by the build, and could make it a URL); name the file plainly, or "
                    "COPY it"
                )
            self.refuse(instruction.line, f"{where} {source}: {why}")
            return

    def _mount(self, line: int, value: str, onbuild: bool) -> None:
        where = "ONBUILD RUN --mount from" if onbuild else "RUN --mount from"
        if set(value) & set("\"'"):
            self.refuse(line, f"RUN --mount={value}: quoted fields cannot be checked")
            return
        for field in value.split(","):
            key, _, image = field.partition("=")
            if key.strip().lower() == "from":
                self.image_or_stage(line, where, image, onbuild)


def _physical_lines(text: str) -> list[str]:
    """Lines as Go's scanner gives them: split at LF only, trailing CRs dropped, the
    first line without its byte-order mark."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rstrip("\r") for line in lines]
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    return lines


def _directives(lines: list[str]) -> tuple[str, list[Refusal], list[tuple[int, str]]]:
    """The escape character, refusals and syntax images of the parser directives: the
    comment lines at the top. Only the first line's escape directive is read the same
    way by every Docker version (20.10 stops at a syntax directive, BuildKit does not),
    so a backtick one further down is refused."""
    escape, refusals, syntax = "\\", [], []
    for index, raw in enumerate(lines):
        comment = raw.lstrip(GO_SPACES)
        if not comment.startswith("#"):
            break
        if ESCAPE_LIKE.match(comment):
            match = ESCAPE_DIRECTIVE.fullmatch(comment)
            if index == 0 and match:
                escape = match.group(1)
            elif not (match and match.group(1) == "\\" and escape == "\\"):
                refusals.append(
                    Refusal(
                        index + 1,
                        "an escape directive is read the same way by every Docker version "
                        "only as the first line, as `# escape=\\` or # escape=`",
                    )
                )
        elif found := SYNTAX_DIRECTIVE.fullmatch(comment):
            syntax.append((index + 1, found.group(1)))
    return escape, refusals, syntax


def _is_comment(line: str) -> bool:
    return line.lstrip(GO_SPACES).startswith("#")


def _continued(line: str, escape: str) -> tuple[str, bool]:
    """The line without its continuation character, and whether one ended it."""
    found = re.search(re.escape(escape) + r"[ \t]*$", line)
    return (line[: found.start()], True) if found else (line, False)


def _logical_lines(lines: list[str], escape: str) -> list[tuple[int, str]]:
    """(first line number, text) of each instruction: continuation lines joined, comment
    and blank lines among them skipped, comments and blank lines between dropped."""
    found = []
    index = 0
    while index < len(lines):
        number, first = index + 1, lines[index].lstrip(GO_SPACES)
        index += 1
        if first.startswith("#"):
            continue
        text, more = _continued(first, escape)
        if not more and not text:
            continue
        parts = [text]
        while more and index < len(lines):
            line = lines[index]
            index += 1
            if _is_comment(line) or not line.lstrip(GO_SPACES):
                continue
            text, more = _continued(line, escape)
            parts.append(text)
        found.append((number, "".join(parts)))
    return found


def _instruction(line: int, text: str, escape: str) -> Instruction:
    words = WORDS.split(text.strip(GO_SPACES), maxsplit=1)
    if len(words) < 2:
        return Instruction(line, words[0], (), "")
    flags, rest = _flags(words[1], escape)
    return Instruction(line, words[0], flags, rest.strip(GO_SPACES))


def _flags(text: str, escape: str) -> tuple[tuple[str, ...], str]:
    """The leading --flag words and the rest, as the engine's extractBuilderFlags reads
    them: byte by byte (so the line is seen as Latin-1 here), quotes and escapes taken
    out of the words, a lone `--` ending them."""
    line = text.encode("utf-8", "surrogateescape").decode("latin-1")
    words: list[str] = []
    word, quote, phase, blank_ok = "", "", "spaces", False
    position = 0
    while position <= len(line):
        at_end = position == len(line)
        char = "" if at_end else line[position]
        if phase == "spaces":
            if at_end:
                break
            if char in BYTE_SPACES:
                position += 1
                continue
            if char != "-" or position + 1 == len(line) or line[position + 1] != "-":
                return tuple(map(_utf8, words)), _utf8(line[position:])
            phase = "word"
        if at_end:
            if word != "--" and (blank_ok or word):
                words.append(word)
            break
        if phase == "word":
            if char in BYTE_SPACES:
                if word == "--":
                    return tuple(map(_utf8, words)), _utf8(line[position:])
                if blank_ok or word:
                    words.append(word)
                word, blank_ok, phase = "", False, "spaces"
                position += 1
                continue
            if char in "'\"":
                quote, blank_ok, phase = char, True, "quote"
                position += 1
                continue
        elif char == quote:  # in quotes
            phase = "word"
            position += 1
            continue
        if char == escape:
            if position + 1 == len(line):
                phase = "word"
                position += 1
                continue
            position += 1
            char = line[position]
        word += char
        position += 1
    return tuple(map(_utf8, words)), ""


def _utf8(latin1: str) -> str:
    return latin1.encode("latin-1").decode("utf-8", "surrogateescape")


def _flag_values(flags: tuple[str, ...], name: str) -> list[str]:
    """The values of --name=value flags (the name in any case)."""
    found = []
    for flag in flags:
        key, equals, value = flag[2:].partition("=")
        if equals and key.lower() == name:
            found.append(value)
    return found


def _reject(constant: str) -> float:
    raise ValueError(f"not JSON: {constant}")  # NaN and Infinity, which Go refuses


def _list_words(rest: str) -> list[str] | None:
    """ADD's words: a JSON array of strings, or else the words between spaces; None for
    a JSON array of anything else (the engine refuses it)."""
    trimmed = rest.lstrip(GO_SPACES)
    if trimmed.startswith("["):
        try:
            value, _ = json.JSONDecoder(parse_constant=_reject).raw_decode(trimmed)
        except ValueError:
            value = None
        if isinstance(value, list):
            return value if all(isinstance(item, str) for item in value) else None
    return WORDS.split(rest) if rest else []
