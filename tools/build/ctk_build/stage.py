"""One stage while it runs: its image state, ARGs, shell and cache key, and the metadata instructions.

Variables are substituted when an instruction runs, with Docker's scoping: a stage sees its own ``ARG``s and
``ENV``s, and ``ENV`` wins over ``ARG``. Metadata instructions only change the :class:`ImageState` and add an
``empty_layer`` history entry; RUN (:mod:`runsteps`) and COPY/ADD (:mod:`copysteps`) make layers through
:meth:`StageContext.layer_step`, unless the cache has the step.
"""
from __future__ import annotations

import posixpath
import re
import signal as signals
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ctk_shared import oci
from ctk_shared.errors import CtkError, InvalidArgument
from ctk_shared.ocispec import DEFAULT_PATH
from ctk_shared.output import human_size

from .cache import chain_key
from .dockerfile.instructions import (
    Command,
    Copy,
    Healthcheck,
    Instruction,
    KeyValues,
    Onbuild,
    Stage,
    Words,
    instruction,
)
from .dockerfile.parser import DockerfileError, Node, as_written
from .dockerfile.parser import parse as parse_dockerfile
from .dockerfile.shell import ShellError
from .imagestate import ImageState, rfc3339
from .layers import compression_of, convert_layer, make_layer
from .runner import StepFailed

if TYPE_CHECKING:
    from ctk_shared.containerd import Mount

    from .builder import Builder
    from .dockerfile.instructions import From
    from .progress import Vertex

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH_ENV = f"PATH={DEFAULT_PATH}"  # a FROM scratch stage starts with the runtime's default PATH


