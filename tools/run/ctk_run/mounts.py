"""Docker's three mount flags, parsed into one value: ``-v``, ``--mount`` and ``--tmpfs``.

Parsing is pure: nothing here touches the host. Whether a bind source exists, and which host directory a named
volume lives in, is decided by the CLI; ``spec.build_spec`` turns a ``MountSpec`` into an OCI mount.
Error messages are Docker's, so a user's search for them finds Docker's answers.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ctk_shared.errors import UsageError

from .units import parse_bytes

BIND, VOLUME, TMPFS = "bind", "volume", "tmpfs"

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_LABELS = ("z", "Z")  # SELinux relabelling: accepted and ignored (no SELinux here)
_CONSISTENCY = ("consistent", "cached", "delegated")  # Docker for Mac hints: accepted and ignored
NOCOPY = "nocopy"  # volume: do not copy the image's content into a new volume
NONRECURSIVE = "nonrecursive"  # bind: plain "bind" instead of "rbind" (--mount bind-nonrecursive)

_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass(frozen=True)
class MountSpec:
    """One mount the user asked for.

    ``options`` holds what the type needs beyond ``readonly``: for a bind its propagation (``rshared``…),
    ``z``/``Z`` or ``nonrecursive``; for a volume ``nocopy``; for a tmpfs its flags and ``size=``/``mode=``.
    A named volume has its name in ``source``; an anonymous one has ``source == ""``.
    """

    type: str
    source: str
    target: str
    readonly: bool = False
    options: tuple[str, ...] = ()

    @property
    def propagation(self) -> str | None:
        return next((o for o in self.options if o in PROPAGATIONS), None)


# ---------------------------------------------------------------------------------------------------------- -v


def parse_volume(text: str) -> MountSpec:
    """``-v``: ``/host:/ctr[:opts]`` (bind), ``name:/ctr[:opts]`` (named volume), ``/ctr`` (anonymous volume).

    opts is a comma list of at most one each of ``ro|rw``, ``z|Z``, a propagation, ``nocopy``, a consistency.
    """
    parts = text.split(":")
    if not text or parts[0] == "" or len(parts) > 3:
        raise UsageError(f"invalid volume specification: '{text}'")
    mode = ""
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        if _is_valid_mode(parts[1]):  # "/foo:rw": a destination with a mode but no source
            raise UsageError(f"invalid volume specification: '{text}'")
        source, target = parts
    else:
        source, target, mode = parts
    if target == "":
        raise UsageError(f"invalid volume specification: '{text}'")
    if not _is_valid_mode(mode):
        raise UsageError(f"invalid mode: {mode}")

    flags = [m for m in mode.split(",") if m]
    kind = BIND if source.startswith("/") else VOLUME
    readonly = "ro" in flags
    options: list[str] = []
    propagation = next((f for f in flags if f in PROPAGATIONS), None)
    if NOCOPY in flags:
        if kind == BIND:
            raise _config_error(kind, "field VolumeOptions must not be specified")
        options.append(NOCOPY)
    if propagation:
        if kind == VOLUME:
            raise _config_error(kind, "field BindOptions must not be specified")
        options.append(propagation)
    options += [f for f in flags if f in _LABELS or f in _CONSISTENCY]

    _check_target(kind, target)
    if kind == VOLUME and source:
        check_volume_name(source)
    return MountSpec(kind, posixpath.normpath(source) if kind == BIND else source, _clean(target),
                     readonly, tuple(options))


def _is_valid_mode(mode: str) -> bool:
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for m in mode.split(","):
        if m in ("rw", "ro"):
            counts["rw"] += 1
        elif m in _LABELS:
            counts["label"] += 1
        elif m in PROPAGATIONS:
            counts["propagation"] += 1
        elif m == NOCOPY:
            counts["copy"] += 1
        elif m in _CONSISTENCY:
            counts["consistency"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


# ----------------------------------------------------------------------------------------------------- --mount

_BOOL_KEYS = ("readonly", "ro", "volume-nocopy", "bind-nonrecursive")


def parse_mount(text: str) -> MountSpec:
    """``--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,bind-propagation=…][,tmpfs-size=…]…``.

    Fields are CSV (a value may be quoted); ``type`` defaults to ``volume`` as in Docker.
    """
    import csv  # only for --mount's CSV syntax

    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise UsageError(f"invalid --mount value: {text!r}") from None
    kind, source, target = VOLUME, "", ""
    readonly = False
    bind_opts: list[str] = []
    volume_opts: list[str] = []
    tmpfs_opts: list[str] = []
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not sep and key not in _BOOL_KEYS:
            raise UsageError(f"invalid field '{field}' must be a key=value pair")
        if key == "type":
            kind = value.lower()
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "dst", "destination"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _bool(key, value, sep)
        elif key == "volume-nocopy":
            volume_opts += [NOCOPY] if _bool(key, value, sep) else ["copy"]
        elif key == "bind-propagation":
            if value.lower() not in PROPAGATIONS:
                raise UsageError(f"invalid propagation mode: {value}")
            bind_opts.append(value.lower())
        elif key == "bind-nonrecursive":
            bind_opts += [NONRECURSIVE] if _bool(key, value, sep) else ["recursive"]
        elif key == "consistency":
            if value not in _CONSISTENCY + ("default",):
                raise UsageError(f"invalid consistency: {value}")
        elif key == "tmpfs-size":
            size = parse_bytes(value)
            tmpfs_opts.append(f"size={_size_with_suffix(size)}")
        elif key == "tmpfs-mode":
            try:
                tmpfs_opts.append(f"mode={int(value, 8):o}")
            except ValueError:
                raise UsageError(f"invalid value for {key}: {value}") from None
        else:
            raise UsageError(f"unexpected key '{key}' in '{field}'")

    if kind not in (BIND, VOLUME, TMPFS):
        raise UsageError(f'invalid mount config for type "{kind}": mount type unknown')
    if not target:
        raise UsageError("target is required")
    for extra, family in ((volume_opts, VOLUME), (bind_opts, BIND), (tmpfs_opts, TMPFS)):
        if extra and kind != family:
            raise UsageError(f"cannot mix '{family}-*' options with mount type '{kind}'")
    if kind == BIND:
        if not source:
            raise _config_error(kind, "field Source must not be empty")
        _check_path(kind, source)
        source = posixpath.normpath(source)
    elif kind == TMPFS and source:
        raise _config_error(kind, "field Source must not be specified")
    elif kind == VOLUME and source:
        check_volume_name(source)
    _check_target(kind, target)
    options = [o for o in bind_opts + volume_opts if o not in ("copy", "recursive")] + tmpfs_opts
    return MountSpec(kind, source, _clean(target), readonly, tuple(options))


def _bool(key: str, value: str, sep: str) -> bool:
    if not sep:
        return True
    v = value.strip()
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise UsageError(f"invalid value for {key}: {value}")


def _size_with_suffix(size: int) -> str:
    """Docker's ConvertTmpfsOptions: the largest of g/m/k that divides the size evenly."""
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


