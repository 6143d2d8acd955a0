"""Executing a parsed Dockerfile on containerd: which stages to build, in which order, with which arguments.

Only the stages the target needs are built (``FROM <stage>`` and ``COPY --from=<stage>`` are the edges).
Each stage runs in a :class:`~ctk_build.stage.StageContext`. ``ARG``s before the first ``FROM`` are seen by
``FROM`` lines only (and by a stage's bare ``ARG NAME``); BuildKit's platform ARGs are predefined there.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ctk_shared import images as store
from ctk_shared import oci
from ctk_shared import reference as refs
from ctk_shared.errors import CtkError, Interrupted, NotFound, UsageError

from .cache import Cache, CacheShare
from .dockerfile.instructions import BuildPlan, Command, Copy, From, Instruction, KeyValues, Stage
from .dockerfile.parser import DockerfileError, Node
from .dockerfile.shell import Lexer, ShellError
from .imagestate import ImageState
from .progress import BuildProgress, Vertex
from .runner import RunningTasks
from .runsteps import PROXY_ARGS, network_of
from .sources import SourceTree
from .stepnet import StepNetwork

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client



@dataclass(frozen=True)
class BuildOptions:
    """What a :class:`Builder` builds, and how: the Dockerfile's text, the context, one platform's settings."""

    dockerfile: str  # its text
    dockerfile_name: str = "Dockerfile"
    context: str | None = None  # None: no context (``ctk-build - < Dockerfile``)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    network: str = "bridge"  # RUN steps' default: "bridge" (own namespace, outbound NAT), "host" or "none"
    platform: oci.Platform | None = None
    source_date_epoch: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    progress: str = "plain"  # the display chosen (tty, plain, quiet, rawjson)
    compression: str = "uncompressed"  # of the layers: gzip, or uncompressed (faster builds, bigger pushes)
    pull: bool = False  # pull base images even when they are in the store
    allow: frozenset[str] = frozenset()  # entitlements granted (--allow network.host)
    secrets: dict[str, bytes] = field(default_factory=dict, repr=False)  # --secret id -> bytes (never logged)
    ssh: dict[str, str] = field(default_factory=dict)  # --ssh id -> agent socket
    show_platform: bool = False  # name steps "[linux/arm64 2/4] RUN …", as BuildKit does in multi-platform builds
    cache_share: CacheShare | None = None  # --cache-from caches and the steps used, for --cache-to


@dataclass
class StageResult:
    """A built stage: its image state, and its last step's cache key (``FROM <stage>``, ``COPY --from`` chain on it)."""

    state: ImageState
    key: str  # cache key of the stage's last step


def _expand_args(items: list[KeyValues], build_args: dict[str, str], env: dict[str, str],
                 lexer: Lexer, df_error: Callable[[Node, str], DockerfileError], used: set[str]) -> dict[str, str]:
    out = dict(env)
    for ins in items:
        for name, default in ins.pairs:
            if name in build_args:
                out[name] = build_args[name]
                used.add(name)
            elif default is not None:
                try:
                    out[name] = lexer.process_word(default, out)
                except ShellError as e:
                    raise df_error(ins.node, str(e)) from None
    return out


def platform_args(target: oci.Platform) -> dict[str, str]:
    """BuildKit's automatic platform ARGs: TARGET* is the platform being built, BUILD* this machine's (the
    one ``FROM --platform=$BUILDPLATFORM`` runs natively on). Like every global ARG, a stage sees them only
    after a bare ``ARG TARGETARCH``."""
    host = oci.host_platform()
    out = {}
    for prefix, p in (("TARGET", target), ("BUILD", host)):
        out[f"{prefix}PLATFORM"] = str(p)
        out[f"{prefix}OS"] = p.os
        out[f"{prefix}ARCH"] = p.architecture
        out[f"{prefix}VARIANT"] = p.variant
    return out


SHOWN_STEPS = frozenset({"run", "copy", "add", "workdir"})


