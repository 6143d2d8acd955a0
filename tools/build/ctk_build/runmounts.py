"""``RUN --mount``: cache, secret, bind and tmpfs mounts of a RUN step, as BuildKit's Dockerfile frontend reads
and runs them.

* ``type=cache`` (``target``, ``id`` [default: the target], ``sharing=shared|private|locked``, ``from``,
  ``source``, ``mode``/``uid``/``gid``): a directory under ``DATA_ROOT/build/cache-mounts/NAMESPACE/`` that
  outlives builds (``ctk-build prune`` removes it). ``shared``: every step that wants it gets it at once;
  ``locked``: one step at a time (the others wait); ``private``: a step that finds it in use gets another
  instance. The locks are ``flock``\\ s, so a killed build leaves nothing held. ``from``/``source`` seed a
  new cache with a stage's or image's files; ``source`` alone is a sub-directory of the cache.
* ``type=secret`` (``id``, ``target``/``dst`` [default ``/run/secrets/ID``], ``env``, ``required``,
  ``mode`` [0400], ``uid``, ``gid``): the bytes given with ``ctk-build --secret`` are written to a file on a
  tmpfs made for the step and bound read-only; never to a layer, the cache key or the history.
* ``type=bind`` (``from=stage|image`` [default: the context], ``source``, ``target``, ``rw``): read-only
  unless ``rw``; then an overlay with a throw-away upper directory takes the writes, and they are gone
  after the step (BuildKit's ``rw`` bind has no output either).
* ``type=tmpfs`` (``target``, ``size``).
* ``type=ssh`` (``id`` [default], ``target`` [``/run/buildkit/ssh_agent.N``], ``required``): the agent socket
  given with ``ctk-build --ssh ID=SOCKET`` (``--ssh default``: ``$SSH_AUTH_SOCK``) bound in; the first one is
  ``$SSH_AUTH_SOCK`` of the step. Unlike BuildKit, the socket itself is bound (no proxy), so ``mode``/``uid``
  /``gid`` are not applied to it.

Mount points runc had to create in the step's root for a target (``/run/secrets`` and the file in it, say)
are removed after the step, so nothing of a mount reaches the layer. The cache key gets each mount's
specification (and, for a bind, the content key of what it shows), never a secret's bytes.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctk_shared.errors import CtkError, InvalidArgument
from ctk_shared.outputs import rename_owned

from .runner import secrets_dir

if TYPE_CHECKING:
    from .dockerfile.instructions import Command
    from .stage import StageContext

# mounting and copysteps (ctypes, tarfile) are imported by the functions that mount: every build reads the
# --secret/--ssh flags through this module, and a cached rebuild mounts nothing.

TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING = ("shared", "private", "locked")
_KEYS = ("type", "from", "source", "src", "target", "dst", "destination", "readonly", "ro", "readwrite", "rw",
         "id", "sharing", "required", "size", "mode", "uid", "gid", "env")
SECRET_MAX = 500 * 1024  # BuildKit's limit on one secret's size
_TRUE = {"1", "t", "true", "TRUE", "True"}
_FALSE = {"0", "f", "false", "FALSE", "False"}


def _bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def ram_in_bytes(text: str) -> int:
    """Docker's ``units.RAMInBytes``: ``64m``, ``1g``, ``512kb``, ``1024`` (binary multiples)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?) *([kmgtp])?(i?b)?", text.strip(), re.I)
    if not m:
        raise ValueError(f"invalid value for size: {text}")
    mult = 1024 ** ("bkmgtp".index(m.group(2).lower()) if m.group(2) else 0)
    return int(float(m.group(1)) * mult)


@dataclass(frozen=True)
class RunMount:
    """One ``--mount`` as written (after variable expansion)."""

    type: str = "bind"
    target: str = ""
    source: str = ""
    from_: str = ""
    readonly: bool = True
    id: str = ""
    sharing: str = ""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    required: bool = False
    env: str | None = None

    def key(self) -> tuple[Any, ...]:
        """What the cache key gets of the mount (a secret's id and place, never its bytes)."""
        return (self.type, self.target, self.source, self.from_, self.readonly, self.id, self.sharing,
                self.mode, self.uid, self.gid, self.size, self.required, self.env)


