"""Launchers: small scripts that start a ctk entry point without ``site``.

A pip console script (or ``python -m``) starts the interpreter with ``site``, which reads every ``.pth`` file of
site-packages; on the development install that is the setuptools editable finder (pathlib and
importlib.resources, ~10 ms) plus whatever else the machine put there: ~24 ms of a ~30 ms start, on every
command, and twice per networked container for the CNI hook that runc runs (issue 20). A launcher is a script
whose ``#!`` line runs the same interpreter with ``-S`` and whose body puts this installation's import path
(the ctk source directories and the site-packages holding grpc, protobuf, click, requests...) on ``sys.path``
itself, so the entry point imports exactly what the console script would, from the same files.

This module is the one home of that idea: ``scripts/setup`` installs the ``ctk-*`` commands as launchers
(``python -m ctk_shared.launchers install DIR``), ctk-run writes the logger's into the data root and
:mod:`ctk_shared.nethooks` the network hook's. Each caller keeps its old way (the console script, ``python -I
-m``) as the fallback when a launcher cannot be made.

Flags: ``-I -S`` (isolated: no ``PYTHON*`` environment, no user site, no script directory) for what the shim
and runc start with an empty environment; ``-S -P`` for the user's commands, which keep the console scripts'
behaviour for ``PYTHONPATH`` and the other ``PYTHON*`` variables (the A/B benchmarks put a tree first on
``PYTHONPATH``) while still skipping ``site`` and the script directory. The installation's directories are
appended after the standard library, where ``site`` would have put them, so ``PYTHONPATH`` still comes first.
"""
from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = b"# ctk launcher"  # second line of every launcher: how setup tells its own files from anything else
# the kernel copies at most BINPRM_BUF_SIZE bytes of the #! line (128 before Linux 5.1, 256 since) and cuts the
# rest silently; stay under the older limit so a cut can never change which interpreter or flags run
MAX_SHEBANG = 127
ISOLATED = "-IS"  # hooks and loggers: started by runc or the shim with an empty environment
COMMAND = "-SP"  # the user's commands: PYTHONPATH and the other PYTHON* variables work as with pip's scripts
# what every ctk entry point imports from site-packages (top-level names): a launcher whose path lacks one of
# them would fail at its first use, so it is not written and the caller falls back
COMMON_DEPS = ("grpc", "google", "click")
CTK_PACKAGES = ("ctk_shared", "ctk_pull", "ctk_run", "ctk_net", "ctk_build", "ctk_crypt")


class LauncherError(Exception):
    """A launcher cannot be made for this installation (a #! line too long, a module not found)."""


@dataclass(frozen=True)
class Entry:
    """``module:function``, called with no arguments (a console script's entry) or, with ``argv``, with
    ``sys.argv[1:]`` (a ``python -m`` module's ``entry(argv)``)."""

    module: str
    function: str
    argv: bool = False

    @classmethod
    def parse(cls, spec: str) -> Entry:
        module, sep, function = spec.partition(":")
        if not sep or not module or not function.isidentifier():
            raise LauncherError(f"entry point {spec!r} is not MODULE:FUNCTION")
        return cls(module, function)


@functools.cache
def import_path(packages: tuple[str, ...] = CTK_PACKAGES) -> tuple[str, ...]:
    """The directories a site-less interpreter needs on ``sys.path`` to import ``packages`` and their
    dependencies as this process does: the directory above each package (the checkout's source directories
    for an editable install, site-packages otherwise), then this interpreter's site-packages. The same answer
    from a process started with or without ``site``, so a launcher is rewritten only when the install moves."""
    import importlib.util
    import site  # under -S importing it runs nothing: getsitepackages only joins sys.prefix's paths

    paths: list[str] = []
    for name in packages:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin:
            continue
        paths.append(str(Path(spec.origin).resolve().parent.parent))
    paths.extend(p for p in site.getsitepackages() if os.path.isdir(p))
    return tuple(dict.fromkeys(paths))


def missing(paths: Sequence[str], names: Iterable[str]) -> list[str]:
    """The top-level ``names`` that a path-based import over ``paths`` (then the standard library) would not
    find: what a launcher with these paths would fail to import."""
    from importlib.machinery import PathFinder

    search = [*paths, *_stdlib_path()]
    return [n for n in names if PathFinder.find_spec(n, search) is None]