class StageContext:
    """The state of one stage while its instructions run."""

    def __init__(self, b: Builder, stage: Stage) -> None:
        self.b = b
        self.stage = stage
        self.state = ImageState()
        self.key = ""
        self.args: dict[str, str] = {}  # ARGs declared in this stage, with values
        self.arg_names: list[str] = []
        self.shell: tuple[str, ...] = DEFAULT_SHELL
        self.cmd_set = False
        self.vertex: Vertex | None = None  # the step being shown (RUN output goes under it)

    # -- environment ----------------------------------------------------------------------------
    def word_env(self) -> dict[str, str]:
        env = dict(self.args)
        env.update(self.state.env())
        return env

    def expand(self, node: Node, text: str) -> str:
        return self.b._expand(node, text, self.word_env())

    def expand_words(self, node: Node, text: str) -> list[str]:
        try:
            return self.b.lexer.process_words(text, self.word_env())
        except ShellError as e:
            raise self.b.df.error(node, str(e)) from None

    def created(self) -> str:
        if self.b.opts.source_date_epoch is not None:
            return rfc3339(self.b.opts.source_date_epoch)
        return self.state.last_created or rfc3339(time.time())

    def nop(self, node: Node, text: str | None = None) -> None:
        """A metadata-only step: history entry, cache chain."""
        shown = text if text is not None else as_written(node)
        self.state.add_history(f"/bin/sh -c #(nop) {shown}", empty=True, created=self.created())
        self.key = chain_key(self.key, "nop", shown)

    # -- FROM -----------------------------------------------------------------------------------
    def do_from(self) -> None:
        f = self.stage.from_
        self.vertex = self.b.begin(self.stage, f.node) if self.b.from_image(self.stage) else None
        self._do_from(f)
        if self.vertex is not None:
            self.b.progress.done(self.vertex)

    def _do_from(self, f: From) -> None:
        image = self.b._from_image(f)
        if not image:
            raise self.b.df.error(f.node, "FROM: the base image name is empty after substitution")
        platform = self.b.opts.platform
        if isinstance(f.flags.get("platform"), str):
            text = self.b._expand(f.node, str(f.flags["platform"]), self.b.meta)
            platform = oci.Platform.parse(text) if text else platform
        dep = self.b._stage_ref(image, self.stage.index)
        if dep is not None:
            prev = self.b.results[dep.index]
            self.state = prev.state.fork()
            self.key = chain_key(prev.key, "from-stage")
        elif image.lower() == "scratch":
            self.state = ImageState(config={"Env": [DEFAULT_PATH_ENV]}, platform=platform or oci.host_platform())
            self.key = chain_key("", "scratch", str(self.state.platform))
        else:
            self.state, digest = self.b.base_image(image, platform, f.node, self.vertex)
            self.key = chain_key("", "image", digest)
        triggers = list(self.state.config.get("OnBuild") or [])
        if triggers:
            self.state.config["OnBuild"] = None
            for text in triggers:
                node = parse_dockerfile(text, f"{self.b.df.filename} (ONBUILD of {image})").nodes[0]
                node = Node(node.keyword, node.flags, node.rest, node.original, f.node.line, f.node.line)
                self.dispatch(instruction(self.b.df, node), announce=False)

    # -- dispatch -------------------------------------------------------------------------------
    def dispatch(self, ins: Instruction, announce: bool = True) -> None:
        kw = ins.keyword
        handler = getattr(self, f"do_{kw}", None)
        if handler is None:
            raise self.b.df.error(ins.node, f"{kw.upper()} is not supported by ctk-build")
        own = announce and kw == "workdir"  # layer steps show themselves; metadata ones are no steps
        if own:
            self.vertex = self.b.begin(self.stage, ins.node)
        try:
            handler(ins)
        except (DockerfileError, StepFailed, KeyboardInterrupt):
            raise
        except CtkError as e:
            raise type(e)(f"{self.b.df.filename}:{ins.line}: {kw.upper()}: {e.message}", hint=e.hint) from e
        if own and self.vertex is not None:
            self.b.progress.done(self.vertex)

    def do_arg(self, ins: KeyValues) -> None:
        names = []
        for name, default in ins.pairs:
            names.append(name)
            if name in self.b.opts.build_args:
                self.args[name] = self.b.opts.build_args[name]
                self.b.used_args.add(name)
            elif default is not None:
                self.args[name] = self.expand(ins.node, default)
            elif name in self.b.meta:
                self.args[name] = self.b.meta[name]
            if name not in self.arg_names:
                self.arg_names.append(name)
        self.state.add_history(f"/bin/sh -c #(nop) ARG {' '.join(names)}", empty=True, created=self.created())
        self.key = chain_key(self.key, "arg", [(n, self.args.get(n)) for n in names])

    def do_env(self, ins: KeyValues) -> None:
        env = self.word_env()
        pairs = []
        for k, v in ins.pairs:
            key = self.b._expand(ins.node, k, env)
            if not key:
                raise self.b.df.error(ins.node, "ENV names can not be blank")
            pairs.append((key, self.b._expand(ins.node, v or "", env)))
        for k, v in pairs:
            self.state.set_env(k, v)
        self.nop(ins.node)

    def do_label(self, ins: KeyValues) -> None:
        env = self.word_env()
        labels = dict(self.state.config.get("Labels") or {})
        for k, v in ins.pairs:
            key = self.b._expand(ins.node, k, env)
            if not key:
                raise self.b.df.error(ins.node, "LABEL names can not be blank")
            labels[key] = self.b._expand(ins.node, v or "", env)
        self.state.config["Labels"] = labels
        self.nop(ins.node)

    def do_maintainer(self, ins: Words) -> None:
        self.state.extra["author"] = self.expand(ins.node, ins.words[0])
        self.nop(ins.node)

    def do_workdir(self, ins: Words) -> None:
        path = self.expand(ins.node, ins.words[0])
        cur = self.state.config.get("WorkingDir") or "/"
        self.state.config["WorkingDir"] = posixpath.normpath(posixpath.join(cur, path))
        self.nop(ins.node)

    def do_user(self, ins: Words) -> None:
        self.state.config["User"] = self.expand(ins.node, ins.words[0])
        self.nop(ins.node)

    def do_expose(self, ins: Words) -> None:
        ports = dict(self.state.config.get("ExposedPorts") or {})
        for raw in ins.words:
            for word in self.expand_words(ins.node, raw):
                for p in _port_specs(word):
                    ports[p] = {}
        self.state.config["ExposedPorts"] = ports
        self.nop(ins.node)

    def do_volume(self, ins: Words) -> None:
        vols = dict(self.state.config.get("Volumes") or {})
        for raw in ins.words:
            values = [raw] if ins.exec_form else self.expand_words(ins.node, raw)
            for v in values:
                v = self.expand(ins.node, v) if ins.exec_form else v
                if not v.strip():
                    raise self.b.df.error(ins.node, "VOLUME specified can not be an empty string")
                vols[v] = {}
        self.state.config["Volumes"] = vols
        self.nop(ins.node)

    def do_stopsignal(self, ins: Words) -> None:
        sig = self.expand(ins.node, ins.words[0])
        name = sig.upper()
        if not (sig.isdigit() or name in signals.Signals.__members__ or "SIG" + name in signals.Signals.__members__
                or re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name)):
            raise self.b.df.error(ins.node, f"invalid signal: {sig}")
        self.state.config["StopSignal"] = sig
        self.nop(ins.node)

    def do_shell(self, ins: Words) -> None:
        self.shell = tuple(ins.words)
        self.state.config["Shell"] = list(ins.words)
        self.nop(ins.node)

    def _command(self, ins: Command) -> list[str]:
        if ins.exec_form is not None:
            return list(ins.exec_form)
        return [*self.shell, ins.shell_form]

    def do_cmd(self, ins: Command) -> None:
        self.state.config["Cmd"] = self._command(ins)
        self.cmd_set = True
        self.nop(ins.node)

    def do_entrypoint(self, ins: Command) -> None:
        self.state.config["Entrypoint"] = self._command(ins)
        if not self.cmd_set:
            self.state.config["Cmd"] = None
        self.nop(ins.node)

    def do_healthcheck(self, ins: Healthcheck) -> None:
        hc: dict[str, Any] = {"Test": list(ins.test)}
        for flag, field_name in (("interval", "Interval"), ("timeout", "Timeout"),
                                 ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
            if isinstance(ins.flags.get(flag), str):
                hc[field_name] = _duration_ns(self.b.df, ins.node, flag, str(ins.flags[flag]))
        if isinstance(ins.flags.get("retries"), str):
            try:
                hc["Retries"] = int(str(ins.flags["retries"]))
            except ValueError:
                raise self.b.df.error(ins.node, f"invalid --retries value {ins.flags['retries']!r}") from None
        self.state.config["Healthcheck"] = hc
        self.nop(ins.node)

    def do_onbuild(self, ins: Onbuild) -> None:
        self.state.config["OnBuild"] = [*(self.state.config.get("OnBuild") or []), ins.trigger]
        self.nop(ins.node)

    # -- layer steps ----------------------------------------------------------------------------
    def do_run(self, ins: Command) -> None:
        from . import runsteps

        runsteps.run(self, ins)

    def do_copy(self, ins: Copy) -> None:
        from . import copysteps

        copysteps.copy(self, ins)

    do_add = do_copy

    # -- layers ---------------------------------------------------------------------------------
    def layer_step(self, ins: Instruction, key: str, created_by: str,
                   change: Callable[[list[Mount], str], None]) -> None:
        """Reuse the cached layer for ``key``, or make it with ``change`` and remember it."""
        epoch = self.b.opts.source_date_epoch
        if epoch is not None:
            key = chain_key(key, "source-date-epoch", epoch)  # its layers are rewritten: another result
        want = oci.OCI_LAYER_GZIP if self.b.opts.compression == "gzip" else oci.OCI_LAYER
        parent = self.state.chain_id  # the step's layer applies on it (--cache-from matches on it too)
        self.vertex = self.b.begin(self.stage, ins.node)  # first: a --cache-from fetch runs under the step's line
        hit = self.b.cache.lookup(key, want, parent)
        if hit is not None and hit.layer is not None:
            self.b.progress.cached(self.vertex)
            self.b.cached_steps += 1
            layer = hit.layer
            if compression_of(layer) != self.b.opts.compression:
                layer = convert_layer(self.b.client, layer, hit.diff_id, self.b.opts.compression)
                self.b.cache.store(key, hit.created, layer, hit.diff_id, hit.chain_id, parent)
            self.state.add_layer(layer, hit.diff_id)
            self.state.add_history(created_by, empty=False, created=rfc3339(epoch) if epoch is not None
                                   else hit.created)
            self.key = key
            return
        made = make_layer(self.b.client, self.b.sn_name, self.state.chain_id, change, source_date_epoch=epoch,
                          compression=self.b.opts.compression)
        self.b.progress.done(self.vertex, f"layer {made.desc.digest[7:19]} ({human_size(made.desc.size)})")
        created = rfc3339(epoch) if epoch is not None else rfc3339(time.time())
        self.state.add_layer(made.desc, made.diff_id)
        self.state.add_history(created_by, empty=False, created=created)
        self.key = key
        self.b.cache.store(key, created, made.desc, made.diff_id, made.chain_id, parent)


def _port_specs(word: str) -> list[str]:
    port, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    if ":" in port:
        port = port.rsplit(":", 1)[1]  # ip:hostPort:containerPort forms keep the container port
    lo, dash, hi = port.partition("-")
    if not lo.isdigit() or (dash and not hi.isdigit()):
        raise InvalidArgument(f"invalid containerPort: {port}")
    start, end = int(lo), int(hi) if dash else int(lo)
    if end < start or end > 65535:
        raise InvalidArgument(f"invalid range specified for container port: {port}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}


def _duration_ns(df: Any, node: Node, flag: str, text: str) -> int:
    """A Go duration ("30s", "1m30s") in nanoseconds."""
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise df.error(node, f"invalid --{flag}={text}: expected a duration such as 30s or 1m30s")
    return int(total)