def parse(text: str, expand: Callable[[str], str]) -> RunMount:
    """One ``--mount`` value (CSV ``key=value`` fields, as BuildKit); ``ValueError`` says what is wrong."""
    try:
        fields = next(csv.reader([text], skipinitialspace=False), [])
    except csv.Error as e:
        raise ValueError(f"failed to parse csv mounts: {e}") from None
    kv: dict[str, Any] = {"type": "bind"}
    ro_auto = True
    for fld in fields:
        key, eq, value = fld.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                kv["readonly"], ro_auto = True, False
            elif key in ("readwrite", "rw"):
                kv["readonly"], ro_auto = False, False
            elif key == "required":
                if kv["type"] not in ("secret", "ssh"):
                    raise ValueError(f"unexpected key '{key}' for mount type '{kv['type']}'")
                kv["required"] = True
            else:
                raise ValueError(f"invalid field '{fld}' must be a key=value pair")
            continue
        value = expand(value)
        if key == "type":
            if value.lower() not in TYPES:
                raise ValueError(f"unsupported mount type {value!r} (one of {', '.join(TYPES)})")
            kv["type"] = value.lower()
        elif key == "from":
            kv["from_"] = value
        elif key in ("source", "src"):
            kv["source"] = value
        elif key in ("target", "dst", "destination"):
            kv["target"] = value
        elif key in ("readonly", "ro"):
            kv["readonly"], ro_auto = _bool(key, value), False
        elif key in ("readwrite", "rw"):
            kv["readonly"], ro_auto = not _bool(key, value), False
        elif key == "required":
            if kv["type"] not in ("secret", "ssh"):
                raise ValueError(f"unexpected key '{key}' for mount type '{kv['type']}'")
            kv["required"] = _bool(key, value)
        elif key == "size":
            if kv["type"] != "tmpfs":
                raise ValueError(f"unexpected key '{key}' for mount type '{kv['type']}'")
            kv["size"] = ram_in_bytes(value)
        elif key == "id":
            kv["id"] = value
        elif key == "sharing":
            if value.lower() not in SHARING:
                raise ValueError(f"unsupported sharing value {value!r} (one of {', '.join(SHARING)})")
            kv["sharing"] = value.lower()
        elif key == "mode":
            try:
                kv["mode"] = int(value, 8)
            except ValueError:
                raise ValueError(f"invalid value {value} for mode") from None
        elif key in ("uid", "gid"):
            if not value.isdigit():
                raise ValueError(f"invalid value {value} for {key}")
            kv[key] = int(value)
        elif key == "env":
            kv["env"] = value
        else:
            raise ValueError(f"unexpected key '{key}' in '{fld}'")
    kind = kv["type"]
    if kind not in ("secret", "ssh", "cache"):
        for k in ("mode", "uid", "gid"):
            if kv.get(k) is not None:
                raise ValueError(f"{k} not allowed for {kind!r} type mounts")
    if ro_auto:
        kv["readonly"] = kind not in ("cache", "tmpfs")
    if kv.get("sharing") and kind != "cache":
        raise ValueError(f"invalid cache sharing set for {kind} mount")
    if kind == "secret":
        if kv.get("from_"):
            raise ValueError("secret mount should not have a from")
        if not (kv.get("source") or kv.get("target") or kv.get("id")):
            raise ValueError("invalid secret mount. one of source, target required")
        if kv.get("source") and kv.get("id"):
            raise ValueError("both source and id can't be set")
    return RunMount(**kv)


def resolve(m: RunMount, workdir: str) -> RunMount:
    """Defaults filled in as BuildKit's dispatcher does: an absolute target (relative ones are under the
    working directory), a cache's id (its target), a secret's id and target, sharing ``shared``."""
    if m.type == "ssh":
        target = m.target or ""
        if target and not target.startswith("/"):
            target = posixpath.join("/", workdir or "/", target)
        return RunMount(**{**m.__dict__, "id": m.id or "default", "target": posixpath.normpath(target) if target
                           else "", "mode": 0o600 if m.mode is None else m.mode})
    if m.type == "secret":
        sid = m.id or m.source or posixpath.basename(m.target)
        target = m.target or ("" if m.env else "/run/secrets/" + posixpath.basename(sid))
        if target and not target.startswith("/"):
            target = posixpath.join("/", workdir or "/", target)
        return RunMount(**{**m.__dict__, "id": sid, "source": "", "target": posixpath.normpath(target) if target
                           else "", "mode": 0o400 if m.mode is None else m.mode})
    if not m.target:
        raise ValueError(f"--mount type={m.type} needs a target")
    target = m.target if m.target.startswith("/") else posixpath.join("/", workdir or "/", m.target)
    target = posixpath.normpath(target)
    if target == "/":
        raise ValueError(f"invalid mount target {target!r}")
    extra: dict[str, Any] = {"target": target}
    if m.type == "cache":
        extra["id"] = m.id or target
        extra["sharing"] = m.sharing or "shared"
    return RunMount(**{**m.__dict__, **extra})


