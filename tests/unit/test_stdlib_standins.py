"""ctk_shared.stdlib_standins: the stand-ins for ``inspect`` and ``uuid`` give what the real modules give, and
turn into them at the first use of anything else (issue 20: ~6 ms of every command's start)."""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

from ctk_shared.stdlib_standins import cleandoc
from tests.unit.test_help_lines import TOOLS, commands

EDGES = ["", " ", "\n", "one line", "  lead\n    two\n      three\n", "\tTabbed\n\t\tdeeper\n\tback",
         "first\n\n   second\n\n\n   third\n   ", "\n\n  only after blanks\n  more\n\n", "x\n   \n  y",
         "a\n\tb\n        c", "  \u00e9t\u00e9\n    caf\u00e9", "line\r\n  next\r\n", "a\n  b\n      \n",
         "   \n  x\n", "\n      \n  y\n  z", "only\n\n"]


@pytest.mark.parametrize("text", EDGES)
def test_cleandoc_matches_inspect_on_edge_cases(text: str) -> None:
    assert cleandoc(text) == inspect.cleandoc(text)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_cleandoc_matches_inspect_on_every_command_docstring(tool: str) -> None:
    texts = [c.callback.__doc__ for _, c in commands(tool) if c.callback is not None and c.callback.__doc__]
    assert len(texts) >= 3
    for text in texts:
        assert cleandoc(text) == inspect.cleandoc(text), text


def _fresh(code: str) -> str:
    """``code`` run by an interpreter without site (as the launchers start one), ctk on its path."""
    from ctk_shared.launchers import import_path

    prelude = f"import sys\nsys.path.extend({list(import_path())!r})\n"
    p = subprocess.run([sys.executable, "-S", "-c", prelude + textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_click_and_dataclasses_load_without_the_real_modules_and_get_them_when_used() -> None:
    out = _fresh("""
        import ctk_shared, click, dataclasses
        standin = sys.modules['inspect']
        assert type(standin).__name__ == 'StandIn' and type(sys.modules['uuid']).__name__ == 'StandIn'
        assert 'ast' not in sys.modules and 'platform' not in sys.modules
        @click.command()
        @click.option('--x', help='''First.
                Second, indented.''')
        def cmd(x): '''Doc.'''
        assert cmd.params[0].help == 'First.\\nSecond, indented.'
        @dataclasses.dataclass
        class NoDoc:
            a: int
            b: str = 'x'
        # the first name the stand-in lacks brings the real module, in sys.modules and behind the stand-in
        assert NoDoc.__doc__ == "NoDoc(a: int, b: str = 'x')", NoDoc.__doc__
        import inspect
        assert type(inspect).__name__ == 'module' and 'ast' in sys.modules
        assert standin.getsource is inspect.getsource and standin.cleandoc is inspect.cleandoc
        from inspect import isfunction
        assert isfunction(lambda: 0)
        print('ok')
    """)
    assert out == "ok\n"


def test_the_uuid_stand_in_builds_and_recognises_real_uuids() -> None:
    out = _fresh("""
        import ctk_shared, click
        value = click.UUID.convert('12345678-1234-5678-1234-567812345678', None, None)
        import uuid
        assert type(uuid).__name__ == 'module' and type(value) is uuid.UUID
        assert click.UUID.convert(value, None, None) is value
        print(value)
    """)
    assert out == "12345678-1234-5678-1234-567812345678\n"


def test_a_process_that_imported_the_real_module_first_keeps_it() -> None:
    out = _fresh("""
        import inspect, uuid
        import ctk_shared
        assert sys.modules['inspect'] is inspect and sys.modules['uuid'] is uuid
        print('ok')
    """)
    assert out == "ok\n"


def test_threads_that_use_the_stand_in_at_once_all_get_the_real_module() -> None:
    out = _fresh("""
        import threading
        import ctk_shared
        standin = sys.modules['inspect']
        start, got = threading.Barrier(8), []
        def use():
            start.wait()
            got.append(standin.isfunction(use) and standin.signature(use) is not None)
        threads = [threading.Thread(target=use) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert got == [True] * 8, got
        assert type(sys.modules['inspect']).__name__ == 'module'
        print('ok')
    """)
    assert out == "ok\n"
