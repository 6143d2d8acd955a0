"""Modules that grpc and protobuf import at load time and ctk never uses, loaded on first use instead.

- grpcio's package ``__init__`` ends with ``from grpc import aio``, and its Cython core imports ``asyncio``;
  neither is touched by the synchronous channels ctk uses. Those ~55 modules were about 35 ms of CPU per
  ``ctk-run --rm`` (same-run A/B, 15 runs each; ``python -X importtime`` shows where).
- protobuf's ``descriptor_pool`` imports the pure-Python message backend (``python_message``, and with it
  ``text_format`` and the Python codecs: 19 modules, ~7 ms) even when the C backend (upb) does all the work.

Each of these names is bound to a stand-in that loads the real module the first time anything is looked
up on it, so a caller that does need one still gets it, only later. ``asyncio`` and ``grpc.aio`` are
stand-ins only while grpc loads, so a later ``import asyncio`` anywhere gets the real module as usual.
"""
from __future__ import annotations

import sys
import threading
import types
from typing import Any

_lock = threading.Lock()


class _OnFirstUse(types.ModuleType):
    """Stands in for a module until an attribute is read from it, then hands over to the real one."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # the import machinery probing a module (__path__, __spec__, …)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(_import(self.__name__), attr)


def _import(name: str) -> types.ModuleType:
    """``import name`` by the import statement's own path, so ``python -X importtime`` still logs it."""
    __import__(name)
    return sys.modules[name]


def grpc() -> types.ModuleType:
    """``grpc``, imported once per process without loading asyncio or grpc.aio."""
    loaded = sys.modules.get("grpc")
    if loaded is not None:
        return loaded
    with _lock:
        if "grpc" in sys.modules:
            return sys.modules["grpc"]
        if "asyncio" in sys.modules:  # already paid for by someone else: nothing to save
            return _import("grpc")
        stand_ins = {name: _OnFirstUse(name) for name in ("asyncio", "grpc.aio")}
        sys.modules.update(stand_ins)
        try:
            return _import("grpc")
        finally:
            for name, stand_in in stand_ins.items():
                if sys.modules.get(name) is stand_in:
                    del sys.modules[name]


def protobuf_python_backend() -> None:
    """Defer protobuf's pure-Python message backend; call before the first generated stub is imported."""
    name = "google.protobuf.internal.python_message"
    if name in sys.modules or "google.protobuf.descriptor_pool" in sys.modules:
        return
    sys.modules.setdefault(name, _OnFirstUse(name))
