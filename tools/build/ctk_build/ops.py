"""What ``ctk-build`` does between parsed flags and containerd: read the Dockerfile and context, build under
one lease, then name, push or export the image and print its ref.

The image record is created only when the whole build succeeded: a failed build leaves no image, and its
lease (deleted on the way out, even on Ctrl-C) takes the half-made snapshots and blobs with it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ctk_shared import reference as refs
from ctk_shared.errors import CtkError, NotFound, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO

    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client
    from ctk_shared.oci import Platform
    from ctk_shared.reference import Reference

    from .cachespecs import CacheFrom, CacheTo
    from .dockerignore import IgnoreMatcher

DANGLING = "ctk-build-dangling"


@dataclass(frozen=True)
class BuildRequest:
    """What ``ctk-build`` was asked for, flags as given (the cli has read stdin for a ``-`` CONTEXT or -f)."""

    context: str  # a directory, or "-" (Dockerfile on stdin, no context)
    dockerfile: str | None = None  # -f; "-" reads stdin
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    quiet: bool = False
    network: str = "default"  # of RUN steps: default (own namespace on the bridge network), none, host
    platforms: tuple[Platform, ...] = ()  # --platform a,b (several: an OCI index); () = the host's
    source_date_epoch: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    push: bool = False
    outputs: tuple[str, ...] = ()
    fmt: str = "ref"
    compression: str = "auto"  # auto: uncompressed for local builds, gzip with --push or -o
    pull: bool = False
    digestfile: str | None = None
    allow: frozenset[str] = frozenset()  # entitlements: network.host
    progress: str = "auto"  # auto, tty, plain, quiet, rawjson (-q is quiet)
    iidfile: str | None = None  # also write the image ID (the config digest) there
    secrets: tuple[str, ...] = ()  # --secret id=…,src=…|env=…
    ssh: tuple[str, ...] = ()  # --ssh default|ID=SOCKET
    cache_to: tuple[str, ...] = ()  # --cache-to type=registry,ref=…|type=local,dest=…
    cache_from: tuple[str, ...] = ()  # --cache-from type=registry,ref=…|type=local,src=…
    stdin: str | None = None  # what the cli read from stdin for a `-` CONTEXT or -f (the function never reads it)
    stdout: BinaryIO | None = None  # the stream the cli hands over for `-o dest=-` (never sys.stdout itself)


@dataclass(frozen=True)
class BuildResult:
    """What the cli prints: ``NAME@DIGEST`` (or the JSON record), unless the tar went to stdout."""

    name: str
    digest: str
    names: tuple[str, ...]
    cached_steps: int
    steps: int
    config: str | None = None  # the image ID (config digest)
    platforms: tuple[str, ...] = ()  # with several --platform: an index of these
    tar_on_stdout: bool = False  # -o dest=-: stdout carried the tar, nothing else may go there

    @property
    def ref(self) -> str:
        return f"{self.name.split('@', 1)[0]}@{self.digest}"


def _read_dockerfile(req: BuildRequest) -> tuple[str, str, str | None, str | None]:
    """(text, display name, context dir or None, Dockerfile path or None)."""
    if req.context == "-":
        if req.dockerfile not in (None, "-"):
            raise UsageError("with CONTEXT '-' the Dockerfile comes from stdin; -f cannot name another")
        return req.stdin or "", "Dockerfile", None, None
    if not os.path.isdir(req.context):
        raise UsageError(f"build context {req.context!r} is not a directory")
    if req.dockerfile == "-":
        return req.stdin or "", "Dockerfile", req.context, None
    path = req.dockerfile or os.path.join(req.context, "Dockerfile")
    if req.dockerfile and not os.path.exists(path) and os.path.exists(os.path.join(req.context, req.dockerfile)):
        path = os.path.join(req.context, req.dockerfile)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), req.dockerfile or "Dockerfile", req.context, path
    except FileNotFoundError:
        raise NotFound(f"cannot read the Dockerfile {path}: no such file",
                       hint="name it with -f, or pass the directory that holds it as CONTEXT") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CtkError(f"cannot read the Dockerfile {path}: {e}") from None


def _ignore(context: str, dockerfile: str | None) -> IgnoreMatcher:
    from .dockerignore import IgnoreMatcher

    candidates = []
    if dockerfile:
        candidates.append(dockerfile + ".dockerignore")  # BuildKit: a Dockerfile-specific ignore file wins
    candidates.append(os.path.join(context, ".dockerignore"))
    for c in candidates:
        try:
            with open(c) as f:
                return IgnoreMatcher.from_text(f.read())
        except FileNotFoundError:
            continue
    return IgnoreMatcher([])


def _compression(req: BuildRequest) -> str:
    """Layers stay uncompressed in the local store (as buildah keeps them: no CPU spent on compression) unless
    they are going out: ``--push`` and ``-o`` get gzip, what Docker and registries expect."""
    if req.compression != "auto":
        return req.compression
    return "gzip" if req.push or req.outputs else "uncompressed"


def _parse_output(spec: str) -> tuple[str, str]:
    kv: dict[str, str] = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        kv[key if eq else "type"] = value if eq else key
    kind, dest = kv.get("type", ""), kv.get("dest", "")
    if kind not in ("oci", "docker", "tar"):
        raise UsageError(f"-o {spec}: type must be oci or docker")
    if not dest:
        raise UsageError(f"-o {spec}: dest=PATH is required")
    return kind, dest


def build(client: Client, gopts: GlobalOptions, req: BuildRequest) -> BuildResult:
    """``ctk-build``: the image built, named, exported and pushed as asked (docs/CONVENTIONS.md §7: the cli
    prints the result; step lines and RUN output go to stderr)."""
    from . import progress as progress_mod
    from .builder import BuildOptions
    from .dockerfile import parse, plan
    from .sources import SourceTree

    tags = [refs.parse(t) for t in req.tags]  # bad names fail before any work
    outputs = [_parse_output(o) for o in req.outputs]
    from .cache import CacheShare

    cache_to, cache_from = _cache_specs(req)
    share = CacheShare()
    if req.push and not tags:
        raise UsageError("--push needs a name (-t)")
    from .stepnet import build_mode

    network = build_mode(req.network, req.allow)
    text, df_name, context_dir, df_path = _read_dockerfile(req)
    bplan = plan(parse(text, df_name))
    from ctk_shared import dataroot

    from .sources import DigestCache

    dataroot.ensure(gopts.data_root)  # 0710, before the digest cache or the RUN fifos make it 0755
    digests = DigestCache(os.path.join(gopts.data_root, "build", "digests.json"))
    context = SourceTree(context_dir, _ignore(context_dir, df_path), digests=digests) if context_dir else None
    secrets, agents = _secrets_and_agents(req)  # a missing one fails before any work
    mode = progress_mod.choose("quiet" if req.quiet else req.progress, sys.stderr.isatty())
    opts = BuildOptions(text, df_name, context_dir, dict(req.build_args), req.target, req.no_cache, network,
                        None, req.source_date_epoch, dict(req.labels), mode == "quiet", mode,
                        _compression(req), req.pull, req.allow, secrets, agents, cache_share=share)
    from .runner import remove_stale_steps

    remove_stale_steps(client, gopts.data_root)
    from . import stepnet

    old_term = signal.signal(signal.SIGTERM, _sigterm)
    log = progress_mod.make(mode)
    cache_lines: list[str] = []
    try:
        if cache_from and not req.no_cache:  # only the step lists now; layers when a step uses them
            from .cacheimport import load

            share.remote = load(cache_from, gopts, log.note)
        with client.lease_scope() as leased:
            from .multiplatform import build_platforms

            try:  # one manifest, or an index of one per --platform
                built = build_platforms(leased, gopts, opts, bplan, log, context, req.platforms)
            except CtkError as e:
                log.close()
                _show_tail(e, mode)
                raise
            finally:
                log.close()
                stepnet.release_all()  # the RUN steps' network namespaces go while the image is written
            written = built.written
            if cache_to:  # before the image is named: a failed export (without ignore-error) leaves no image
                from .cacheexport import export_build

                cache_lines = export_build(leased, gopts, share, written.manifest, cache_to, _warn)
            names = [str(t) for t in tags] or [f"{DANGLING}@{written.manifest.digest}"]
            from ctk_shared.containerd import Image
            from ctk_shared.cri import put_image

            for name in names:
                put_image(leased, Image(name=name, target=written.manifest, labels={}))
            for _kind, dest in outputs:
                _export(leased, names[0], dest, req.stdout)
            if req.push:
                _push(leased, gopts, tags, mode == "quiet")
    finally:
        if share.remote is not None:
            share.remote.close()
        stepnet.wait_all()
        signal.signal(signal.SIGTERM, old_term)
        try:
            digests.save()
        except OSError:
            pass  # only a speed-up for the next build
    res = BuildResult(names[0], written.manifest.digest, tuple(names), built.cached_steps, built.steps,
                      config=written.config_digest or None,
                      platforms=tuple(str(p) for p in built.platforms) if len(built.platforms) > 1 else (),
                      tar_on_stdout=any(dest == "-" for _kind, dest in outputs))
    if mode in ("plain", "tty"):
        sys.stderr.write("".join(f"{line}\n" for line in cache_lines))
        sys.stderr.write(f"built {res.ref} ({res.cached_steps} of {res.steps} steps cached)\n")
        sys.stderr.flush()
    from ctk_shared.outputs import write_output

    # stdout carries the ref already: `-` here would mix the two, so it is refused
    if req.digestfile:
        write_output(req.digestfile, res.digest.encode(), allow_stdout=False)
    if req.iidfile:  # Docker's image ID: the config digest (buildx: the index's digest for several platforms)
        write_output(req.iidfile, (written.config_digest or res.digest).encode(), allow_stdout=False)
    return res


def _cache_specs(req: BuildRequest) -> tuple[list[CacheTo], list[CacheFrom]]:
    """``--cache-to``/``--cache-from`` checked before any work (their module loads only when one is given)."""
    if not req.cache_to and not req.cache_from:
        return [], []
    from .cachespecs import parse_all

    return parse_all(req.cache_to, req.cache_from)


def _secrets_and_agents(req: BuildRequest) -> tuple[dict[str, bytes], dict[str, str]]:
    """``--secret`` values read and ``--ssh`` sockets checked now (the RUN --mount module loads only when
    one is given: a plain build, cached above all, does not need it)."""
    if not req.secrets and not req.ssh:
        return {}, {}
    from .runmounts import secret_sources, ssh_sources

    return secret_sources(req.secrets, dict(os.environ)), ssh_sources(req.ssh, dict(os.environ))


def _warn(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _show_tail(e: CtkError, mode: str) -> None:
    """The failed RUN's last lines again, under the error (plain mode showed them prefixed and among other
    steps' lines; the live view only the last few)."""
    from .runner import StepFailed

    if mode != "rawjson" and isinstance(e, StepFailed) and e.tail:
        sys.stderr.write("------ last output lines ------\n")
        for line in e.tail:
            sys.stderr.write(f"  {line}\n")
        sys.stderr.write("-------------------------------\n")
        sys.stderr.flush()


