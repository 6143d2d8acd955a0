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

from .collector import launcher_line as collector_launcher_line

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
    for an editable install, site-packages otherwise), then the directories this process imports grpc,
    protobuf and click from, then (when ``site`` ran) this interpreter's site-packages. The same answer from a
    process started with or without ``site``, and from a launcher's other interpreter (:func:`choose_python`),
    so a launcher is rewritten only when the install moves."""
    import importlib.util

    paths: list[str] = []
    for name in (*packages, *COMMON_DEPS):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
            paths.append(str(Path(spec.origin).resolve().parent.parent))
        elif name in COMMON_DEPS:  # a namespace package (google): every directory it spans
            paths.extend(str(Path(p).resolve().parent) for p in spec.submodule_search_locations or ())
    if not sys.flags.no_site:
        import site

        paths.extend(p for p in site.getsitepackages() if os.path.isdir(p))
    return tuple(dict.fromkeys(paths))


def running_interpreter() -> str:
    """The interpreter to name in a launcher this process writes (the logger's, the hook's): the one running
    it when this process was started without ``site`` (by a launcher, which may run a faster build of the same
    Python than ``sys.executable``: :func:`choose_python`), and so has shown that it imports ctk from
    :func:`import_path`; else ``sys.executable``."""
    if sys.flags.no_site:
        try:
            return os.readlink("/proc/self/exe")
        except OSError:
            pass
    return sys.executable


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
           note: str = "", home: str | None = None) -> bytes:
    """The launcher's text. LauncherError when the interpreter is not an absolute path or the ``#!`` line
    would be longer than any kernel reads whole. With ``home`` (the installation's own interpreter, when the
    ``#!`` line names another one) the launched process sees ``home`` as ``sys.executable``, so the children
    it starts with ``python -m`` (which need ``site`` to find ctk) and the console scripts it looks for beside
    its interpreter are the installation's, as without a launcher."""
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
            + (collector_launcher_line() if flags == COMMAND else "")
            + f"import sys\nsys.path.extend({list(paths)!r})\n"
            + (f"sys.executable = {home!r}\n" if home and home != python else "")
            + f"from {entry.module} import {entry.function}\nsys.exit({call})\n").encode()


def text_for(entry: Entry, *, flags: str = ISOLATED, needs: Iterable[str] = COMMON_DEPS, note: str = "",
             python: str | None = None) -> bytes:
    """:func:`render` for this installation, after checking that the entry's package and ``needs`` import
    from the computed path (LauncherError naming what is missing otherwise)."""
    paths = import_path()
    check_importable(paths, entry, needs)
    return render(entry, paths, flags=flags, note=note, python=python, home=sys.executable)


def _probe_cpu(python: str, probe: str, runs: int) -> float | None:
    """The least CPU seconds of ``runs`` runs of ``python -S -P -c probe``; None if any run fails."""
    import resource
    import subprocess

    best = None
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            p = subprocess.run([python, *_flags_argv(COMMAND), "-c", probe], capture_output=True, timeout=60,
                               check=False, env={**os.environ, "PYTHONPATH": ""})
        except (OSError, subprocess.SubprocessError):
            return None
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            return None
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        best = cpu if best is None else min(best, cpu)
    return best


