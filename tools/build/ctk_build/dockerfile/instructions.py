"""Nodes to typed instructions grouped into build stages, with the checks Docker makes before building.

Arguments stay as written (raw words): variables are substituted when the instruction runs, because the
environment changes along the stage (``ENV``, ``ARG``). What is checked here is the shape: known keyword,
known flags, argument counts, ``KEY=VALUE`` syntax, stage names, ``ARG`` as the only instruction before
the first ``FROM``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .parser import Dockerfile, DockerfileError, Heredoc, Node, split_raw_words

_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9\-_.]*$")

# flags each instruction accepts; True = takes a value (``--x=v``), False = boolean
_FLAGS: dict[str, dict[str, bool]] = {
    "from": {"platform": True},
    "run": {"network": True, "mount": True, "security": True},
    "copy": {"from": True, "chown": True, "chmod": True, "link": False, "parents": False, "exclude": True},
    "add": {"chown": True, "chmod": True, "link": False, "checksum": True, "keep-git-dir": False,
            "exclude": True},
    "healthcheck": {"interval": True, "timeout": True, "start-period": True, "start-interval": True,
                    "retries": True},
}
KEYWORDS = frozenset({"from", "run", "copy", "add", "env", "arg", "workdir", "user", "expose", "label", "cmd",
                      "entrypoint", "volume", "stopsignal", "shell", "healthcheck", "onbuild", "maintainer"})


@dataclass(frozen=True)
class Instruction:
    """One instruction of a stage; ``node`` keeps the text and the line for messages and history."""

    node: Node
    flags: dict[str, str | bool] = field(default_factory=dict)

    @property
    def keyword(self) -> str:
        return self.node.keyword

    @property
    def line(self) -> int:
        return self.node.line


@dataclass(frozen=True)
class From(Instruction):
    """FROM: the base image or stage as written, and the ``AS`` name (``--platform`` is among the flags)."""

    image: str = ""  # raw: may hold $VARs from ARGs before FROM
    name: str = ""  # the stage name after AS ("" when none)


@dataclass(frozen=True)
class Command(Instruction):
    """RUN, CMD, ENTRYPOINT: exec form (a list) or shell form (a string)."""

    exec_form: tuple[str, ...] | None = None
    shell_form: str = ""
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True)
class Copy(Instruction):
    """COPY and ADD: sources and destination, raw (JSON form allows spaces in names)."""

    sources: tuple[str, ...] = ()
    dest: str = ""
    heredocs: tuple[Heredoc, ...] = ()
    add: bool = False


@dataclass(frozen=True)
class KeyValues(Instruction):
    """ENV and LABEL: ``(key, raw value)`` pairs; ARG: ``(name, raw default or None)``."""

    pairs: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Words(Instruction):
    """EXPOSE, VOLUME, SHELL, WORKDIR, USER, STOPSIGNAL, MAINTAINER: raw words (one for the single-valued)."""

    words: tuple[str, ...] = ()
    exec_form: bool = False  # VOLUME/SHELL given as JSON: words are final, no substitution of quotes


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """HEALTHCHECK: the test as the image config stores it; the timing flags stay raw."""

    test: tuple[str, ...] = ()  # ("NONE",) or ("CMD", ...) or ("CMD-SHELL", cmd)


@dataclass(frozen=True)
class Onbuild(Instruction):
    """ONBUILD: the trigger's text, kept in the image config for the builds that start FROM it."""

    trigger: str = ""  # the instruction text, run when the image is used as a base


@dataclass
class Stage:
    """One build stage: its FROM and the instructions up to the next FROM (``index`` counts from 0)."""

    index: int
    from_: From
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.from_.name

    def label(self) -> str:
        return self.name or f"stage-{self.index}"


@dataclass
class BuildPlan:
    """A parsed Dockerfile: the ``ARG``s before the first ``FROM`` and the stages."""

    meta_args: list[KeyValues]
    stages: list[Stage]
    dockerfile: Dockerfile

    def stage(self, name_or_index: str) -> Stage | None:
        key = name_or_index.lower()
        for s in self.stages:
            if s.name == key:
                return s
        if key.isdigit() and int(key) < len(self.stages):
            return self.stages[int(key)]
        return None