def _stdlib_path() -> list[str]:
    import sysconfig

    return [sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")]


def render(entry: Entry, paths: Sequence[str], *, flags: str = ISOLATED, python: str | None = None,
           note: str = "") -> bytes:
    """The launcher's text. LauncherError when the interpreter is not an absolute path or the ``#!`` line
    would be longer than any kernel reads whole."""
    python = python or sys.executable
    shebang = f"#!{python} {flags}"
    if not os.path.isabs(python) or any(c.isspace() for c in python):
        raise LauncherError(f"interpreter {python!r} cannot be named on a #! line")
    if len(shebang.encode()) > MAX_SHEBANG:
        raise LauncherError(f"#! line of {len(shebang.encode())} bytes is longer than the kernel reads "
                            f"({MAX_SHEBANG}): {shebang[:60]}...")
    call = f"{entry.function}(sys.argv[1:])" if entry.argv else f"{entry.function}()"
    return (f"{shebang}\n{MARKER.decode()}: {entry.module}:{entry.function} without site"
            f"{' (' + note + ')' if note else ''}; see ctk_shared.launchers\n"
            f"import sys\nsys.path.extend({list(paths)!r})\n"
            f"from {entry.module} import {entry.function}\nsys.exit({call})\n").encode()


def text_for(entry: Entry, *, flags: str = ISOLATED, needs: Iterable[str] = COMMON_DEPS, note: str = "") -> bytes:
    """:func:`render` for this installation, after checking that the entry's package and ``needs`` import
    from the computed path (LauncherError naming what is missing otherwise)."""
    paths = import_path()
    check_importable(paths, entry, needs)
    return render(entry, paths, flags=flags, note=note)


def check_importable(paths: Sequence[str], entry: Entry, needs: Iterable[str] = COMMON_DEPS) -> None:
    lost = missing(paths, [entry.module.partition(".")[0], *needs])
    if lost:
        raise LauncherError(f"not importable without site: {', '.join(lost)}")


def is_current(target: str | os.PathLike[str], text: bytes) -> bool:
    """The file at ``target`` holds exactly ``text`` (a regular file, executable): nothing to write."""
    try:
        with open(target, "rb") as f:
            return f.read(len(text) + 1) == text and os.access(target, os.X_OK)
    except OSError:
        return False


def is_launcher(target: str | os.PathLike[str]) -> bool:
    """``target`` is a regular file that this module wrote (its second line starts with :data:`MARKER`)."""
    try:
        if os.path.islink(target):
            return False
        with open(target, "rb") as f:
            f.readline(MAX_SHEBANG + 2)
            return f.readline(200).startswith(MARKER)
    except OSError:
        return False


def ensure(target: str | os.PathLike[str], entry: Entry, *, flags: str = ISOLATED,
           needs: Iterable[str] = COMMON_DEPS, note: str = "", data_root: str | None = None) -> str | None:
    """The launcher for ``entry`` at ``target``, written (atomically, 0755) unless it already holds the right
    text; None when it cannot be made or written, for the caller's fallback. With ``data_root`` the directory
    is made the way everything under the data root is (:func:`ctk_shared.dataroot.makedirs`). Cheap when
    current: the path computation plus one read."""
    from .outputs import write_owned

    target = os.path.abspath(target)
    try:
        paths = import_path()
        text = render(entry, paths, flags=flags, note=note)
        if is_current(target, text):
            return target
        check_importable(paths, entry, needs)  # only before a write: the common call stays one read
    except LauncherError:
        return None
    try:
        if data_root is not None:
            from . import dataroot

            dataroot.makedirs(data_root, os.path.dirname(target))
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        write_owned(target, text, mode=0o755)
    except OSError:
        return None
    return target


# ------------------------------------------------------------------------------------- scripts/setup's part


def console_scripts(dist: str = "ctk") -> dict[str, Entry]:
    """The ``ctk-*`` console scripts that the installed distribution declares (pyproject's
    ``[project.scripts]``), by command name: the one list of commands, read from where pip read it."""
    from importlib import metadata

    found: dict[str, Entry] = {}
    for ep in metadata.distribution(dist).entry_points:
        if ep.group == "console_scripts" and ep.name.startswith("ctk-"):
            try:
                found[ep.name] = Entry.parse(ep.value)
            except LauncherError:
                continue
    return found


def install(dest: str, names: Iterable[str] | None = None, *, check: bool = True) -> dict[str, str]:
    """Install the console scripts (all, or ``names``) as ``-S -P`` launchers in ``dest``. Per command the
    outcome: ``unchanged``, ``written``, ``kept`` (a file there that is neither a link nor a launcher: left
    alone, as setup's links always did) or ``failed: why`` (the caller links the console script instead). A
    new text is checked before it replaces anything: its interpreter must import the entry's module from the
    baked path, so a broken launcher never takes a working link's place."""
    import subprocess

    scripts = console_scripts()
    os.makedirs(dest, exist_ok=True)
    out: dict[str, str] = {}
    for name in (list(names) if names is not None else sorted(scripts)):
        target = os.path.join(dest, name)
        entry = scripts.get(name)
        if entry is None:
            out[name] = "failed: not a console script of the ctk distribution"
            continue
        if os.path.lexists(target) and not os.path.islink(target) and not is_launcher(target):
            out[name] = "kept"
            continue
        try:
            text = text_for(entry, flags=COMMAND, note=name)
        except LauncherError as e:
            out[name] = f"failed: {e}"
            continue
        if is_current(target, text):
            out[name] = "unchanged"
            continue
        if check:
            probe = b"\n".join(text.split(b"\n")[2:-2])  # the launcher minus its #!, marker and call
            p = subprocess.run([sys.executable, *_flags_argv(COMMAND), "-c", probe.decode()], capture_output=True,
                               text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": ""})
            if p.returncode != 0:
                last = (p.stderr.strip().splitlines() or ["?"])[-1]
                out[name] = f"failed: the launcher cannot import {entry.module}: {last}"
                continue
        try:
            from .outputs import write_owned

            write_owned(target, text, mode=0o755)  # replaces a link with the file, never follows it
        except OSError as e:
            out[name] = f"failed: {e}"
            continue
        out[name] = "written"
    return out


def _flags_argv(flags: str) -> list[str]:
    return [f"-{c}" for c in flags.lstrip("-")]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ctk_shared.launchers install DEST [NAME...]``: one ``NAME STATUS`` line per command on
    stdout; exit 0 even when some failed (setup links those)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "install":
        sys.stderr.write("usage: python -m ctk_shared.launchers install DEST [NAME...]\n")
        return 2
    try:
        results = install(args[1], args[2:] or None)
    except Exception as e:  # noqa: BLE001 - setup falls back to links for everything on any failure
        sys.stderr.write(f"launchers: {type(e).__name__}: {e}\n")
        return 1
    for name, status in results.items():
        sys.stdout.write(f"{name} {status}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
