"""``USER`` and ``--chown`` values to numeric ids, looked up in the image's own /etc/passwd and /etc/group.

The files are read from the snapshot's directories (``ctk_shared.snapshotfs``: top layer first; an overlay
whiteout hides a file), so no mount is needed before a ``RUN``. Links in the image (``/etc/passwd ->
/etc/shadow``) are followed inside the image, never on the host, and each file is capped in size.
"""
from __future__ import annotations

from collections.abc import Sequence

from ctk_shared.errors import InvalidArgument
from ctk_shared.snapshotfs import read_layered


def _entries(text: str | None) -> list[list[str]]:
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def resolve(spec: str, dirs: Sequence[str]) -> tuple[int, int, tuple[int, ...]]:
    """``(uid, gid, additional gids)`` for ``user[:group]`` (names or numbers), like runc resolves ``USER``."""
    user, _, group = spec.strip().partition(":")
    passwd = read_layered(dirs, "etc/passwd")
    groups = _entries(read_layered(dirs, "etc/group"))
    uid, gid, name = 0, 0, ""
    if user:
        match = next((e for e in _entries(passwd) if len(e) > 3 and (e[0] == user or e[2] == user)), None)
        if match:
            name, uid, gid = match[0], int(match[2]), int(match[3])
        elif user.isdigit():
            uid = int(user)
        else:
            raise InvalidArgument(f"unable to find user {user}: no matching entries in passwd file")
    extra: tuple[int, ...] = ()
    if group:
        found = next((g for g in groups if len(g) > 2 and (g[0] == group or g[2] == group)), None)
        if found:
            gid = int(found[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
    elif name:
        extra = tuple(int(g[2]) for g in groups if len(g) > 3 and name in g[3].split(","))
    return uid, gid, extra


def resolve_chown(spec: str, dirs: Sequence[str]) -> tuple[int, int]:
    """``--chown=user[:group]``; Docker's rule: a user (name or id) without a group uses the uid as gid."""
    uid, gid, _ = resolve(spec, dirs)
    return (uid, gid) if ":" in spec else (uid, uid)
