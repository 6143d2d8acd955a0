"""What ctk does to import less per command (issue 20) must not change what the imported code does:
dataclasses built from the stored table behave as compiled ones, a damaged table is ignored, and the
modules grpc and protobuf load for nothing are still there for whoever does use them."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from ctk_shared import dataclass_code

CLASS_SOURCE = textwrap.dedent("""
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Point:
        x: int
        y: int = 2
        tags: tuple[str, ...] = field(default=())
""")


def _define() -> type:
    """Point, defined anew in the module ``probe_module`` (as an import of that module would)."""
    module = types.ModuleType("probe_module")
    sys.modules["probe_module"] = module  # dataclasses reads the module's globals from here
    try:
        exec(compile(CLASS_SOURCE, "probe", "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    finally:
        del sys.modules["probe_module"]
    return module.Point  # type: ignore[no-any-return]


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A private table directory (the path of probe_module's file); the list records every source text
    compiled while the test runs."""
    monkeypatch.setattr(dataclass_code, "_DIR", str(tmp_path / "dataclass-code"))
    path = Path(dataclass_code._path("probe_module") or "")
    monkeypatch.setattr(dataclass_code, "_known", {})
    monkeypatch.setattr(dataclass_code, "_learned", {})
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    compiled: list[str] = []

    def counting_compile(source: str, filename: str, mode: str, **options):  # type: ignore[no-untyped-def]
        compiled.append(source)
        return compile(source, filename, mode, **options)

    monkeypatch.setattr(dataclass_code, "compile", counting_compile, raising=False)
    return path, compiled


def _reload() -> None:
    """As a new process would start: nothing known until a module defines its first class."""
    dataclass_code._known.clear()


def test_dataclasses_go_through_the_table() -> None:
    assert dataclasses.exec is dataclass_code._exec  # type: ignore[attr-defined]  # installed by ctk_shared


def test_a_stored_class_compiles_nothing_and_behaves_the_same(table: tuple[Path, list[str]]) -> None:
    path, compiled = table
    first = _define()
    assert len(compiled) >= 5  # __init__, __repr__, __eq__, __hash__, __setattr__, __delattr__
    dataclass_code._save()
    assert path.is_file()

    _reload()
    compiled.clear()
    again = _define()
    assert compiled == []  # every method came from the table
    a, b = again(1, tags=("t",)), again(1, 2, ("t",))
    assert a == b and hash(a) == hash(b) and a != again(3)
    assert repr(a) == repr(first(1, tags=("t",))) == "Point(x=1, y=2, tags=('t',))"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.x = 5  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(again)] == ["x", "y", "tags"]
    assert dataclasses.replace(a, y=7).y == 7
    # the annotations of the methods are the classes, not the names the generated text gives them
    assert again.__init__.__annotations__ == first.__init__.__annotations__ == \
        {"x": int, "y": int, "tags": tuple[str, ...], "return": None}


