"""Docker's word processing for Dockerfile arguments: quote removal, escapes and ``$VAR`` substitution.

This is the small shell-like language the Dockerfile reference calls "environment replacement": not a shell
(no globbing, no command substitution), but quotes, the escape token (``\\`` or a backtick set by the
``escape`` directive) and these expansions::

    $VAR ${VAR}                         value, "" when unset
    ${VAR:-word} ${VAR-word}            word when VAR is empty/unset (":") or unset only
    ${VAR:+word} ${VAR+word}            word when VAR is non-empty/set, else ""
    ${VAR:?msg} ${VAR?msg}              error when VAR is empty/unset or unset only
    ${VAR#pat} ${VAR##pat} ${VAR%pat} ${VAR%%pat}    strip shortest/longest prefix/suffix matching pat
    ${VAR/pat/repl} ${VAR//pat/repl}    replace the first/every match of pat

Unquoted expansions split into several words in :meth:`Lexer.process_words` (as Docker does for ``COPY``,
``EXPOSE`` and the like); quoted ones never do.

Two bounds that Docker's lexer does not have, so a hostile Dockerfile (or build argument) cannot exhaust the
machine: a word may not grow past :data:`MAX_WORD` characters (``ARG A1=${A0}${A0}`` doubled 30 times would
be 2**30 characters), and ``${...}`` may nest :data:`MAX_DEPTH` levels (deeper nesting would end in a
RecursionError). Both are far beyond any real Dockerfile; either raises a :class:`ShellError` naming the bound.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Env = Mapping[str, str]

_SPECIAL_PARAMS = "@*#?-$!0"

# 1 MiB: eight times what Linux lets one argument or environment string be at exec (MAX_ARG_STRLEN, 128 KiB),
# so no word that a RUN step, ENV or ARG could actually use is refused, while memory stays bounded in MiBs.
MAX_WORD = 1 << 20
# ${...} inside ${...}: real Dockerfiles nest two or three levels; 64 keeps far below Python's recursion limit
# (each level takes three or four frames of this recursive-descent lexer).
MAX_DEPTH = 64
# characters examined while matching a pattern in ${V#pattern} or ${V/pattern/...} (a quarter of a second
# here): the quadratic search stays complete for values up to ~16,000 characters, far more than a path or
# version string
MAX_PATTERN_WORK = 1 << 28
_SPACE_RUNS = re.compile(r"(\s+)")


class ShellError(ValueError):
    """A word that cannot be processed (unbalanced quote, bad substitution, a bound exceeded); the parser adds
    file:line."""


def _too_long() -> ShellError:
    return ShellError(f"variable substitution makes a word longer than {MAX_WORD} characters (1 MiB), "
                      "ctk-build's limit")


def _check_size(size: int) -> None:
    if size > MAX_WORD:
        raise _too_long()


@dataclass
class _Words:
    """Collects words while scanning: unquoted whitespace ends a word; quoted text never does."""

    words: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)
    in_word: bool = False  # a quoted "" makes an (empty) word exist

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            self.end()
        else:
            self.current.append(ch)
            self.in_word = True

    def add_raw(self, text: str) -> None:
        self.current.append(text)
        self.in_word = True

    def add_expanded(self, text: str) -> None:
        """As :meth:`add_char` for each character, a run at a time (expansions can be long)."""
        for part in _SPACE_RUNS.split(text):
            if not part:
                continue
            if part.isspace():
                self.end()
            else:
                self.current.append(part)
                self.in_word = True

    def end(self) -> None:
        if self.in_word:
            self.words.append("".join(self.current))
        self.current, self.in_word = [], False

    def result(self) -> list[str]:
        self.end()
        return self.words


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch


class Lexer:
    """Processes words with one escape token; ``raw_quotes``/``raw_escapes`` keep quotes/escapes in the output
    (used to find heredoc markers without changing the text)."""

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False,
                 skip_unset: bool = False) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset  # leave $UNSET as written (heredoc marker detection)

    def process_word(self, text: str, env: Env) -> str:
        """One word: quotes removed, escapes applied, variables substituted; whitespace kept as is."""
        return _Run(self, text, env).process()[0]

    def process_words(self, text: str, env: Env) -> list[str]:
        """Words split on unquoted whitespace (including whitespace produced by unquoted expansions)."""
        return _Run(self, text, env).process()[1]


class _Run:
    """One pass of the lexer over one text (keeps the scanner state out of the reusable :class:`Lexer`)."""

    def __init__(self, lexer: Lexer, text: str, env: Env) -> None:
        self.lx = lexer
        self.sc = _Scanner(text)
        self.env = env
        self.depth = 0  # of ${...} being expanded

    def process(self) -> tuple[str, list[str]]:
        return self.stop_on("")

    def stop_on(self, stop: str, raw_escapes: bool | None = None) -> tuple[str, list[str]]:
        """Text up to ``stop`` (or the end); ``raw_escapes`` overrides the lexer's setting for this stretch
        (BuildKit reads the patterns of ``#``, ``%`` and ``/`` with their escapes kept, for the matcher)."""
        raw = self.lx.raw_escapes if raw_escapes is None else raw_escapes
        out: list[str] = []
        size = 0
        words = _Words()
        while self.sc.peek():
            ch = self.sc.peek()
            if stop and ch == stop:
                self.sc.next()
                return "".join(out), words.result()
            if ch == "<" and self.sc.text.startswith("<<", self.sc.pos):
                # a heredoc marker may have blanks between << and its word (``<< EOF``): one word, as BuildKit
                tmp = self.heredoc_op()
                out.append(tmp)
                words.add_raw(tmp)
            elif ch == "'":
                tmp = self.single_quote()
                out.append(tmp)
                words.add_raw(tmp)
            elif ch == '"':
                tmp = self.double_quote()
                size += len(tmp)
                _check_size(size)
                out.append(tmp)
                words.add_raw(tmp)
            elif ch == "$":
                tmp = self.dollar()
                size += len(tmp)
                _check_size(size)
                out.append(tmp)
                words.add_expanded(tmp)
            else:
                ch = self.sc.next()
                if ch == self.lx.escape:
                    if raw:
                        words.add_raw(ch)
                        out.append(ch)
                    ch = self.sc.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise ShellError(f"syntax error: missing '{stop}'" if stop == "}" else f"missing {stop!r}")
        return "".join(out), words.result()

    def heredoc_op(self) -> str:
        """``<<`` (or ``<<-``) and the blanks after it. BuildKit's lexer keeps only ``<< `` together, yet its
        heredoc tests also accept ``<<- EOF``; both are one word here."""
        start = self.sc.pos
        self.sc.pos += 2
        if self.sc.peek() == "-":
            self.sc.next()
        while self.sc.peek() and self.sc.peek() in " \t\r":
            self.sc.next()
        return self.sc.text[start:self.sc.pos]

    def single_quote(self) -> str:
        # everything up to the next ' is literal, the escape token included
        self.sc.next()
        out = ["'"] if self.lx.raw_quotes else []
        while True:
            ch = self.sc.next()
            if not ch:
                raise ShellError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                break
            out.append(ch)
        if self.lx.raw_quotes:
            out.append("'")
        return "".join(out)

    def double_quote(self) -> str:
        # $ expands; the escape token escapes only ", $ and itself (other escapes stay as written)
        self.sc.next()
        out = ['"'] if self.lx.raw_quotes else []
        size = 0
        while True:
            if not self.sc.peek():
                raise ShellError("unexpected end of statement while looking for matching double-quote")
            if self.sc.peek() == '"':
                self.sc.next()
                break
            if self.sc.peek() == "$":
                tmp = self.dollar()
                size += len(tmp)
                _check_size(size)
                out.append(tmp)
                continue
            ch = self.sc.next()
            if ch == self.lx.escape:
                nxt = self.sc.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.lx.escape):
                    if self.lx.raw_escapes:
                        out.append(ch)
                    ch = self.sc.next()
            out.append(ch)
        if self.lx.raw_quotes:
            out.append('"')
        return "".join(out)

    def name(self) -> str:
        """A variable name: letters, digits and _, or a run of digits, or one special parameter."""
        sc = self.sc
        if sc.peek().isdigit():
            digits = []
            while sc.peek().isdigit():
                digits.append(sc.next())
            return "".join(digits)
        if sc.peek() and sc.peek() in _SPECIAL_PARAMS:
            return sc.next()
        chars = []
        while sc.peek() and (sc.peek().isalnum() or sc.peek() == "_"):
            chars.append(sc.next())
        return "".join(chars)

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        sc = self.sc
        sc.next()  # $
        if sc.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        sc.next()  # {
        if self.depth >= MAX_DEPTH:
            raise ShellError(f"variable substitution nested deeper than {MAX_DEPTH} levels of ${{...}}, "
                             "ctk-build's limit")
        self.depth += 1
        try:
            return self.braced()
        finally:
            self.depth -= 1

    def braced(self) -> str:
        """``${...}`` after the brace: the name, the operator and its word."""
        sc = self.sc
        if not sc.peek():
            raise ShellError("syntax error: missing '}'")
        if sc.peek() in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        if not name:
            raise ShellError("syntax error: bad substitution")
        op = sc.next()
        value, found = self.lookup(name)
        if op == "}":
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if op in (":", "-", "+", "?"):
            # ${NAME:-w} tests "set and not empty", ${NAME-w} only "set"; likewise for + and ?
            colon = op == ":"
            modifier = sc.next() if colon else op
            if modifier not in ("-", "+", "?"):
                raise ShellError(f"unsupported modifier ({modifier}) in substitution" if modifier
                                 else "syntax error: missing '}'")
            word = self.word_until_brace()
            if self.lx.skip_unset and not found:
                return "${" + name + (":" if colon else "") + modifier + word + "}"
            present = bool(value) if colon else found
            if modifier == "-":
                return value if present else word
            if modifier == "+":
                return word if present else ""
            if not found:
                raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
            if colon and not value:
                raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if op in ("#", "%"):
            pattern = self.word_until_brace(raw_escapes=True)
            if self.lx.skip_unset and not found:
                return "${" + name + op + pattern + "}"
            longest = pattern.startswith(op)
            if longest:
                pattern = pattern[1:]
            return _trim(value, _Pattern.parse(pattern), prefix=op == "#", longest=longest)
        if op == "/":
            # ${V/pattern/replacement}: both parts have variables expanded and escapes kept (the pattern's
            # ``\*`` is a literal star; BuildKit keeps the replacement's escapes as written too)
            every = sc.peek() == "/"
            if every:
                sc.next()
            try:
                pattern, _ = self.stop_on("/", raw_escapes=True)
            except ShellError as e:
                if not self.sc.peek():
                    raise ShellError("syntax error: missing '/' in ${}") from e
                raise
            repl = self.word_until_brace(raw_escapes=True)
            if self.lx.skip_unset and not found:
                return "${" + name + "/" + ("/" if every else "") + pattern + "/" + repl + "}"
            return _replace(value, _Pattern.parse(pattern), repl, every)
        if not op:
            raise ShellError("syntax error: missing '}'")
        raise ShellError(f"unsupported modifier ({op}) in substitution")

    def word_until_brace(self, raw_escapes: bool | None = None) -> str:
        try:
            word, _ = self.stop_on("}", raw_escapes)
        except ShellError as e:
            if not self.sc.peek():
                raise ShellError("syntax error: missing '}'") from e
            raise
        return word


