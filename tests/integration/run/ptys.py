"""ctk-run under a pseudo-terminal of a known size, as a person at a terminal runs it (python's ``pty``)."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from typing import Any


class PtyRun:
    """``argv`` with stdin and stdout (and stderr, unless ``stderr`` is given) on a new pty of ``rows`` × ``cols``."""

    def __init__(self, argv: list[str], env: dict[str, str], *, rows: int = 33, cols: int = 97,
                 stderr: Any = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=stderr if stderr is not None else slave,
                                     env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.out = b""

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every holder of the other side is gone
            return False
        self.out += data
        return bool(data)

    def expect(self, text: bytes, timeout: float = 30) -> bytes:
        """Read until ``text`` appears in the output (AssertionError with what came, after ``timeout``)."""
        end = time.monotonic() + timeout
        while text not in self.out:
            if time.monotonic() > end:
                raise AssertionError(f"{text!r} not seen in {timeout} s; output so far: {self.out[-2000:]!r}")
            if not self._read(0.2) and self.proc.poll() is not None and not self._read(0.2):
                raise AssertionError(f"{text!r} not seen; the process exited {self.proc.returncode}; "
                                     f"output: {self.out[-2000:]!r}")
        return self.out

    def wait_raw(self, timeout: float = 30) -> None:
        """Until ctk-run has put the terminal in raw mode (keys typed before are flushed by that, as at a real
        terminal)."""
        end = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ICANON:
            if time.monotonic() > end or self.proc.poll() is not None:
                raise AssertionError(f"the terminal never went raw; output: {self.out[-2000:]!r}")
            self._read(0.05)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def shell_answers(self, word: str, then: str = "") -> None:
        """Once the terminal is raw, have the shell behind it run ``echo WORD-$((40+2))`` (then ``then``, e.g.
        ``exit 3``) and wait for ``WORD-42``: only a shell, not the terminal echoing our keys, writes that."""
        self.wait_raw()
        self.send(f"echo {word}-$((40+2)){'; ' + then if then else ''}\r".encode())
        self.expect(f"{word}-42".encode())

    def wait(self, timeout: float = 60) -> int:
        """The exit code, reading the output meanwhile (so the process never blocks on a full pty)."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > end:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout} s; output: {self.out[-2000:]!r}")
            self._read(0.1)
        while self._read(0.05):
            pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def ctk_argv(containerd: Any, ctd: Any, *args: str) -> list[str]:
    return ["ctk-run", "--address", containerd.address, "--namespace", ctd.namespace, *args]


def ctk_env(run: Callable[..., Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    env.update(run.env)  # type: ignore[attr-defined]
    return env


def wait_until(check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def status(run: Callable[..., Any], name: str) -> str:
    """The container's ``State.Status`` (running, exited, …)."""
    r = run("inspect", "--format", "{{.State.Status}}", name)
    assert r.code == 0, r.err
    return str(r.out.strip())


def attach_and_exit(containerd: Any, ctd: Any, run: Callable[..., Any], name: str, code: int) -> None:
    """``ctk-run attach NAME`` on a terminal: the container's shell answers, exits ``code``, attach exits with
    that code and the container ends."""
    p = PtyRun(ctk_argv(containerd, ctd, "attach", name), ctk_env(run))
    try:
        p.shell_answers("again", f"exit {code}")
        assert p.wait() == code
    finally:
        p.close()
    wait_until(lambda: status(run, name) == "exited", what="the container to exit")