def plan(df: Dockerfile) -> BuildPlan:
    """Turn nodes into stages; raise :class:`DockerfileError` (file:line and text) for anything malformed."""
    meta: list[KeyValues] = []
    stages: list[Stage] = []
    if not df.nodes:
        raise DockerfileError(df.filename, 0, "the Dockerfile has no instructions")
    for node in df.nodes:
        ins = instruction(df, node)
        if isinstance(ins, From):
            if ins.name and any(s.name == ins.name for s in stages):
                raise df.error(node, f"duplicate stage name {ins.name!r}")
            stages.append(Stage(len(stages), ins))
        elif not stages:
            if ins.keyword != "arg":
                raise df.error(node, f"{node.keyword.upper()} before the first FROM (only ARG may come first)")
            assert isinstance(ins, KeyValues)
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    return BuildPlan(meta, stages, df)


def _join_heredoc_words(words: list[str]) -> list[str]:
    """``COPY << EOF /dst``: a marker written with blanks after ``<<`` (or ``<<-``) is one source word."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if re.fullmatch(r"\d*<<-?", w) and i + 1 < len(words):
            out.append(w + words[i + 1])
            i += 2
            continue
        out.append(w)
        i += 1
    return out


def _flags(df: Dockerfile, node: Node) -> dict[str, str | bool]:
    allowed = _FLAGS.get(node.keyword, {})
    out: dict[str, str | bool] = {}
    for raw in node.flags:
        name, eq, value = raw[2:].partition("=")
        if name not in allowed:
            raise df.error(node, f"unknown flag: --{name}")
        if allowed[name]:
            if not eq:
                raise df.error(node, f"missing a value on flag --{name} (write --{name}=VALUE)")
            if name in out and name not in ("mount", "exclude"):
                raise df.error(node, f"duplicate flag specified: --{name}")
            if name in ("mount", "exclude") and name in out:
                value = f"{out[name]}\n{value}"  # several --mount/--exclude: kept as lines
            out[name] = value
        else:
            if eq and value.lower() not in ("true", "false"):
                raise df.error(node, f"expecting boolean value for flag --{name}, not: {value}")
            out[name] = not eq or value.lower() == "true"
    return out


def instruction(df: Dockerfile, node: Node) -> Instruction:
    """One node as a typed instruction (also used for ONBUILD triggers)."""
    kw = node.keyword
    if kw not in KEYWORDS:
        raise df.error(node, f"unknown instruction: {kw.upper()}")
    flags = _flags(df, node)
    rest = node.rest.strip()
    if kw == "from":
        words = rest.split()
        if len(words) == 3 and words[1].lower() == "as":
            name = words[2].lower()
            if not _STAGE_NAME_RE.match(name):
                raise df.error(node, f"invalid name for build stage: {words[2]!r}, name can't start with a "
                               "number or contain symbols")
            return From(node, flags, words[0], name)
        if len(words) != 1:
            raise df.error(node, "FROM requires either one or three arguments")
        return From(node, flags, words[0], "")
    if kw in ("run", "cmd", "entrypoint"):
        exec_form = node.json_args()
        if exec_form is None and not rest:
            raise df.error(node, f"{kw.upper()} requires at least one argument")
        if kw == "run" and exec_form is not None and not exec_form:
            raise df.error(node, "RUN requires at least one argument")
        return Command(node, flags, tuple(exec_form) if exec_form is not None else None,
                       rest if exec_form is None else "", node.heredocs)
    if kw in ("copy", "add"):
        exec_form = node.json_args()
        words = exec_form if exec_form is not None else split_raw_words(rest, df.escape)
        if node.heredocs and exec_form is None:
            words = _join_heredoc_words(words)
        if len(words) < 2 and not (node.heredocs and len(words) >= 1):
            raise df.error(node, f"{kw.upper()} requires at least two arguments, but only {len(words)} provided"
                           if words else f"{kw.upper()} requires at least two arguments")
        if len(words) < 2:
            raise df.error(node, f"{kw.upper()} requires at least two arguments")
        return Copy(node, flags, tuple(words[:-1]), words[-1], node.heredocs, kw == "add")
    if kw in ("env", "label"):
        return KeyValues(node, flags, tuple(_name_values(df, node, rest)))
    if kw == "arg":
        words = split_raw_words(rest, df.escape)
        if not words:
            raise df.error(node, "ARG requires at least one argument")
        pairs: list[tuple[str, str | None]] = []
        for w in words:
            name, eq, value = w.partition("=")
            if not name:
                raise df.error(node, "ARG names can not be blank")
            pairs.append((name, value if eq else None))
        return KeyValues(node, flags, tuple(pairs))
    if kw in ("workdir", "user", "stopsignal", "maintainer"):
        if not rest:
            raise df.error(node, f"{kw.upper()} requires exactly one argument")
        if kw in ("user", "stopsignal") and len(split_raw_words(rest, df.escape)) != 1:
            raise df.error(node, f"{kw.upper()} requires exactly one argument")
        return Words(node, flags, (rest,))
    if kw in ("expose",):
        words = split_raw_words(rest, df.escape)
        if not words:
            raise df.error(node, "EXPOSE requires at least one argument")
        return Words(node, flags, tuple(words))
    if kw in ("volume", "shell"):
        exec_form = node.json_args()
        if kw == "shell":
            if exec_form is None or not exec_form:
                raise df.error(node, "SHELL requires the arguments to be in JSON form")
            return Words(node, flags, tuple(exec_form), True)
        words = exec_form if exec_form is not None else split_raw_words(rest, df.escape)
        if not words:
            raise df.error(node, "VOLUME requires at least one argument")
        return Words(node, flags, tuple(words), exec_form is not None)
    if kw == "healthcheck":
        return _healthcheck(df, node, flags, rest)
    if kw == "onbuild":
        sub = rest.split(None, 1)
        if not sub:
            raise df.error(node, "ONBUILD requires at least one argument")
        trigger = sub[0].lower()
        if trigger in ("onbuild", "from", "maintainer"):
            raise df.error(node, f"{sub[0].upper()} isn't allowed as an ONBUILD trigger")
        return Onbuild(node, flags, rest)
    raise df.error(node, f"unknown instruction: {kw.upper()}")  # pragma: no cover - KEYWORDS covers all


def _name_values(df: Dockerfile, node: Node, rest: str) -> list[tuple[str, str | None]]:
    """Docker's rule: ``KEY value…`` (old form, one pair, the rest of the line) when the first word has no
    ``=``; otherwise every word must be ``KEY=VALUE``."""
    kw = node.keyword.upper()
    words = split_raw_words(rest, df.escape)
    if not words:
        raise df.error(node, f"{kw} requires at least one argument")
    if "=" not in words[0]:
        parts = re.split(r"[ \t]+", rest, maxsplit=1)
        if len(parts) < 2 or not parts[1].strip():
            raise df.error(node, f"{kw} must have two arguments")
        return [(parts[0], parts[1])]
    pairs: list[tuple[str, str | None]] = []
    for w in words:
        if "=" not in w:
            raise df.error(node, f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        key, _, value = w.partition("=")
        if not key:
            raise df.error(node, f"{kw} names can not be blank")
        pairs.append((key, value))
    return pairs


def _healthcheck(df: Dockerfile, node: Node, flags: dict[str, str | bool], rest: str) -> Healthcheck:
    words = rest.split(None, 1)
    if not words:
        raise df.error(node, "HEALTHCHECK requires an argument")
    kind = words[0].upper()
    if kind == "NONE":
        if len(words) > 1 or flags:
            raise df.error(node, "HEALTHCHECK NONE takes no arguments")
        return Healthcheck(node, flags, ("NONE",))
    if kind != "CMD":
        raise df.error(node, f"unknown type {words[0]!r} in HEALTHCHECK (try CMD)")
    if len(words) < 2:
        raise df.error(node, "missing command after HEALTHCHECK CMD")
    sub = Node("cmd", (), words[1], node.original, node.line, node.end_line)
    exec_form = sub.json_args()
    test = ("CMD", *exec_form) if exec_form is not None else ("CMD-SHELL", words[1].strip())
    return Healthcheck(node, flags, test)