@dataclass(frozen=True)
class _Pattern:
    """A ``${V#pattern}`` / ``${V/pattern/…}`` pattern as BuildKit reads it: ``*`` and ``?`` are wildcards,
    ``\\*``, ``\\?`` and ``\\\\`` are those characters, ``\\}`` and ``\\/`` are ``}`` and ``/``; every other
    character is itself (no ``[...]`` classes); any other escape is an error."""

    tokens: tuple[str, ...]  # "*" / "?" for wildcards, "=c" for the literal character c

    @classmethod
    def parse(cls, text: str) -> _Pattern:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            i += 1
            if ch in "*?":
                out.append(ch)
                continue
            if ch == "\\":
                nxt = text[i] if i < n else ""
                if nxt in ("}", "/"):
                    continue  # the escape only kept ${...} from ending there; the character follows
                if not nxt or nxt not in "*?\\":
                    raise ShellError(f"invalid pattern ({text}) in substitution: invalid escape '\\{nxt}'")
                i += 1
                ch = nxt
            out.append("=" + ch)
        return cls(tuple(out))

    @property
    def regex(self) -> str:
        return "".join(".*" if t == "*" else "." if t == "?" else re.escape(t[1]) for t in self.tokens)

    @property
    def has_star(self) -> bool:
        return "*" in self.tokens

    @property
    def literals(self) -> set[str]:
        return {t[1] for t in self.tokens if t.startswith("=")}


