"""``.dockerignore``: which context files COPY and ADD may see, with Docker's matching rules.

* One pattern per line; ``#`` lines are comments; blank lines are skipped; surrounding spaces are trimmed.
* Patterns are cleaned (``./a//b/`` → ``a/b``) and relative to the context root (a leading ``/`` is dropped).
* ``*`` and ``?`` never match ``/``; ``[...]`` is a character class as in Go's ``filepath.Match`` (``^``
  negates, ``\\`` escapes inside it too, ``!`` is an ordinary character); ``\\`` escapes; ``**`` matches any
  number of directories (``**/x``, ``a/**``, ``a/**/b``).
* A pattern Go's ``filepath.Match`` rejects (``[``, ``a[``, a trailing ``\\``, ``[]``, ``[a-b-c]``) and a ``!``
  alone are errors, as Docker's matcher makes them: the build stops instead of sending files it should not.
* A path is excluded if it, or one of its parent directories, matches; ``!pattern`` re-includes; the last
  matching line wins.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class _Pattern:
    """One ``.dockerignore`` pattern (without its ``!``), and the regular expression it became."""

    text: str
    exclusion: bool  # a "!" line: re-include what matches
    regex: re.Pattern[str]


def read_patterns(text: str) -> list[str]:
    return [p for p, _line in _read_lines(text)]


def _read_lines(text: str) -> list[tuple[str, int]]:
    """The patterns of a ``.dockerignore``, each with its line number (for errors)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/") or "/"
        out.append((("!" if invert else "") + line, lineno))
    return out


class BadPattern(ValueError):
    """A pattern Go's ``filepath.Match`` would reject."""


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """One character of a ``[...]`` range (``c`` or ``\\c``) at ``i``: (the character, the index after it),
    with Go's ``getEsc`` checks: not ``-`` or ``]``, not the pattern's end."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        raise BadPattern(pattern)
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            raise BadPattern(pattern)
    if i + 1 >= n:  # the class is never closed
        raise BadPattern(pattern)
    return pattern[i], i + 1


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The ``[...]`` starting at ``i`` (just after ``[``) as a regex class, and the index after its ``]``."""
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[str] = []
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            i += 1
            break
        lo, i = _class_char(pattern, i)
        hi = lo
        if pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        # Go accepts a reversed range (it matches nothing); a regex would not compile it
        ranges.append(re.escape(lo) + ("-" + re.escape(hi) if hi != lo else "") if lo <= hi else "")
    body = "".join(ranges)
    if not body:
        return ("[\\s\\S]" if negated else "(?!)"), i
    return "[" + ("^" if negated else "") + body + "]", i


def _translate(pattern: str) -> str:
    """A Docker path pattern as an anchored regex; :class:`BadPattern` where Go's ``filepath.Match`` fails."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                    out.append("(?:.*/)?")  # **/ : zero or more directories
                elif i >= n:
                    out.append(".*")  # trailing ** : everything below
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            cls, i = _class(pattern, i + 1)
            out.append(cls)
            continue
        elif ch == "\\":
            i += 1
            if i >= n:
                raise BadPattern(pattern)
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "^" + "".join(out) + "$"


def _invalid(where: str, message: str) -> Exception:
    from ctk_shared.errors import InvalidArgument

    err = InvalidArgument(f".dockerignore{where}: {message}")
    err.hint = "fix or remove the line (a literal [ or \\ is written \\[ or \\\\)"
    return err


class IgnoreMatcher:
    def __init__(self, patterns: Iterable[str], lines: Iterable[int] | None = None) -> None:
        self.patterns: list[_Pattern] = []
        numbers = list(lines) if lines is not None else []
        for i, p in enumerate(patterns):
            where = f":{numbers[i]}" if i < len(numbers) else ""
            exclusion = p.startswith("!")
            body = p[1:] if exclusion else p
            if not body:
                if exclusion:
                    raise _invalid(where, 'illegal exclusion pattern: "!"')
                continue
            try:
                rx = re.compile(_translate(body), re.S)
            except (BadPattern, re.error):
                raise _invalid(where, f"syntax error in pattern {p!r}") from None
            self.patterns.append(_Pattern(body, exclusion, rx))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_text(cls, text: str) -> IgnoreMatcher:
        read = _read_lines(text)
        return cls([p for p, _ in read], [n for _, n in read])

    def excluded(self, rel: str) -> bool:
        """Is the context path ``rel`` (slash-separated, relative) left out?"""
        rel = rel.strip("/")
        if not rel or rel == ".":
            return False
        parents = []
        parts = rel.split("/")
        for k in range(1, len(parts) + 1):
            parents.append("/".join(parts[:k]))
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue  # cannot change the outcome
            if any(p.regex.match(candidate) for candidate in parents):
                matched = not p.exclusion
        return matched

    def may_include_below(self, rel_dir: str) -> bool:
        """Could anything under an excluded directory be re-included (so the walk must enter it)?"""
        if not self.has_exclusions:
            return False
        prefix = rel_dir.strip("/") + "/"
        for p in self.patterns:
            if p.exclusion and (p.text.startswith(prefix) or "*" in p.text or "?" in p.text or "[" in p.text):
                return True
        return False
