"""``.dockerignore``: which context files COPY and ADD may see, with Docker's matching rules.

* One pattern per line; ``#`` lines are comments; blank lines are skipped; surrounding spaces are trimmed.
* Patterns are cleaned (``./a//b/`` → ``a/b``) and relative to the context root (a leading ``/`` is dropped).
* ``*`` and ``?`` never match ``/``; ``[...]`` is a character class; ``\\`` escapes; ``**`` matches any number of
  directories (``**/x``, ``a/**``, ``a/**/b``).
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
    text: str
    exclusion: bool  # a "!" line: re-include what matches
    regex: re.Pattern[str]


def read_patterns(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
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
        out.append(("!" if invert else "") + line)
    return out


def _translate(pattern: str) -> str:
    """A Docker path pattern as an anchored regex."""
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
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:j]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "^" + "".join(out) + "$"


class IgnoreMatcher:
    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[_Pattern] = []
        for p in patterns:
            exclusion = p.startswith("!")
            body = p[1:] if exclusion else p
            if not body:
                continue
            try:
                rx = re.compile(_translate(body), re.S)
            except re.error:
                from ctk_shared.errors import InvalidArgument

                raise InvalidArgument(f".dockerignore: invalid pattern {p!r}") from None
            self.patterns.append(_Pattern(body, exclusion, rx))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_text(cls, text: str) -> IgnoreMatcher:
        return cls(read_patterns(text))

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
