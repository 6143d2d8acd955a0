"""ctk_shared.cli.main: a tool's process ends without the interpreter's teardown (os._exit) once the command is
done, with its exit code (also one the command passed to sys.exit itself), its output flushed and the atexit
handlers run; a command that leaves a non-daemon thread running gets the ordinary exit, which waits for it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROG = textwrap.dedent("""
    import atexit, os, sys, threading, time
    import click
    from ctk_shared import cli as shared_cli

    class Teardown:
        def __del__(self):  # runs in the interpreter's teardown only
            sys.stderr.write("teardown\\n")

    keep = Teardown()
    MARKER = os.environ["MARKER"]
    atexit.register(lambda: open(MARKER, "w").write("atexit ran"))

    @click.command()
    @click.argument("how")
    def cmd(how):
        sys.stdout.write("partial line, no newline")  # must be flushed before os._exit
        if how == "exit7":
            sys.exit(7)
        if how == "thread":
            def late():
                time.sleep(0.5)
                open(MARKER + ".thread", "w").write("joined")
            threading.Thread(target=late).start()

    shared_cli.main(cmd, "ctk-test")
""")


def _run(tmp_path: Path, how: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "prog.py"
    script.write_text(PROG)
    env = {**os.environ, "MARKER": str(tmp_path / "marker")}
    return subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=60, env=env)


def test_exit_skips_the_teardown_but_not_atexit_or_the_output(tmp_path):
    for how, want in (("ok", 0), ("exit7", 7)):
        p = _run(tmp_path, how)
        assert p.returncode == want, p.stderr
        assert p.stdout == "partial line, no newline"
        assert "teardown" not in p.stderr  # os._exit: no module teardown
        assert (tmp_path / "marker").read_text() == "atexit ran"
        (tmp_path / "marker").unlink()


def test_a_running_thread_gets_the_ordinary_exit(tmp_path):
    p = _run(tmp_path, "thread")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "marker.thread").read_text() == "joined"  # the interpreter waited for it
    assert "teardown" in p.stderr