def ssh_sources(items: tuple[str, ...], environ: dict[str, str]) -> dict[str, str]:
    """``--ssh default`` (``$SSH_AUTH_SOCK``) or ``--ssh ID=SOCKET``: agent sockets, checked now."""
    import stat as stat_mod

    out: dict[str, str] = {}
    for item in items:
        sid, eq, path = item.partition("=")
        sid = sid or "default"
        if not eq:
            path = environ.get("SSH_AUTH_SOCK", "")
            if not path:
                raise InvalidArgument(f"--ssh {item}: SSH_AUTH_SOCK is not set",
                                      hint="start an agent (eval $(ssh-agent)) or give --ssh ID=SOCKET")
        path = os.path.abspath(path.split(",")[0])
        try:
            st = os.stat(path)
        except OSError as e:
            raise InvalidArgument(f"--ssh {item}: {path}: {e.strerror}") from None
        if not stat_mod.S_ISSOCK(st.st_mode):
            raise InvalidArgument(f"--ssh {item}: {path} is not an agent socket (key files are not supported; "
                                  "add the key to an agent)")
        out[sid] = path
    return out


def secret_sources(items: tuple[str, ...], environ: dict[str, str]) -> dict[str, bytes]:
    """``--secret id=ID[,src=PATH|,env=VAR][,type=file|env]`` values read now, so a missing one fails before
    any step runs. ``id=ID`` alone takes the variable ``ID`` when it is set, else the file ``ID``."""
    out: dict[str, bytes] = {}
    for item in items:
        kv: dict[str, str] = {}
        for part in next(csv.reader([item]), []):
            k, eq, v = part.partition("=")
            if not eq:
                raise InvalidArgument(f"--secret {item!r}: {part!r} is not a key=value pair")
            kv[k.lower()] = v
        unknown = set(kv) - {"id", "src", "source", "env", "type", "required"}
        if unknown:
            raise InvalidArgument(f"--secret {item!r}: unexpected key {sorted(unknown)[0]!r}")
        sid = kv.get("id", "")
        src = kv.get("src") or kv.get("source") or ""
        env = kv.get("env", "")
        kind = kv.get("type") or ("env" if env else "file" if src else "")
        if not sid:
            sid = src and os.path.basename(src) or env
        if not sid:
            raise InvalidArgument(f"--secret {item!r}: id is required")
        if not kind:
            kind = "env" if sid in environ else "file"
        if kind == "env":
            name = env or src or sid
            if name not in environ:
                raise InvalidArgument(f"--secret id={sid}: the environment variable {name} is not set")
            data = environ[name].encode()
        elif kind == "file":
            path = src or sid
            try:
                with open(path, "rb") as f:
                    data = f.read(SECRET_MAX + 1)
            except OSError as e:
                raise InvalidArgument(f"--secret id={sid}: {path}: {e.strerror}",
                                      hint="give the file with src=PATH (or the variable with env=NAME)") from None
        else:
            raise InvalidArgument(f"--secret {item!r}: type must be file or env")
        if len(data) > SECRET_MAX:
            raise InvalidArgument(f"--secret id={sid}: bigger than {SECRET_MAX // 1024} KiB (BuildKit's limit)")
        out[sid] = data
    return out


# -- running ----------------------------------------------------------------------------------------------

def cache_root(data_root: str, namespace: str) -> str:
    return os.path.join(data_root, "build", "cache-mounts", namespace)


@dataclass
class Prepared:
    """What a step's mounts add to its container: spec mounts, environment, and the targets to clean."""

    spec_mounts: list[dict[str, Any]] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)


def _lock(path: str, exclusive: bool, wait: bool) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _cache_instance(stack: contextlib.ExitStack, base: str, sharing: str) -> tuple[str, str | None]:
    """The directory of a cache mount for this step, locked as ``sharing`` wants until the step ends, and
    (when it does not exist yet) a new directory to fill and rename to it."""
    os.makedirs(base, mode=0o700, exist_ok=True)
    if sharing == "private":
        n = 0
        while True:
            inst = os.path.join(base, "data" if n == 0 else f"private-{n}")
            fd = _lock(inst + ".lock", exclusive=True, wait=False)
            if fd is not None:
                break
            n += 1
    else:
        inst = os.path.join(base, "data")
        fd = _lock(inst + ".lock", exclusive=sharing == "locked", wait=True)
    assert fd is not None
    stack.callback(os.close, fd)
    if os.path.isdir(inst):
        return inst, None
    tmp = tempfile.mkdtemp(prefix=".new-", dir=base)
    stack.callback(shutil.rmtree, tmp, True)  # a step killed before the rename leaves nothing half-made
    return inst, tmp