def _export(client: Client, name: str, dest: str, stdout: BinaryIO | None) -> None:
    from ctk_shared import archive
    from ctk_shared.images import load_local
    from ctk_shared.outputs import open_output

    img = load_local(client, name)
    if dest == "-":
        if stdout is None:
            raise UsageError("-o dest=-: no output stream was handed over")
        archive.save(client, [img], stdout)
        stdout.flush()
        return
    with open_output(dest, allow_stdout=False) as f:  # a device, a FIFO: streamed; a regular file: replaced whole
        archive.save(client, [img], f)


def _push(client: Client, gopts: GlobalOptions, tags: Iterable[Reference], quiet: bool) -> None:
    from ctk_shared import connect
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress
    from ctk_shared.push import push

    for ref in tags:
        progress = make_progress(quiet)
        try:
            push(client, connect.registry(ref.domain, gopts), find_image(client, str(ref)), ref, None, progress)
        finally:
            progress.close()


@dataclass(frozen=True)
class PruneOptions:
    """What ``ctk-build prune`` was asked for: only ``-f``, which changes nothing (prune never asks)."""

    force: bool = False  # accepted for Docker compatibility: prune never asks


@dataclass(frozen=True)
class Pruned:
    """Result of ``ctk-build prune``: the cache entries dropped, and the bytes released (layers, RUN cache mounts)."""

    entries: int
    size: int  # bytes of layers released


def prune(client: Client, gopts: GlobalOptions, opts: PruneOptions) -> Pruned:
    from .cache import prune as prune_cache
    from .runmounts import prune as prune_mounts
    from .runner import remove_stale_steps

    remove_stale_steps(client, gopts.data_root)
    count, size = prune_cache(client)
    size += prune_mounts(gopts.data_root, client.namespace)  # RUN --mount=type=cache directories
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(gopts.data_root, "build", "digests.json"))  # checksums of context files
    return Pruned(count, size)
