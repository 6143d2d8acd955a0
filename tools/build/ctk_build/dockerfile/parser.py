"""Dockerfile text to logical lines ("nodes"), with Docker's rules for the parts that are easy to get wrong.

* Parser directives (``# syntax=…``, ``# escape=…``, ``# check=…``) count only at the very top: the first
  comment that is not a directive, blank line or instruction ends them. An unknown directive is a comment.
* Comment lines (``#`` after optional whitespace) are dropped, also in the middle of a continued instruction.
* A line ending with the escape token (optionally followed by spaces/tabs) continues on the next line, unless
  that token is itself escaped (``trailing\\\\``); the pieces are joined with nothing between them, and blank
  continuation lines are skipped.
* Heredocs (``<<EOF``, ``<< EOF``, ``<<-EOF``, ``<<- EOF``, ``<<"EOF"``, ``2<<EOF``, several on a line) follow
  shell-form ``RUN``, ``COPY`` and ``ADD`` lines; their bodies are read up to the terminator line. The marker
  is never expanded (``<<$EOF`` ends at a ``$EOF`` line).
* A JSON-form array (``CMD ["a", 42]``) must hold strings only; anything else is an error, as in BuildKit.

The result keeps line numbers so every later error can say ``Dockerfile:LINE``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ctk_shared.errors import InvalidArgument

from .shell import Lexer, ShellError

HEREDOC_INSTRUCTIONS = frozenset({"run", "copy", "add"})
_DIRECTIVE_RE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_KNOWN_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_HEREDOC_RE = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
# instructions whose arguments BuildKit reads as JSON when they start with "[" (HEALTHCHECK CMD and ONBUILD's
# instruction are checked through these)
_JSON_INSTRUCTIONS = frozenset({"add", "cmd", "copy", "entrypoint", "run", "shell", "volume"})
NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"
_BOM = "\ufeff"


class DockerfileError(InvalidArgument):
    """A problem in the Dockerfile: says where (``file:line``) and quotes the offending text."""

    def __init__(self, filename: str, line: int, message: str, text: str = "") -> None:
        where = f"{filename}:{line}" if line else filename
        shown = text.strip()
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{where}: {message}" + (f": {shown}" if shown else ""))
        self.filename = filename
        self.line = line
        self.text = text


@dataclass(frozen=True)
class Heredoc:
    """A heredoc after a RUN, COPY or ADD line: its marker word, its body, and how the body is read."""

    name: str
    content: str  # body lines, each ending with "\n"
    expand: bool  # False when the marker was quoted: no variable substitution in the body
    chomp: bool  # <<- : leading tabs are stripped from the body

    @property
    def body(self) -> str:
        if not self.chomp:
            return self.content
        return "".join(line.lstrip("\t") for line in self.content.splitlines(keepends=True))


@dataclass(frozen=True)
class Node:
    """One instruction as written: keyword, builder flags (``--from=x``), the rest of the line."""

    keyword: str  # lower case: "run", "copy", ...
    flags: tuple[str, ...]  # raw words such as "--from=build", quotes removed
    rest: str  # the arguments after keyword and flags, continuation lines joined
    original: str  # the whole logical line as written (continuations joined)
    line: int  # 1-based line of the keyword
    end_line: int
    heredocs: tuple[Heredoc, ...] = ()

    def json_args(self) -> list[str] | None:
        """The exec form (a JSON array of strings), or None for the shell form."""
        text = self.rest.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


@dataclass
class Dockerfile:
    """A Dockerfile split into nodes, with its escape character, parser directives and name (for messages)."""

    nodes: list[Node]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    filename: str = "Dockerfile"

    def error(self, node: Node | None, message: str) -> DockerfileError:
        return DockerfileError(self.filename, node.line if node else 0, message, node.original if node else "")


def _is_comment(line: str) -> bool:
    return line.lstrip(" \t\r\n\f\v").startswith("#")


def _strip_newline(line: str) -> str:
    return line.rstrip("\r\n")


class _Directives:
    """Reads parser directives from the top of the file until something else appears."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.values: dict[str, str] = {}
        self.done = False

    def offer(self, line: str, lineno: int) -> None:
        if self.done:
            return
        m = _DIRECTIVE_RE.match(line.strip(" \t\u00a0")) if line.lstrip(" \t\u00a0").startswith("#") else None
        if not m:
            self.done = True
            return
        key, value = m.group(1).lower(), m.group(2)
        if key not in _KNOWN_DIRECTIVES:
            self.done = True  # an unknown directive is a comment, and ends the directives
            return
        if key in self.values:
            raise DockerfileError(self.filename, lineno, f"only one {key} parser directive can be used", line)
        if key == "escape" and value not in ("\\", "`"):
            raise DockerfileError(self.filename, lineno, f"invalid escape token '{value}' does not match "
                                  "` or \\", line)
        self.values[key] = value