def prepare(sc: StageContext, ins: Command, mounts: list[RunMount], cid: str,
            stack: contextlib.ExitStack) -> Prepared:
    """Make every mount of the step ready on the host; everything is undone by ``stack``."""
    b = sc.b
    out = Prepared()
    secret_dir = ""
    ssh_count = 0
    for m in mounts:
        if m.type == "tmpfs":
            opts = ["nosuid", "nodev"] + ([f"size={m.size}"] if m.size else [])
            out.spec_mounts.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": opts})
        elif m.type == "secret":
            data = b.opts.secrets.get(m.id)
            if data is None:
                if m.required:
                    raise b.df.error(ins.node, f"secret {m.id}: not found (give it with --secret id={m.id},...)")
                continue
            if m.env:
                out.env.append(f"{m.env}={data.decode(errors='replace')}")
            if not m.target:
                continue
            if not secret_dir:
                size = sum(len(b.opts.secrets.get(o.id, b"")) for o in mounts if o.type == "secret" and o.target)
                size += 64 << 10  # room for every file of the step (a page each at least)
                secret_dir = _secret_tmpfs(b.gopts.data_root, cid, stack, size)
            path = os.path.join(secret_dir, f"s{len(out.spec_mounts)}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                os.fchown(fd, m.uid or 0, m.gid or 0)
                os.fchmod(fd, m.mode if m.mode is not None else 0o400)
            finally:
                os.close(fd)
            out.spec_mounts.append({"destination": m.target, "type": "bind", "source": path,
                                    "options": ["rbind", "ro", "rprivate", "nosuid", "nodev", "noexec"]})
            out.targets.append(m.target)
        elif m.type == "ssh":
            sock = b.opts.ssh.get(m.id)
            if sock is None:
                if m.required:
                    raise b.df.error(ins.node, f"ssh {m.id}: no agent given (ctk-build --ssh {m.id})")
                continue
            target = m.target
            if ssh_count == 0:
                out.env.append(f"SSH_AUTH_SOCK={target}")  # as BuildKit: the first agent is the default
            ssh_count += 1
            out.spec_mounts.append({"destination": target, "type": "bind", "source": sock,
                                    "options": ["rbind", "rprivate", "nosuid", "nodev", "noexec"]})
            out.targets.append(target)
        elif m.type == "cache":
            out.spec_mounts.append(_cache_mount(sc, ins, m, stack))
            out.targets.append(m.target)
        elif m.type == "bind":
            out.spec_mounts.append(_bind_mount(sc, ins, m, stack))
            out.targets.append(m.target)
    return out


def _secret_tmpfs(data_root: str, cid: str, stack: contextlib.ExitStack, size: int) -> str:
    """A tmpfs of the step's own (0700, root) for its secret files: their bytes never touch a disk."""
    from . import mounting

    path = secrets_dir(data_root, cid)
    os.makedirs(path, mode=0o700, exist_ok=True)
    stack.callback(_drop_secret_dir, path)
    mounting._mount("tmpfs", path, "tmpfs", 0, f"mode=0700,size={size}")
    return path


def _drop_secret_dir(path: str) -> None:
    from . import mounting

    mounting.unmount(path)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _cache_mount(sc: StageContext, ins: Command, m: RunMount, stack: contextlib.ExitStack) -> dict[str, Any]:
    from .copysteps import source_tree

    b = sc.b
    base = os.path.join(cache_root(b.gopts.data_root, b.client.namespace),
                        hashlib.sha256(m.id.encode()).hexdigest()[:32])
    inst, tmp = _cache_instance(stack, base, m.sharing)
    if tmp is not None:
        os.chmod(tmp, 0o755 if m.mode is None else m.mode)
        os.chown(tmp, m.uid or 0, m.gid or 0)
        if m.from_:
            with source_tree(sc, ins, m.from_) as (tree, _key):
                from .copier import copy

                if tree is not None:
                    copy(tmp, tree, [tree.clean(m.source or "/")], "/", "/")
        with open(os.path.join(base, "id"), "w") as f:
            f.write(m.id + "\n")
        with contextlib.suppress(OSError):  # another shared user made it first: theirs is used
            rename_owned(tmp, inst)
    else:
        if m.mode is not None:
            os.chmod(inst, m.mode)
        if m.uid is not None or m.gid is not None:
            os.chown(inst, -1 if m.uid is None else m.uid, -1 if m.gid is None else m.gid)
    src = inst
    if m.source and not m.from_:
        from .sources import SourceTree

        rel = SourceTree(inst, context=False).clean(m.source)
        src = SourceTree(inst, context=False).resolve(rel)
        os.makedirs(src, mode=0o755, exist_ok=True)
    opts = ["rbind", "ro" if m.readonly else "rw", "rprivate"]
    return {"destination": m.target, "type": "bind", "source": src, "options": opts}


def _bind_mount(sc: StageContext, ins: Command, m: RunMount, stack: contextlib.ExitStack) -> dict[str, Any]:
    from .copysteps import source_tree

    tree, _key = stack.enter_context(source_tree(sc, ins, m.from_))
    if tree is None:
        raise sc.b.df.error(ins.node, "RUN --mount=type=bind needs a build context (none was given)")
    try:
        src = tree.resolve(tree.clean(m.source or "/"))
    except CtkError as e:
        raise sc.b.df.error(ins.node, f"--mount source {m.source}: {e.message}") from None
    if not os.path.lexists(src):
        raise sc.b.df.error(ins.node, f"--mount source {m.source or '/'}: not found in the "
                            f"{'context' if not m.from_ else m.from_}")
    if m.readonly:
        return {"destination": m.target, "type": "bind", "source": src, "options": ["rbind", "ro", "rprivate"]}
    # rw: the writes land in a throw-away directory (an overlay upper, or a copy of a single file)
    scratch = tempfile.mkdtemp(prefix="ctk-build-rw-", dir=os.path.join(sc.b.gopts.data_root, "build"))
    stack.callback(shutil.rmtree, scratch, True)
    if not os.path.isdir(src):
        copy = os.path.join(scratch, "file")
        shutil.copyfile(src, copy, follow_symlinks=False)
        return {"destination": m.target, "type": "bind", "source": copy, "options": ["rbind", "rw", "rprivate"]}
    upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
    os.mkdir(upper)
    os.mkdir(work)
    return {"destination": m.target, "type": "overlay", "source": "overlay",
            "options": [f"lowerdir={src}", f"upperdir={upper}", f"workdir={work}"]}


def key_parts(sc: StageContext, ins: Command, mounts: list[RunMount]) -> list[Any]:
    """The cache key's share of the mounts: each spec, and for a bind the content key of its source (the
    stage's key, the image's digest, or the checksum of the context files)."""
    from .copysteps import source_tree

    parts: list[Any] = []
    for m in mounts:
        content = ""
        if m.type == "bind":
            with source_tree(sc, ins, m.from_) as (tree, key):
                if m.from_:
                    content = key
                elif tree is not None:
                    try:
                        content = tree.checksum([tree.clean(m.source or "/")])
                    except CtkError as e:
                        raise sc.b.df.error(ins.node, f"--mount source {m.source}: {e.message}") from None
        parts.append((*m.key(), content))
    return parts


def check(sc: StageContext, ins: Command) -> list[RunMount]:
    """The step's mounts, parsed and completed; a Dockerfile error names the line."""
    raw = ins.flags.get("mount")
    if not isinstance(raw, str) or not raw:
        return []
    workdir = str(sc.state.config.get("WorkingDir") or "/")
    out: list[RunMount] = []
    for text in raw.split("\n"):
        try:
            m = resolve(parse(text, lambda v: sc.expand(ins.node, v)), workdir)
        except ValueError as e:
            raise sc.b.df.error(ins.node, f"--mount={text}: {e}") from None
        if m.type == "secret" and m.required and m.id not in sc.b.opts.secrets:
            raise sc.b.df.error(ins.node, f"secret {m.id}: not found (give it with --secret id={m.id},...)")
        if m.type == "ssh" and m.required and m.id not in sc.b.opts.ssh:
            raise sc.b.df.error(ins.node, f"ssh {m.id}: no agent given (ctk-build --ssh {m.id})")
        if m.type == "ssh" and not m.target:
            n = sum(1 for o in out if o.type == "ssh")
            m = dataclasses.replace(m, target=f"/run/buildkit/ssh_agent.{n}")
        out.append(m)
    return out


def prune(data_root: str, namespace: str) -> int:
    """Remove the namespace's cache mounts (``ctk-build prune``); the bytes freed."""
    root = cache_root(data_root, namespace)
    size = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(dirpath, name)).st_size
    shutil.rmtree(root, ignore_errors=True)
    return size
