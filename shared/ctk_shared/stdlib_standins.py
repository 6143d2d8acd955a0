"""Stand-ins for two stdlib modules that every command imports through click and dataclasses but almost never uses.

* ``inspect`` (~4 ms with ast and dis): click.core imports it for ``cleandoc``, which it runs on the help text of
  every option it defines (~450 for ctk-run), and ``dataclasses`` imports it for ``signature``, which it runs
  only for a class without a docstring (ctk's dataclasses have one; a test of tests/integration/run/
  test_run_processes.py keeps ``run -d`` free of the real module);
* ``uuid`` (~2 ms with platform): click.types imports it to name ``uuid.UUID`` in the base of its UUID
  parameter type, which ctk never uses.

While a module is not imported yet, :func:`install` puts a stand-in in its place in ``sys.modules``. The
stand-in answers the few names above itself (``cleandoc`` gives what inspect's gives; ``UUID`` forwards
construction and isinstance to the real class). Any other name imports the real module on first use, puts
it into ``sys.modules``, copies its names into the stand-in and answers from it: code that holds the stand-in
keeps working and only pays for the import when it needs it. Where the module is loaded already (pytest,
a debugger) nothing changes.
"""
from __future__ import annotations

import _thread
import sys
import types
from typing import Any


def cleandoc(doc: str) -> str:
    """``inspect.cleandoc``: tabs expanded, the first line's leading blanks and the other lines' common
    indentation removed, then the lines left empty dropped at both ends (a line of blanks deeper than the
    common indentation is kept, as inspect keeps it)."""
    lines = doc.expandtabs().split("\n")
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(indents, default=0)
    lines = [lines[0].lstrip(), *(line[cut:] for line in lines[1:])]
    start, end = 0, len(lines)
    while end > start and not lines[end - 1]:
        end -= 1
    while start < end and not lines[start]:
        start += 1
    return "\n".join(lines[start:end])


class StandIn(types.ModuleType):
    """A not-yet-imported module: its own few names, and the real module's for everything else."""

    def __getattr__(self, name: str) -> Any:
        if name == "__path__":
            raise AttributeError(name)  # a plain module, as the real one is: the import system asks for it
        return getattr(self.load(), name)

    def load(self) -> types.ModuleType:
        """The real module, imported now if no one has yet; from then on the stand-in has all its names."""
        real = _loaded.get(self.__name__)
        if real is not None:
            return real
        with _lock:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
        import importlib

        try:
            # also waits for another thread's import of it to finish, where one is under way
            real = importlib.import_module(self.__name__)
        except BaseException:
            sys.modules.setdefault(self.__name__, self)
            raise
        vars(self).update({k: v for k, v in vars(real).items()
                           if k not in ("__name__", "__spec__", "__loader__", "__builtins__")})
        _loaded[self.__name__] = real
        return real


_loaded: dict[str, types.ModuleType] = {}
_lock = _thread.allocate_lock()


class _ForwardingType(type):
    """The metaclass of a stand-in class: building an instance or checking one goes to the real class."""

    real_module: StandIn
    real_name: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return getattr(cls.real_module.load(), cls.real_name)(*args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, getattr(cls.real_module.load(), cls.real_name))


def _standin_class(module: StandIn, name: str) -> type:
    return _ForwardingType(name, (), {"real_module": module, "real_name": name,
                                      "__doc__": f"{module.__name__}.{name} until {module.__name__} is imported"})


def install() -> None:
    """Put the stand-ins in place for the modules no one has imported yet; idempotent."""
    if "inspect" not in sys.modules:
        inspect = StandIn("inspect", "stands for inspect until a name other than cleandoc is used")
        inspect.cleandoc = cleandoc  # type: ignore[attr-defined]
        sys.modules["inspect"] = inspect
    if "uuid" not in sys.modules:
        uuid = StandIn("uuid", "stands for uuid until a name other than UUID is used")
        uuid.UUID = _standin_class(uuid, "UUID")  # type: ignore[attr-defined]
        sys.modules["uuid"] = uuid