def _trim(value: str, pattern: _Pattern, *, prefix: bool, longest: bool) -> str:
    """``${V#p}`` and friends: try every cut, as the shell does (and BuildKit's lexer); a pattern without ``*``
    matches one length only. The work is bounded (:data:`MAX_PATTERN_WORK`): each try costs up to its length,
    so a ``*`` pattern on a 1 MiB value could otherwise take minutes."""
    rx = re.compile(pattern.regex, re.S)
    lengths = _cuts(value, pattern, prefix=prefix, longest=longest)
    work = 0
    for n in lengths:
        work += n + 1
        if work > MAX_PATTERN_WORK:
            raise ShellError(f"removing a pattern from a value of {len(value)} characters takes too much work "
                             "(ctk-build's limit)")
        if rx.fullmatch(value, 0, n) if prefix else rx.fullmatch(value, len(value) - n):
            return value[n:] if prefix else value[:len(value) - n]
    return value


def _cuts(value: str, pattern: _Pattern, *, prefix: bool, longest: bool) -> Iterable[int]:
    """The lengths worth trying, in the order the shell wants them: one for a pattern of ``?`` and literal
    characters; none when the pattern's literal first (prefix) or last (suffix) character is not where it
    must be; else only cuts where the pattern's literal end character (a prefix, as in ``*/``) or start
    character (a suffix, as in ``.*``) sits, when it has one; else every length."""
    tokens = pattern.tokens
    if not pattern.has_star:  # ? and literal characters: one character each
        return (len(tokens),) if len(tokens) <= len(value) else ()
    anchor = tokens[0] if prefix else tokens[-1]  # the end that sits at the value's own start or end
    if anchor.startswith("=") and not (value.startswith(anchor[1]) if prefix else value.endswith(anchor[1])):
        return ()
    edge = tokens[-1] if prefix else tokens[0]
    if not edge.startswith("="):
        return range(len(value), -1, -1) if longest else range(len(value) + 1)
    at = [m.start() for m in re.finditer(re.escape(edge[1]), value)]
    ns = [i + 1 for i in at] if prefix else [len(value) - i for i in at]  # ascending / descending
    if prefix == longest:
        ns.reverse()
    return ns


def _replace(value: str, pattern: _Pattern, repl: str, every: bool) -> str:
    """``${V/p/r}``: the first (or every) leftmost-longest match of ``p`` becomes ``r``; an empty pattern
    matches the empty string (BuildKit: ``${V/$EMPTY/x}`` puts x in front)."""
    rx = re.compile(pattern.regex, re.S)
    if pattern.has_star and len(value) ** 2 > MAX_PATTERN_WORK:
        # a * tried from every position costs up to len(value) each; unless a character the pattern must
        # contain is missing (then nothing matches), that is too much work
        needed = pattern.literals
        if needed and not needed <= set(value):
            return value
        raise ShellError(f"replacing a * pattern in a value of {len(value)} characters takes too much work "
                         "(ctk-build's limit)")
    size = len(value)

    def sub(m: re.Match[str]) -> str:
        # counted before the result exists: ${V//?/$V} on a long V would be len(V)**2 characters
        nonlocal size
        size += len(repl) - len(m.group(0))
        _check_size(size)
        return repl

    # shell replacement takes the longest match at the leftmost position; regex * is greedy already
    return rx.sub(sub, value, count=0 if every else 1)