def _continuation(line: str, escape: str) -> tuple[str, bool]:
    """(line without the continuation token, ended) — ``ended`` is False when the line continues. As BuildKit:
    the token continues a line when it is the last non-blank character and not preceded by another one
    (``a\\\\`` is an escaped escape, the end of the instruction)."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape) and not stripped.endswith(escape + escape):
        return stripped[: -len(escape)], False
    return line, True


def _array_of_non_strings(keyword: str, rest: str) -> bool:
    """Is ``rest`` a JSON array with a non-string in it, for an instruction that takes the exec form?"""
    if keyword == "healthcheck":
        words = rest.split(None, 1)
        if not words or words[0].upper() != "CMD":
            return False
        keyword, rest = "cmd", words[1] if len(words) > 1 else ""
    if keyword not in _JSON_INSTRUCTIONS:
        return False
    text = rest.lstrip()
    if not text.startswith("["):
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False  # not JSON: the shell form, as BuildKit reads it
    return isinstance(value, list) and not all(isinstance(v, str) for v in value)


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Split a Dockerfile into nodes. Raises :class:`DockerfileError` for what can be seen without context:
    unterminated heredocs, bad directives, empty files."""
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    directives = _Directives(filename)
    escape = "\\"
    nodes: list[Node] = []
    i = 0
    while i < len(lines):
        raw = _strip_newline(lines[i])
        lineno = i + 1
        i += 1
        directives.offer(raw, lineno)
        escape = directives.values.get("escape", "\\")
        if _is_comment(raw):
            continue
        first = raw.lstrip(" \t\u00a0")
        start = lineno
        joined, ended = _continuation(first, escape)
        if ended and joined.strip() == "":
            continue
        original = [first]
        while not ended and i < len(lines):
            nxt = _strip_newline(lines[i])
            i += 1
            if _is_comment(nxt):
                continue
            if nxt.strip() == "":
                continue  # an empty continuation line (Docker warns; it is not an error)
            original.append(nxt)
            piece, ended = _continuation(nxt, escape)
            joined += piece
        end = i
        node = _node(joined, filename, start, end, escape, "\n".join(original))
        target = node
        if node.keyword == "onbuild":
            try:
                target = _node(node.rest, filename, start, end, escape, node.original)
            except DockerfileError:
                target = node
        if _array_of_non_strings(target.keyword, target.rest):
            raise DockerfileError(filename, start, NOT_STRING_ARRAY, node.original)
        if node.keyword in HEREDOC_INSTRUCTIONS and "<<" in joined and node.json_args() is None:
            docs = []
            for marker in heredoc_markers(joined, escape):
                body: list[str] = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError(filename, start, f"unterminated heredoc {marker.name!r}",
                                              node.original)
                    candidate = _strip_newline(lines[i])
                    i += 1
                    if (candidate.lstrip("\t") if marker.chomp else candidate) == marker.name:
                        break
                    body.append(candidate + "\n")
                docs.append(Heredoc(marker.name, "".join(body), marker.expand, marker.chomp))
            node = Node(node.keyword, node.flags, node.rest, node.original, node.line, i, tuple(docs))
        nodes.append(node)
    return Dockerfile(nodes, escape, dict(directives.values), filename)


