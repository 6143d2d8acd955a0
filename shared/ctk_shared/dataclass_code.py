"""The methods that ``@dataclass`` writes, compiled once per install instead of once per command.

``dataclasses`` builds each generated method (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, a frozen
class's ``__setattr__``/``__delattr__``) from source text and compiles it with ``exec`` every time a class is
defined. The ~43 dataclasses a ``ctk-run --rm`` imports cost ~29 ms of CPU that way, more than the whole
grpc import; with their code objects kept here it is ~6 ms.

How: the ``exec`` that the ``dataclasses`` module calls is replaced, in that module only, by one that looks
the source text up in a table of code objects compiled from exactly that text, and compiles (and remembers)
whatever is not there. A hit runs the same code a compile would have produced, so behaviour cannot differ;
a changed class has a different text and simply misses.

The tables live where Python keeps its own bytecode, one file per module that defines dataclasses in
``ctk_shared/__pycache__/dataclass-code/`` (a process reads only the modules it imports), each with the
interpreter's magic number in front (another Python ignores it), written the way ``.pyc`` files are (only
when ``sys.dont_write_bytecode`` is off, atomically, silently skipped where the directory is read-only), and
trusted exactly as far as the ``.pyc`` files beside them (a file that another user, a group or everyone
may write is ignored). ``scripts/setup`` fills it by importing every
module once (``ctk_shared.dataclass_code.warm``); a process that meets new texts adds them at exit.
"""
from __future__ import annotations

import marshal
import os
import sys
import types
from importlib.util import MAGIC_NUMBER as _MAGIC
from typing import Any

_DIR = os.path.join(os.path.dirname(__file__), "__pycache__", "dataclass-code")
_SUFFIX = f".{sys.implementation.cache_tag}.2.bin"  # .2: tables of code compiled with real annotations
_MAX_BYTES = 4 << 20  # a table far beyond any real module's is not read

Table = dict[str, types.CodeType]  # source text -> its code, for the dataclasses of one module
_known: dict[str, Table] = {}
_learned: dict[str, Table] = {}


def _path(module: str) -> str | None:
    if not module or module.startswith(".") or "/" in module or "\0" in module or len(module) > 200:
        return None
    return os.path.join(_DIR, module + _SUFFIX)


def _read(module: str) -> Table:
    """The stored table of ``module``; empty unless its file is a regular one that only its owner (root or
    this user) can write, with this interpreter's magic number, holding source texts and code objects."""
    path = _path(module)
    if path is None:
        return {}
    from .errors import CtkError
    from .outputs import open_owned  # never through a link, only a regular file

    try:
        with os.fdopen(open_owned(path, os.O_RDONLY), "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
                return {}
            if f.read(len(_MAGIC)) != _MAGIC:
                return {}
            table = marshal.loads(f.read(_MAX_BYTES))
    except (OSError, CtkError, ValueError, EOFError, TypeError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, types.CodeType)}


def _table(module: str) -> Table:
    table = _known.get(module)
    if table is None:
        table = _known[module] = _read(module)
    return table


def _exec(source: Any, globals_: dict[str, Any] | None = None, locals_: dict[str, Any] | None = None) -> None:
    if not isinstance(source, str):
        exec(source, globals_, locals_)
        return
    module = str((globals_ or {}).get("__name__", ""))
    table = _table(module)
    code = table.get(source)
    if code is None:
        # dont_inherit: this module's ``from __future__ import annotations`` must not turn the generated
        # methods' annotations into strings, as exec of the text in dataclasses does not
        code = table[source] = compile(source, "<string>", "exec", dont_inherit=True)
        _learned.setdefault(module, {})[source] = code
    exec(code, globals_, locals_)


def _write(module: str, table: Table) -> None:
    path = _path(module)
    if path is None or not table:
        return
    try:
        from .outputs import write_owned

        os.makedirs(_DIR, exist_ok=True)
        write_owned(path, _MAGIC + marshal.dumps(table), mode=0o644)
    except Exception:  # noqa: BLE001 -- a read-only install, or a name taken by something else: run uncached
        pass


def _save() -> None:
    """Add what this process compiled to the tables on disk (at exit, as Python writes ``.pyc`` files)."""
    if sys.dont_write_bytecode:
        return
    for module, learned in _learned.items():
        _write(module, {**_read(module), **learned})
    _learned.clear()


def install() -> None:
    """Route ``dataclasses``' compiles through the tables, now if ``dataclasses`` is loaded, else as soon as it
    is (a process that defines no dataclass, such as the logger, never loads it and its ``inspect``: ~4 MiB of
    a long-lived process's memory); idempotent."""
    module = sys.modules.get("dataclasses")
    if module is not None:
        _patch(module)
    elif _WhenImported not in sys.meta_path:
        sys.meta_path.insert(0, _WhenImported)  # a finder class with static methods


def _patch(dataclasses: types.ModuleType) -> None:
    if getattr(dataclasses, "exec", None) is _exec:
        return
    setattr(dataclasses, "exec", _exec)  # noqa: B010 -- a module global that shadows the builtin there
    import atexit

    atexit.register(_save)


class _WhenImported:
    """A one-shot import hook: finds ``dataclasses`` with the finders after it, and patches it once loaded."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        if name != "dataclasses":
            return None
        try:
            sys.meta_path.remove(_WhenImported)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _PatchAfterLoad(spec.loader)
                return spec
        return None


class _PatchAfterLoad:
    """The loader of ``dataclasses``, then :func:`_patch` on the fresh module."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        _patch(module)


def warm() -> None:
    """Import every ctk module, so that the tables hold every dataclass of the install (``scripts/setup``)."""
    import importlib
    import pkgutil
    import shutil

    install()
    shutil.rmtree(_DIR, ignore_errors=True)  # from nothing: texts of classes that changed since are dropped
    _known.clear()
    _learned.clear()
    for top in ("ctk_shared", "ctk_pull", "ctk_run", "ctk_net", "ctk_build", "ctk_crypt"):
        try:
            pkg = importlib.import_module(top)
        except ImportError:
            continue
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{top}."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 -- an optional extra not installed: its classes stay uncached
                continue
    for module, table in _known.items():
        _write(module, table)
    _learned.clear()
    print(f"{sum(map(len, _known.values()))} dataclass methods of {len(_known)} modules compiled into {_DIR}")