class Builder:
    """One build: ``client`` must be bound to the build's lease (everything made joins it)."""

    def __init__(self, client: Client, gopts: GlobalOptions, opts: BuildOptions, plan: BuildPlan,
                 progress: BuildProgress, context: SourceTree | None) -> None:
        self.client = client
        self.gopts = gopts
        self.opts = opts
        self.plan = plan
        self.df = plan.dockerfile
        self.lexer = Lexer(self.df.escape)
        self.progress = progress
        self.context = context
        self.sn_name = gopts.snapshotter
        self.cache = Cache(client, self.sn_name, read=not opts.no_cache, share=opts.cache_share)
        self.platform = opts.platform or oci.host_platform()
        self.used_args: set[str] = set()
        self.meta = _expand_args(plan.meta_args, opts.build_args, platform_args(self.platform), self.lexer,
                                 self.df.error, self.used_args)
        self.results: dict[int, StageResult] = {}
        self.fifo_dir = os.path.join(gopts.data_root, "build", "fifo")
        self.steps_total = 0
        self.step_no = 0
        self._stage_steps: dict[int, int] = {}  # stage index -> steps shown so far
        self.cached_steps = 0
        self.deps: dict[int, set[int]] = {}  # stage index -> the stages it needs
        self.max_parallel = max(1, min(4, os.cpu_count() or 1))
        self.stopping = threading.Event()
        self.tasks = RunningTasks()
        self.stepnet = StepNetwork(gopts)
        self._lock = threading.Lock()

    # -- planning -------------------------------------------------------------------------------
    def target_stage(self) -> Stage:
        if not self.opts.target:
            return self.plan.stages[-1]
        st = next((s for s in self.plan.stages if s.name == self.opts.target.lower()), None)
        if st is None:
            raise UsageError(f"target stage {self.opts.target!r} could not be found",
                             hint="stages: " + ", ".join(s.label() for s in self.plan.stages))
        return st

    def _stage_ref(self, text: str, before: int) -> Stage | None:
        """The earlier stage a ``FROM``/``--from`` names (by name, or index for --from), if any."""
        key = text.lower()
        for s in self.plan.stages[:before]:
            if s.name and s.name == key:
                return s
        if key.isdigit() and int(key) < before:
            return self.plan.stages[int(key)]
        return None

    def needed(self, target: Stage) -> list[Stage]:
        """The stages ``target`` needs, itself included, in file order; fills :attr:`deps`."""
        seen: set[int] = set()
        order: list[Stage] = []

        def visit(st: Stage) -> None:
            if st.index in seen:
                return
            seen.add(st.index)
            deps = self.deps.setdefault(st.index, set())
            dep = self._stage_ref(self._from_image(st.from_), st.index)
            if dep is not None:
                deps.add(dep.index)
                visit(dep)
            for ins in st.instructions:
                for src in self._from_refs(ins):
                    dep = self._stage_ref(src, st.index)
                    if dep is not None:
                        deps.add(dep.index)
                        visit(dep)
                    elif any(s.name == src.lower() for s in self.plan.stages):
                        raise self.df.error(ins.node, f"{ins.keyword.upper()} --from={src}: stage {src!r} is "
                                            "defined later")
            order.append(st)

        visit(target)
        order.sort(key=lambda s: s.index)
        return order

    def _from_refs(self, ins: Instruction) -> list[str]:
        """The stages or images an instruction reads: ``COPY --from``, ``RUN --mount=…,from=``."""
        if isinstance(ins, Copy) and isinstance(ins.flags.get("from"), str):
            return [self._expand(ins.node, str(ins.flags["from"]), self.meta)]
        raw = ins.flags.get("mount") if isinstance(ins, Command) else None
        if not isinstance(raw, str):
            return []
        from . import runmounts

        out = []
        for text in raw.split("\n"):
            try:
                m = runmounts.parse(text, lambda v: self._expand(ins.node, v, self.meta))
            except ValueError:
                continue  # reported when the step runs
            if m.from_:
                out.append(m.from_)
        return out

    def _from_image(self, f: From) -> str:
        return self._expand(f.node, f.image, self.meta)

    def _expand(self, node: Node, text: str, env: dict[str, str]) -> str:
        try:
            return self.lexer.process_word(text, env)
        except ShellError as e:
            raise self.df.error(node, str(e)) from None

    def base_image(self, text: str, platform: oci.Platform | None, node: Node,
                   vertex: Vertex | None = None) -> tuple[ImageState, str]:
        """The state of an image from containerd, pulled (and unpacked) when missing; the pull's log goes under
        ``vertex`` (the FROM step) when there is one."""
        try:
            ref = refs.parse(text)
        except CtkError as e:
            raise self.df.error(node, f"invalid image reference {text!r}: {e.message}") from None
        img = None
        if not self.opts.pull:
            try:
                img = store.load_local(self.client, text, platform)
            except NotFound:
                pass
        if img is None:
            from ctk_shared import connect
            from ctk_shared.progress import PlainProgress, Progress, make_progress
            from ctk_shared.pull import PullOptions, pull

            from .progress import VertexStream

            progress: Progress
            if vertex is not None and not self.opts.quiet:  # the step's output is no terminal: plain lines
                progress = PlainProgress(VertexStream(self.progress, vertex))
            else:  # the live view owns the terminal: the pull's own bars would fight it
                progress = make_progress(self.opts.quiet or self.opts.progress in ("tty", "rawjson"))
            try:
                pull(self.client, connect.registry(ref.domain, self.gopts), ref,
                     PullOptions(platform=platform, snapshotter=self.sn_name), progress)
            finally:
                progress.close()
            img = store.load_local(self.client, str(ref), platform)
        want, have = platform or self.platform, img.config.platform
        if (want.os, want.architecture) != (have.os, have.architecture):
            # BuildKit's InvalidBaseImagePlatform check: a warning, and the image is used as it is
            self.progress.note(f"[warning] InvalidBaseImagePlatform: base image {text} has platform {have}, "
                               f"expected {want} for this build")
        if not store.is_unpacked(self.client, img.config, self.sn_name):
            store.unpack(self.client, img, self.sn_name)
        state = ImageState.from_config(img.config.raw, list(img.manifest.layers), img.manifest_desc.digest)
        return state, img.manifest_desc.digest

    # -- running --------------------------------------------------------------------------------
    def build(self) -> StageResult:
        target = self.target_stage()
        stages = self.needed(target)
        for st in stages:  # entitlements before any work, as BuildKit checks them before solving
            for ins in st.instructions:
                if isinstance(ins, Command) and ins.keyword == "run":
                    network_of(self, ins)
                    self._check_secrets(ins)
        self.check_emulators(stages)
        self.steps_total = sum(self.stage_total(s) for s in stages)
        self.progress.total += self.steps_total  # one progress for every platform of a multi-platform build
        if len(stages) == 1 or self.max_parallel == 1:
            for st in stages:
                self.results[st.index] = self.run_stage(st)
        else:
            self._run_concurrently(stages)
        unused = sorted(set(self.opts.build_args) - self.used_args - PROXY_ARGS)
        if unused:
            self.progress.note(f"[warning] build-args not consumed: {', '.join(unused)}")
        return self.results[target.index]

    def stage_platform(self, stage: Stage) -> oci.Platform:
        """Where a stage's programs run: its ``FROM --platform=…``, else the platform of the stage it starts
        from, else the build's target platform."""
        flag = stage.from_.flags.get("platform")
        if isinstance(flag, str):
            text = self._expand(stage.from_.node, flag, self.meta)
            if text:
                try:
                    return oci.Platform.parse(text)
                except CtkError as e:
                    raise self.df.error(stage.from_.node, f"FROM --platform={text}: {e.message}") from None
        dep = self._stage_ref(self._from_image(stage.from_), stage.index)
        return self.stage_platform(dep) if dep is not None else self.platform

    def check_emulators(self, stages: list[Stage]) -> None:
        """A stage with RUN steps for a platform this machine cannot run (no QEMU registered with binfmt_misc)
        fails the build before any step runs, with the fix named."""
        from .platforms import require_emulator

        for st in stages:
            if any(ins.keyword == "run" for ins in st.instructions):
                require_emulator(self.stage_platform(st))

    def _check_secrets(self, ins: Command) -> None:
        """A required secret that was not given fails the build before any step runs."""
        raw = ins.flags.get("mount")
        if not isinstance(raw, str):
            return  # no RUN --mount: its module is not even loaded
        from . import runmounts

        for text in raw.split("\n"):
            try:
                m = runmounts.resolve(runmounts.parse(text, lambda v: v), "/")
            except ValueError:
                continue  # reported with the step, once variables are known
            if m.type == "secret" and m.required and m.id not in self.opts.secrets:
                raise self.df.error(ins.node, f"secret {m.id}: not found (give it with --secret id={m.id},...)")
            if m.type == "ssh" and m.required and m.id not in self.opts.ssh:
                raise self.df.error(ins.node, f"ssh {m.id}: no agent given (ctk-build --ssh {m.id})")

    def _run_concurrently(self, stages: list[Stage]) -> None:
        """Independent stages at the same time. On the first failure (or Ctrl-C) the other stages stop: their
        RUN tasks are killed, and each stage cleans up its own snapshot before the error goes on."""
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        pending = {s.index: s for s in stages}
        running: dict[Future[StageResult], int] = {}
        with ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="ctk-build-stage") as pool:
            try:
                while pending or running:
                    for idx, st in sorted(pending.items()):
                        if self.deps.get(idx, set()) <= self.results.keys() and len(running) < self.max_parallel:
                            running[pool.submit(self.run_stage, st)] = idx
                            del pending[idx]
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        self.results[running.pop(fut)] = fut.result()
            except BaseException:
                self.stopping.set()
                self.tasks.kill_all(self.client)
                wait(list(running))
                raise

    def from_image(self, stage: Stage) -> bool:
        """Does the stage start from an image (not ``scratch``, not another stage)? Only then is its FROM a
        step of its own, as in BuildKit."""
        image = self._from_image(stage.from_)
        return image.lower() != "scratch" and self._stage_ref(image, stage.index) is None

    def stage_total(self, stage: Stage) -> int:
        """The steps BuildKit shows for a stage: FROM an image, RUN, COPY, ADD and WORKDIR (metadata
        instructions such as ENV or CMD are no steps)."""
        return int(self.from_image(stage)) + sum(1 for ins in stage.instructions if ins.keyword in SHOWN_STEPS)

    def begin(self, stage: Stage, node: Node) -> Vertex:
        """A step starts: it is numbered and shown as BuildKit names it, ``[2/4] RUN …`` (one stage) or
        ``[build 2/4] RUN …`` (the stage's name, ``stage-N`` when it has none): its place in its stage."""
        with self._lock:
            self.step_no += 1
            no = self._stage_steps[stage.index] = self._stage_steps.get(stage.index, 0) + 1
        total = max(no, self.stage_total(stage))
        name = stage.label() if len(self.plan.stages) > 1 else ""
        if self.opts.show_platform:
            name = f"{self.platform} {name}".rstrip()
        text = " ".join(node.original.split())
        if len(text) > 100:
            text = text[:97] + "..."
        width = len(str(total))
        return self.progress.begin(f"[{name + ' ' if name else ''}{no:>{width}}/{total}] {text}")

    def run_stage(self, stage: Stage) -> StageResult:
        from .stage import StageContext

        sc = StageContext(self, stage)
        try:
            try:
                sc.do_from()
            except (DockerfileError, KeyboardInterrupt):
                raise
            except CtkError as e:
                raise type(e)(f"{self.df.filename}:{stage.from_.line}: FROM {stage.from_.image}: {e.message}",
                              hint=e.hint) from e
            for ins in stage.instructions:
                if self.stopping.is_set():
                    raise Interrupted(f"stage {stage.label()} stopped: another stage failed")
                sc.dispatch(ins)
        except BaseException as e:
            v = sc.vertex
            if v is not None and v.ended is None:
                if isinstance(e, (KeyboardInterrupt, Interrupted)):
                    self.progress.cancel(v)
                else:
                    self.progress.fail(v, getattr(e, "message", None) or str(e))
            raise
        return StageResult(sc.state, sc.key)