def _node(line: str, filename: str, start: int, end: int, escape: str, original: str) -> Node:
    stripped = line.strip()
    m = re.match(r"(\S+)\s*(.*)$", stripped, re.S)
    if not m:
        raise DockerfileError(filename, start, "empty instruction", original)
    keyword, rest = m.group(1), m.group(2)
    try:
        rest, flags = extract_flags(rest)
    except ShellError as e:
        raise DockerfileError(filename, start, str(e), original) from None
    return Node(keyword.lower(), tuple(flags), rest, original, start, end)


def extract_flags(rest: str) -> tuple[str, list[str]]:
    """Leading ``--name[=value]`` words (quotes allowed in values) and the text after them; ``--`` ends them."""
    flags: list[str] = []
    pos = 0
    n = len(rest)
    while True:
        while pos < n and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            return rest[pos:], flags
        word: list[str] = []
        quote = ""
        while pos < n:
            ch = rest[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(rest[pos])
                else:
                    word.append(ch)
            elif ch.isspace():
                break
            elif ch in "'\"":
                quote = ch
            elif ch == "\\" and pos + 1 < n:
                pos += 1
                word.append(rest[pos])
            else:
                word.append(ch)
            pos += 1
        if quote:
            raise ShellError("unexpected end of statement while looking for matching quote in a flag")
        text = "".join(word)
        if text == "--":
            return rest[pos:].lstrip(), flags
        flags.append(text)


@dataclass(frozen=True)
class _Marker:
    """One ``<<WORD`` of an instruction line: the terminator, and how the body below it is read."""

    name: str
    expand: bool
    chomp: bool


def heredoc_markers(line: str, escape: str = "\\") -> list[_Marker]:
    """The heredoc markers of a line, in order (``<<EOF``, ``<< EOF``, ``<<-EOF``, ``<<'EOF'``, ``2<<EOF``); the
    marker word is never expanded (``<<$EOF`` is the marker ``$EOF``). Like BuildKit, this reading always
    uses the backslash as the escape (``escape`` is accepted for the callers and not used)."""
    raw = Lexer("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = raw.process_words(line, {})
    except ShellError:
        return []
    return [m for m in map(parse_heredoc, words) if m is not None]


def parse_heredoc(word: str) -> _Marker | None:
    """``<<[-][ ]WORD`` as a marker, or None when ``word`` is not exactly one heredoc marker."""
    m = _HEREDOC_RE.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    try:
        cooked = Lexer("\\", skip_unset=True).process_words(rest, {})
        kept = Lexer("\\", raw_quotes=True, skip_unset=True).process_words(rest, {})
    except ShellError:
        return None
    if len(cooked) != 1 or len(kept) != 1:
        return None
    quotes = cooked[0].count("'") + cooked[0].count('"')
    raw_quotes = kept[0].count("'") + kept[0].count('"')
    return _Marker(cooked[0], quotes == raw_quotes, m.group(2) == "-")


def split_raw_words(rest: str, escape: str = "\\") -> list[str]:
    """Words split on whitespace outside quotes, with quotes and escapes kept (for ``KEY=VALUE`` lists:
    each word is processed later by the lexer, with the environment in force)."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    i = 0
    n = len(rest)
    while i < n:
        ch = rest[i]
        if quote:
            word.append(ch)
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'" and i + 1 < n:
                i += 1
                word.append(rest[i])
        elif ch.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            in_word = True
            word.append(ch)
            if ch in "'\"":
                quote = ch
            elif ch == escape and i + 1 < n:
                i += 1
                word.append(rest[i])
        i += 1
    if in_word:
        words.append("".join(word))
    return words


def as_written(node: Node) -> str:
    """The instruction as written, keyword upper-cased, continuation lines joined (for messages and history)."""
    flags = " ".join(node.flags)
    rest = node.rest.strip()
    return " ".join(p for p in (node.keyword.upper(), flags, rest) if p)