def choose_python(probe: str, home: str | None = None, *, runs: int = 5,
                  candidates: Sequence[str] | None = None, current: str | None = None) -> str:
    """The interpreter for the user's launchers: ``home`` (the installation's, ``sys.executable``), or another
    build of the same Python on this machine (``/usr/bin/pythonX.Y``, ``/usr/local/bin/pythonX.Y``) that runs
    ``probe`` (a launcher's imports, from the installation's own site-packages) with clearly less CPU.

    Why: a CPython built without profile-guided optimisation (pyenv's default build, as here) spends ~15-40%
    more CPU on the same imports than Debian's PGO/LTO build of the same version, and a ctk command is mostly
    imports (issue 20: ``ctk-run --rm`` 0.176 s of CPU vs 0.153 s). Same ``X.Y`` means the same bytecode
    magic and extension ABI, and the probe proves that grpc's and protobuf's compiled modules load in it.
    Only the launched command runs there; ``home`` stays its ``sys.executable`` (:func:`render`).
    ``current``: the interpreter the launchers name now; it stays unless another one is clearly cheaper than
    it too, so that running setup again does not flip the launchers on timing noise."""
    home = home or sys.executable
    tag = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    check = f"import sys\nassert sys.implementation.cache_tag == {sys.implementation.cache_tag!r}\n"
    # and the compiled parts of what every command loads: grpc's core and protobuf's backend
    probe += "\nimport grpc\nfrom google.protobuf import descriptor_pb2\n"
    seen = {os.path.realpath(home)}
    others = []
    for cand in candidates if candidates is not None else [os.path.join(d, tag) for d in ("/usr/bin", "/usr/local/bin")]:
        real = os.path.realpath(cand)
        if real in seen or not os.access(cand, os.X_OK) or is_launcher(cand):
            continue
        seen.add(real)
        others.append(cand)
    if not others:
        return home
    base = _probe_cpu(home, check + probe, runs)
    if base is None:
        return home
    costs = {home: base}
    for cand in others:
        cpu = _probe_cpu(cand, check + probe, runs)
        if cpu is not None:
            costs[cand] = cpu
    best = home
    for cand, cpu in costs.items():
        if cpu < 0.9 * costs[best]:
            best = cand
    if current is not None and current in costs and costs[best] >= 0.9 * costs[current]:
        return current
    return best


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


def _launcher_shebang(target: str | os.PathLike[str]) -> bytes | None:
    """The ``#!`` line of the launcher at ``target``; None unless it is a regular file this module wrote (its
    second line starts with :data:`MARKER`)."""
    try:
        if os.path.islink(target):
            return None
        with open(target, "rb") as f:
            first = f.readline(MAX_SHEBANG + 2)
            return first if f.readline(200).startswith(MARKER) else None
    except OSError:
        return None


def interpreter_of(target: str | os.PathLike[str]) -> str | None:
    """The interpreter on the ``#!`` line of the launcher at ``target``; None when it is not one of ours."""
    first = _launcher_shebang(target)
    words = first[2:].split() if first is not None and first.startswith(b"#!") else []
    return words[0].decode("utf-8", "replace") if words else None


def is_launcher(target: str | os.PathLike[str]) -> bool:
    """``target`` is a regular file that this module wrote (its second line starts with :data:`MARKER`)."""
    return _launcher_shebang(target) is not None


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
        text = render(entry, paths, flags=flags, note=note, python=running_interpreter(),
                      home=sys.executable)
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


def install(dest: str, names: Iterable[str] | None = None, *, check: bool = True,
            python: str | None = None) -> dict[str, str]:
    """Install the console scripts (all, or ``names``) as ``-S -P`` launchers in ``dest``, run by ``python`` or
    by :func:`choose_python`'s pick (``CTK_LAUNCHER_PYTHON`` names one: ``home`` for this interpreter). Per command the
    outcome: ``unchanged``, ``written``, ``kept`` (a file there that is neither a link nor a launcher: left
    alone, as setup's links always did) or ``failed: why`` (the caller links the console script instead). A
    new text is checked before it replaces anything: its interpreter must import the entry's module from the
    baked path, so a broken launcher never takes a working link's place."""
    import subprocess

    scripts = console_scripts()
    os.makedirs(dest, exist_ok=True)
    python = python or os.environ.get("CTK_LAUNCHER_PYTHON") or None
    if python == "home":
        python = sys.executable
    if python is None and "ctk-run" in scripts:
        try:
            sample = text_for(scripts["ctk-run"], flags=COMMAND)
            python = choose_python(_probe_of(sample).decode(), current=interpreter_of(os.path.join(dest, "ctk-run")))
        except LauncherError:
            python = None
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
            text = text_for(entry, flags=COMMAND, note=name, python=python)
        except LauncherError as e:
            out[name] = f"failed: {e}"
            continue
        if is_current(target, text):
            out[name] = "unchanged"
            continue
        if check:
            p = subprocess.run([python or sys.executable, *_flags_argv(COMMAND), "-c", _probe_of(text).decode()],
                               capture_output=True, text=True, timeout=60, check=False,
                               env={**os.environ, "PYTHONPATH": ""})
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


def _probe_of(text: bytes) -> bytes:
    """A launcher's imports without its call: everything between the marker line and ``sys.exit``."""
    return b"\n".join(text.split(b"\n")[2:-2])


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