# ----------------------------------------------------------------------------------------------------- --tmpfs

# Mount flags a tmpfs accepts, grouped so that a later flag of a group overrides an earlier one
# (Docker's MergeTmpfsOptions); "ro"/"rw" become MountSpec.readonly.
_TMPFS_FLAG_GROUPS = (
    ("ro", "rw"), ("exec", "noexec"), ("suid", "nosuid"), ("dev", "nodev"), ("sync", "async"),
    ("dirsync",), ("mand", "nomand"), ("atime", "noatime"), ("diratime", "nodiratime"),
    ("relatime", "norelatime"), ("strictatime", "nostrictatime"),
    ("private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"),
)
_TMPFS_FLAG_GROUP = {flag: i for i, group in enumerate(_TMPFS_FLAG_GROUPS) for flag in group}
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")


def parse_tmpfs(text: str) -> MountSpec:
    """``--tmpfs /run[:size=64m,mode=1777,noexec…]``."""
    target, _, raw = text.partition(":")
    if not target:
        raise UsageError(f"invalid tmpfs specification: '{text}'")
    _check_target(TMPFS, target)
    options = [o for o in raw.split(",") if o]
    readonly = False
    for o in options:
        if o == "defaults":
            continue
        if o in _TMPFS_FLAG_GROUP:
            if o in ("ro", "rw"):
                readonly = o == "ro"
            continue
        key, sep, value = o.partition("=")
        if not sep or key not in _TMPFS_DATA:
            raise UsageError(f"invalid tmpfs option {o!r}")
        if key == "mode" and not re.fullmatch(r"[0-7]{1,4}", value):
            raise UsageError(f"invalid tmpfs option {o!r}: mode must be octal")
    kept = tuple(o for o in options if o not in ("ro", "rw", "defaults"))
    return MountSpec(TMPFS, "", _clean(target), readonly, kept)


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """Docker's MergeTmpfsOptions: the last flag of each group and the last value of each key win, in order."""
    seen_groups: set[int] = set()
    seen_keys: set[str] = set()
    merged: list[str] = []
    for o in reversed(options):
        if o == "defaults":
            continue
        if o in _TMPFS_FLAG_GROUP:
            group = _TMPFS_FLAG_GROUP[o]
            if group not in seen_groups:
                seen_groups.add(group)
                merged.append(o)
            continue
        key, sep, _ = o.partition("=")
        if not sep or key not in _TMPFS_DATA:
            raise UsageError(f"invalid tmpfs option {o!r}")
        if key not in seen_keys:
            seen_keys.add(key)
            merged.append(o)
    merged.reverse()
    return merged


# --------------------------------------------------------------------------------------------------- checks


def _config_error(kind: str, what: str) -> UsageError:
    return UsageError(f'invalid mount config for type "{kind}": {what}')


def _check_path(kind: str, path: str) -> None:
    if not path.startswith("/"):
        raise _config_error(kind, f"invalid mount path: '{path}' mount path must be absolute")


def _check_target(kind: str, target: str) -> None:
    _check_path(kind, target)
    if _clean(target) == "/":
        raise UsageError("invalid specification: destination can't be '/'")


MAX_VOLUME_NAME = 255  # one directory name under the data root


def check_volume_name(name: str) -> None:
    """Docker's rule for a local volume's name, and a length the filesystem can hold (Docker gives the
    filesystem's "file name too long" instead)."""
    if len(name) > MAX_VOLUME_NAME:
        raise UsageError(f"create {name[:20]}…: volume name is too long ({len(name)} characters; at most "
                         f"{MAX_VOLUME_NAME})")
    if not _VOLUME_NAME.match(name):
        raise UsageError(
            f'create {name}: "{name}" includes invalid characters for a local volume name, only '
            f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'
        )


def _clean(path: str) -> str:
    return posixpath.normpath(path) if path else path