@pytest.mark.parametrize("damage", ["wrong magic", "truncated", "not a table"])
def test_a_damaged_table_is_ignored(table: tuple[Path, list[str]], damage: str) -> None:
    path, compiled = table
    _define()
    dataclass_code._save()
    data = path.read_bytes()
    path.write_bytes({"wrong magic": b"\0\0\0\0" + data[4:], "truncated": data[: len(data) // 2],
                      "not a table": data[:4] + b"\xe9\x00"}[damage])
    _reload()
    compiled.clear()
    Point = _define()
    assert compiled  # compiled again, as without a table
    assert Point(1) == Point(1, 2)


def test_nothing_is_written_when_python_writes_no_bytecode(table: tuple[Path, list[str]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = table
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    _define()
    dataclass_code._save()
    assert not path.exists()


def test_grpc_comes_without_asyncio_and_both_still_work_for_who_asks() -> None:
    code = textwrap.dedent("""
        import sys
        from ctk_shared.containerd import deferred
        grpc = deferred.grpc()
        assert grpc.insecure_channel and grpc.StatusCode.NOT_FOUND
        assert 'asyncio' not in sys.modules and 'grpc.aio' not in sys.modules, 'loaded with grpc'
        assert grpc.aio.AioRpcError.__name__ == 'AioRpcError'  # the stand-in hands over on first use
        import asyncio
        assert asyncio.run(asyncio.sleep(0, result=7)) == 7
        import grpc.aio
        assert grpc.aio.insecure_channel
        print('ok')
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr


def test_protobufs_python_backend_loads_when_used() -> None:
    code = textwrap.dedent("""
        import sys
        import ctk_shared.containerd
        from google.protobuf import timestamp_pb2
        ts = timestamp_pb2.Timestamp(seconds=5)
        assert timestamp_pb2.Timestamp.FromString(ts.SerializeToString()).seconds == 5
        assert 'google.protobuf.text_format' not in sys.modules, 'loaded for nothing'
        from google.protobuf import text_format
        assert text_format.MessageToString(ts).strip() == 'seconds: 5'
        from google.protobuf.internal import python_message
        assert python_message.__name__ == 'google.protobuf.internal.python_message'
        print('ok')
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr


def test_a_process_without_dataclasses_never_loads_them_and_one_that_does_gets_the_table() -> None:
    """A process that defines no dataclass must not load dataclasses (nor the real inspect: ~4 MiB) by importing
    ctk_shared; the first import of dataclasses afterwards is routed through the table."""
    code = textwrap.dedent("""
        import sys
        import ctk_shared
        assert 'dataclasses' not in sys.modules, 'loaded by ctk_shared'
        assert type(sys.modules['inspect']).__name__ == 'StandIn', 'the real inspect loaded by ctk_shared'
        import dataclasses
        from ctk_shared import dataclass_code
        assert dataclasses.exec is dataclass_code._exec
        assert dataclass_code._WhenImported not in sys.meta_path  # one-shot
        @dataclasses.dataclass(frozen=True)
        class P:
            x: int
        assert P(1) == P(1) and repr(P(2)) == 'P(x=2)'
        print('ok')
    """)
    from ctk_shared.launchers import import_path

    p = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.extend({list(import_path())!r})\n" + code],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr


def test_the_collector_waits_for_the_imports_and_then_runs_as_always() -> None:
    """ctk_shared.collector: a command starts with a threshold no import reaches, and is back to the default
    once the first containerd call is made; the launchers of user commands say so in their first line, those
    of the logger and the hook (long-lived, never dialing in-process) do not."""
    import gc

    from ctk_shared import collector, launchers

    code = textwrap.dedent("""
        import gc
        from ctk_shared import collector
        from ctk_shared.containerd.channel import Connection
        assert gc.get_threshold() == (700, 10, 10)
        collector.imports_done()
        assert gc.get_threshold() == (700, 10, 10), 'no startup: nothing to undo'
        collector.startup()
        assert gc.get_threshold()[0] == collector.STARTUP_THRESHOLD
        Connection('/nonexistent.sock')  # creating the object dials nothing
        assert gc.get_threshold()[0] == collector.STARTUP_THRESHOLD
        c = Connection('/dev/null')
        c._check_socket = lambda: None  # a channel object is made without a daemon; grpc connects lazily
        c.connect_soon()  # dialing ahead of the first call leaves the rest of the imports their threshold
        assert gc.get_threshold()[0] == collector.STARTUP_THRESHOLD
        c.callable('unary_unary', '/x.v1.X/Get', type('R', (), {'FromString': staticmethod(bytes)}))
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() > 0
        print('ok')
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr
    entry = launchers.Entry("ctk_run.cli", "main")
    command = launchers.render(entry, ["/x"], flags=launchers.COMMAND).decode().splitlines()
    hook = launchers.render(entry, ["/x"], flags=launchers.ISOLATED).decode().splitlines()
    assert command[2].startswith(f"import gc; gc.set_threshold({collector.STARTUP_THRESHOLD}")
    assert not any("gc." in line for line in hook)
    assert gc.isenabled()
