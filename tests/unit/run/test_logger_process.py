"""ctk-run-logger as containerd's shim runs it: argv pairs in any order, an environment of only CONTAINER_ID and
CONTAINER_NAMESPACE, the container's stdout/stderr on fds 3/4, a ready pipe on fd 5, SIGTERM on task delete."""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from ctk_run.logger import build_log_uri

SCRIPT = Path(sys.executable).parent / "ctk-run-logger"  # what lifecycle.logger_executable() finds first
ENV = {"CONTAINER_ID": "c0ffee", "CONTAINER_NAMESPACE": "default"}  # all the shim passes: no PATH


def launchers() -> list:
    out = [pytest.param([sys.executable, "-m", "ctk_run.logger"], id="python-m")]
    out.append(pytest.param([str(SCRIPT)], id="script", marks=pytest.mark.skipif(
        not SCRIPT.is_file(), reason="ctk-run-logger is not installed beside this interpreter")))
    return out


class Logger:
    """A logger process with fds 3/4 (read ends of our out/err pipes) and 5 (write end of our ready pipe)."""

    def __init__(self, cmd: list[str], args: list[str], env: dict[str, str] | None = None,
                 wrapper: list[str] | None = None) -> None:
        out_r, self.out_w = os.pipe()
        err_r, self.err_w = os.pipe()
        self.ready_r, ready_w = os.pipe()
        theirs = (out_r, err_r, ready_w)

        def fds_345() -> None:  # in the child: put them on 3, 4, 5 whatever their numbers are now
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in theirs]
            for target, fd in enumerate(high, start=3):
                os.dup2(fd, target)
                os.close(fd)

        self.proc = subprocess.Popen((wrapper or []) + cmd + args, env=env if env is not None else dict(ENV),
                                     preexec_fn=fds_345, pass_fds=(3, 4, 5), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for fd in theirs:
            os.close(fd)

    def wait_ready(self, timeout: float = 15) -> None:
        r, _, _ = select.select([self.ready_r], [], [], timeout)
        assert r, "the logger never closed fd 5"
        assert os.read(self.ready_r, 1) == b""  # closed, not written to
        assert self.proc.poll() is None  # …while it runs: ready, not dead

    def close(self, *which: str) -> None:
        for name in which or ("out_w", "err_w"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def finish(self, timeout: float = 20) -> tuple[int, str]:
        self.close()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        finally:
            os.close(self.ready_r)
            if self.proc.poll() is None:
                self.proc.kill()
        return self.proc.returncode, err.decode()

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid)


def shim_in(bundle: Path) -> list[str]:
    """A stand-in for the runc shim: runs in the bundle directory, starts the logger with fds 3-5 and keeps
    no copy of them (as the shim does)."""
    return [sys.executable, "-c", "import os, subprocess, sys; os.chdir(sys.argv[1]); "
            "p = subprocess.Popen(sys.argv[2:], pass_fds=(3, 4, 5)); [os.close(fd) for fd in (3, 4, 5)]; "
            "sys.exit(p.wait())", str(bundle)]


def rss_kib(pid: int) -> int:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout
    return int(out.strip())


def records(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def by_stream(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}
    for r in records(path):
        out[r["stream"]].append(r["log"])
    return out


def wait_for(cond, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.mark.parametrize("cmd", launchers())
@pytest.mark.parametrize("order", ["log-only", "log-first", "log-last"])
def test_copies_both_streams_until_eof(tmp_path, cmd, order):
    log = tmp_path / "containers" / "c0ffee" / "c0ffee-json.log"  # the directory does not exist yet
    args = {"log-only": ["log", str(log)], "log-first": ["log", str(log), "other", "x"],
            "log-last": ["other", "x", "log", str(log)]}[order]
    lg = Logger(cmd, args)
    lg.wait_ready()
    os.write(lg.out_w, b"out 1\nout ")
    os.write(lg.err_w, b"err 1\n")
    assert wait_for(lambda: log.exists() and log.read_bytes().count(b"\n") == 2)  # whole lines: at once
    os.write(lg.out_w, b"2\npartial")
    os.write(lg.err_w, "ünïcode \xff\n".encode())
    code, err = lg.finish()
    assert code == 0, err
    assert by_stream(log) == {"stdout": ["out 1\n", "out 2\n", "partial"], "stderr": ["err 1\n", "ünïcode \xff\n"]}
    for r in records(log):
        assert list(r) == ["log", "stream", "time"] and r["time"].endswith("Z") and len(r["time"]) == 30


@pytest.mark.parametrize("cmd", launchers())
def test_sigterm_flushes_and_exits_0(tmp_path, cmd):
    log = tmp_path / "c.log"
    lg = Logger(cmd, ["log", str(log)])
    lg.wait_ready()
    os.write(lg.out_w, b"complete\nno newline yet")
    os.write(lg.err_w, b"half")
    assert wait_for(lambda: log.exists() and log.read_bytes().count(b"\n") == 1)
    t0 = time.monotonic()
    lg.proc.send_signal(signal.SIGTERM)  # containerd's shim on task delete; the pipes may still be open
    assert lg.proc.wait(5) == 0
    assert time.monotonic() - t0 < 3  # long before the shim's SIGKILL (12 s)
    code, err = lg.finish()
    assert code == 0, err
    assert by_stream(log) == {"stdout": ["complete\n", "no newline yet"], "stderr": ["half"]}


def test_address_is_read_in_either_order_and_a_failed_decision_is_harmless(tmp_path):
    """With ``address`` the logger applies the restart policy at the end; containerd being unreachable must
    not lose output or change the exit status."""
    sock = tmp_path / "no-containerd.sock"
    for i, args in enumerate((["log", None, "address", str(sock)], ["address", str(sock), "log", None])):
        log = tmp_path / f"{i}.log"
        args = [str(log) if a is None else a for a in args]
        lg = Logger([sys.executable, "-m", "ctk_run.logger"], args)
        lg.wait_ready()
        os.write(lg.out_w, b"hello\n")
        code, err = lg.finish()
        assert code == 0, err
        assert by_stream(log)["stdout"] == ["hello\n"]
        assert str(sock) in err and "no restart decision" in err  # it did try, at this address


def test_decides_when_init_exits_even_while_the_pipes_stay_open(tmp_path):
    """Under the runc shim the logger's parent runs in the bundle directory, where init.pid names the
    container's init: the policy is applied as soon as that process exits (a daemonised child may hold the
    pipes open for much longer), and the logger does not end at EOF while the init still runs."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    init = subprocess.Popen(["sleep", "60"])
    (bundle / "init.pid").write_text(str(init.pid))
    log = tmp_path / "c.log"
    shim = shim_in(bundle)
    lg = Logger([sys.executable, "-m", "ctk_run.logger"], ["log", str(log), "address", str(tmp_path / "none.sock")],
                wrapper=shim)
    try:
        lg.wait_ready()
        os.write(lg.out_w, b"working\n")
        lg.close("out_w", "err_w")  # EOF on both…
        time.sleep(0.8)
        assert lg.proc.poll() is None  # …but the init still runs: keep watching it
        init.kill()
        init.wait()
        code, err = lg.finish(timeout=10)
        assert code == 0, err
        assert "no restart decision" in err  # decided (and failed to reach containerd) once the init exited
        assert by_stream(log)["stdout"] == ["working\n"]
    finally:
        init.kill()
        init.wait()


def test_exit_decision_does_not_wait_for_eof(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    init = subprocess.Popen(["sleep", "60"])
    (bundle / "init.pid").write_text(str(init.pid))
    shim = shim_in(bundle)
    marker = tmp_path / "none.sock"
    lg = Logger([sys.executable, "-m", "ctk_run.logger"], ["log", str(tmp_path / "c.log"), "address", str(marker)],
                wrapper=shim)
    errs: list[bytes] = []
    reader = threading.Thread(target=lambda: errs.append(lg.proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    try:
        lg.wait_ready()
        time.sleep(0.3)
        init.kill()
        init.wait()
        time.sleep(2)  # the pipes are still open: only the exit can have triggered a decision
        assert lg.proc.poll() is None
        os.write(lg.out_w, b"still copying\n")
        lg.close()
        reader.start()
        assert lg.proc.wait(10) == 0
        reader.join(5)
        assert b"no restart decision" in errs[0] and errs[0].count(b"no restart decision") == 1
    finally:
        init.kill()
        init.wait()
        if lg.proc.poll() is None:
            lg.proc.kill()
        os.close(lg.ready_r)


def test_usage_errors(tmp_path):
    lg = Logger([sys.executable, "-m", "ctk_run.logger"], ["address", "/x"])
    code, err = lg.finish()
    assert code == 2 and "no log path" in err
    (tmp_path / "file").write_text("")
    lg = Logger([sys.executable, "-m", "ctk_run.logger"], ["log", str(tmp_path / "file" / "c.log")])
    code, err = lg.finish()
    assert code == 1 and "cannot open" in err


def test_lots_of_output_on_both_streams(tmp_path):
    log = tmp_path / "c.log"
    lg = Logger([sys.executable, "-m", "ctk_run.logger"], ["log", str(log)])
    lg.wait_ready()
    expected = {"stdout": [f"line {i} " + "x" * (i % 300) + "\n" for i in range(40_000)],
                "stderr": [f"err {i}\n" for i in range(20_000)]}

    def pump(fd: int, lines: list[str]) -> None:
        data = "".join(lines).encode()
        for i in range(0, len(data), 7777):  # chunks that cut lines anywhere
            os.write(fd, data[i:i + 7777])

    threads = [threading.Thread(target=pump, args=(lg.out_w, expected["stdout"])),
               threading.Thread(target=pump, args=(lg.err_w, expected["stderr"]))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    code, err = lg.finish()
    assert code == 0, err
    assert by_stream(log) == expected
    assert time.monotonic() - t0 < 20


def test_rss_stays_small(tmp_path):
    """The logger runs for every container as long as it runs: it may cost little more than the interpreter.
    (Absolute figures depend on what the site's .pth files import; the difference does not.)"""
    base = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=dict(ENV))
    log = tmp_path / "c.log"
    cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "ctk_run.logger"]
    lg = Logger(cmd, ["log", str(log)])
    try:
        lg.wait_ready()
        os.write(lg.out_w, b"hello\n" * 1000)
        assert wait_for(lambda: log.exists() and log.stat().st_size > 50_000)
        time.sleep(0.3)
        base_rss, idle_rss = rss_kib(base.pid), lg.rss_kib()
        chunk = (b"y" * 99 + b"\n") * 10_000
        for _ in range(50):  # 50 MB
            os.write(lg.out_w, chunk)
        os.write(lg.err_w, b"z" * 100_000)  # a long partial line
        time.sleep(0.5)
        busy_rss = lg.rss_kib()
        print(f"\nRSS KiB: interpreter {base_rss}, logger idle {idle_rss}, after 50 MB {busy_rss}")
        assert idle_rss - base_rss < 3 * 1024
        assert busy_rss - base_rss < 4 * 1024
        code, err = lg.finish()
        assert code == 0, err
    finally:
        base.kill()
        base.wait()


# -- the URI ---------------------------------------------------------------------------------------------------

def go_like_parse(uri: str) -> tuple[str, dict[str, list[str]]]:
    """What containerd does with it: url.Parse, then u.Path and u.Query() (where + means a space)."""
    u = urlsplit(uri)
    return unquote(u.path), parse_qs(u.query, keep_blank_values=True)


def test_build_log_uri():
    uri = build_log_uri("/usr/local/bin/ctk-run-logger", "/var/lib/ctk/containers/default/abc/abc-json.log",
                        "/run/containerd/containerd.sock")
    assert uri == ("binary:///usr/local/bin/ctk-run-logger?log=/var/lib/ctk/containers/default/abc/abc-json.log"
                   "&address=/run/containerd/containerd.sock")
    assert build_log_uri("/bin/l", "/x.log", None) == "binary:///bin/l?log=/x.log"
    assert build_log_uri("/bin/l", "/x.log", "") == "binary:///bin/l?log=/x.log"


def test_build_log_uri_quotes_what_url_parsing_would_change():
    logger, log, address = "/opt/my tools/ctk-run-logger", "/data/a+b&c=d?e#f%g;h/ü.log", "unix:///run/c d.sock"
    uri = build_log_uri(logger, log, address)
    assert " " not in uri and "+" not in uri and ";" not in uri and "#" not in uri
    path, query = go_like_parse(uri)
    assert path == logger
    assert query == {"log": [log], "address": [address]}


def test_build_log_uri_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, query = go_like_parse(build_log_uri("bin/logger", "logs/x.log", None))
    assert path == str(tmp_path / "bin" / "logger") and query["log"] == [str(tmp_path / "logs" / "x.log")]
