"""The shell front of ctk-run-logger (lifecycle.logger_launcher): the shim may start the container as soon as
the front runs, not after Python's start-up, except for a container with a health check; the logger behind it
still copies everything and flushes on SIGTERM."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from ctk_run import lifecycle

from .test_logger_process import Logger, by_stream, wait_for


def fake_launcher(tmp_path: Path) -> Path:
    """Records its arguments and whether fd 5 (the ready pipe) is still open, then lingers a while."""
    script = tmp_path / "bin" / "fake-logger"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text('#!/bin/sh\n'
                      f'if [ -e /proc/self/fd/5 ]; then five=open; else five=closed; fi\n'
                      f'echo "$five $*" > {tmp_path}/seen\n'
                      'sleep 3\n')
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("health", [False, True], ids=["no-check", "health-check"])
def test_front_is_ready_before_the_launcher_unless_a_check_must_be_reset(tmp_path, health):
    front = lifecycle._ready_front(str(tmp_path), str(fake_launcher(tmp_path)))
    assert front is not None and os.access(front, os.X_OK)
    args = ["log", "/x/c.log", *(["health", "1"] if health else []), "address", "/run/c.sock"]
    lg = Logger([front], args)
    try:
        assert wait_for(lambda: (tmp_path / "seen").exists() and (tmp_path / "seen").read_text().endswith("\n"))
        seen = (tmp_path / "seen").read_text().split()
        if health:  # the logger itself closes fd 5, after resetting the health state
            assert seen == ["open", *args]
        else:
            assert seen == ["closed", "ready", "1", *args]
            lg.wait_ready(timeout=1)  # the pipe is at EOF while the launcher still runs
    finally:
        lg.proc.kill()
        lg.finish()


def test_front_is_rewritten_only_when_its_launcher_changes(tmp_path):
    launcher = tmp_path / "a b" / "ctk-run-logger"
    launcher.parent.mkdir()
    first = lifecycle._ready_front(str(tmp_path), str(launcher))
    assert first == str(tmp_path / "a b" / "ctk-run-logger-front")
    assert f"exec '{launcher}' ready 1" in Path(first).read_text()  # quoted for sh
    before = os.stat(first).st_mtime_ns
    time.sleep(0.01)
    assert lifecycle._ready_front(str(tmp_path), str(launcher)) == first
    assert os.stat(first).st_mtime_ns == before
    Path(first).write_text("#!/bin/sh\nexec something-else\n")  # changed under us: put back
    assert lifecycle._ready_front(str(tmp_path), str(launcher)) == first
    assert f"exec '{launcher}' ready 1" in Path(first).read_text()


def test_logger_behind_the_front_copies_and_flushes_on_sigterm(tmp_path):
    exe = lifecycle.logger_launcher(str(tmp_path / "data"))
    assert exe is not None and exe.endswith("ctk-run-logger-front")
    log = tmp_path / "c.log"
    lg = Logger([exe], ["log", str(log)])
    lg.wait_ready()
    os.write(lg.out_w, b"first\n")
    os.write(lg.err_w, b"to stderr\n")
    assert wait_for(lambda: log.exists() and log.read_bytes().count(b"\n") == 2)
    os.write(lg.out_w, b"last, no newline")
    time.sleep(0.2)
    lg.proc.send_signal(signal.SIGTERM)
    code, err = lg.finish()
    assert code == 0, err
    assert by_stream(log) == {"stdout": ["first\n", "last, no newline"], "stderr": ["to stderr\n"]}
