"""Output of ``exec`` and of foreground ``run`` arrives whole: every byte the process wrote, then its exit code.

The shim copies a process's stdout pipe into our FIFO and publishes the exit without waiting for that copy
(containerd 1.6 waits for it only when the process is deleted), so up to a pipe's worth of output can still
be on its way when ``Wait`` returns. A client that stops reading at the exit, rather than at EOF, loses the
tail. These tests read large outputs many times, with the CPUs busy, and compare them byte for byte.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

# around the FIFO/pipe size (64 KiB), the size first seen truncated (201000 → 200704 = 49 pages), 1 MiB
SIZES = (1, 4095, 65535, 65536, 65537, 131072, 196607, 200704, 201000, 262145, 1048575, 1048576, 1048577,
         3 * 1048576 + 17)
ROUNDS = 5  # × len(SIZES) execs
PARALLEL = 4  # execs at a time: more contention, less wall time


def _tool(run, *args: str, input: bytes = b"", timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
    env.update(run.env)
    return subprocess.run(["ctk-run", "--address", run.address, "--namespace", run.namespace, *args], input=input,
                          capture_output=True, env=env, timeout=timeout)


@pytest.fixture
def ctk(run, containerd, ctd):
    run.address, run.namespace = containerd.address, ctd.namespace
    return run


@contextlib.contextmanager
def _busy_cpus() -> Iterator[None]:
    """Two spinning processes per CPU: the reader, the shim and the exit all compete, as on a loaded machine."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 2))]
    try:
        yield
    finally:
        for p in hogs:
            p.kill()
        for p in hogs:
            p.wait()


def _check(what: str, p: subprocess.CompletedProcess[bytes], size: int, digest: str, code: int = 0) -> str | None:
    got = hashlib.sha256(p.stdout).hexdigest()
    if p.returncode == code and len(p.stdout) == size and got == digest:
        return None
    return f"{what}: exit {p.returncode} (want {code}), {len(p.stdout)} of {size} bytes, " \
           f"{'same' if got == digest else 'different'} sha256; stderr {p.stderr[-200:]!r}"


def _files(ctk, bb) -> tuple[str, dict[int, str]]:
    make = "; ".join(f"head -c {n} /dev/urandom > /big/f{n}" for n in SIZES)
    r = _tool(ctk, "run", "-d", "-q", bb, "sh", "-c", f"mkdir /big; {make}; touch /big/ready; exec sleep 600")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    assert wait_for(lambda: _tool(ctk, "exec", cid, "test", "-e", "/big/ready").returncode == 0, timeout=30)
    sums = _tool(ctk, "exec", cid, "sh", "-c", "cd /big && sha256sum f*")
    assert sums.returncode == 0, sums.stderr
    digests = {int(name[1:]): h for h, name in (line.split() for line in sums.stdout.decode().splitlines())}
    assert sorted(digests) == sorted(SIZES)
    return cid, digests


def _cat(ctk, cid: str, digests: dict[int, str], n: int, label: str, code: int = 0) -> str | None:
    if code:  # the exit code is the process's, and comes after all of its output
        p = _tool(ctk, "exec", cid, "sh", "-c", f"cat /big/f{n}; exit {code}")
        return _check(f"exec sh -c 'cat f{n}; exit {code}' ({label})", p, n, digests[n], code=code)
    return _check(f"exec cat f{n} ({label})", _tool(ctk, "exec", cid, "cat", f"/big/f{n}"), n, digests[n])


def test_exec_output_is_whole_under_load(ctk, bb):
    cid, digests = _files(ctk, bb)
    jobs = [(n, f"round {i}", 7 if i == ROUNDS - 1 else 0) for i in range(ROUNDS) for n in SIZES]
    with _busy_cpus(), ThreadPoolExecutor(PARALLEL) as pool:
        bad = [b for b in pool.map(lambda j: _cat(ctk, cid, digests, *j), jobs) if b]
    assert not bad, f"{len(bad)} of {len(jobs)} execs lost output:\n" + "\n".join(bad)


def test_exec_output_is_whole_after_containerd_restart(containerd, ctk, bb):
    """The scenario first seen: execs into a container that outlived a containerd restart."""
    cid, digests = _files(ctk, bb)
    containerd.restart()
    jobs = [(n, "after restart", 0) for n in SIZES]
    with _busy_cpus(), ThreadPoolExecutor(PARALLEL) as pool:
        bad = [b for b in pool.map(lambda j: _cat(ctk, cid, digests, *j), jobs) if b]
    assert not bad, f"{len(bad)} of {len(jobs)} execs lost output:\n" + "\n".join(bad)


RUNS = 12
# text (the json-file log of a plain foreground run holds strings, as Docker's): 1.2 MB of hex, in lines
TEXT = "head -c 400000 /bin/busybox | od -An -tx1 -v"


@pytest.mark.parametrize("attach", ["", "-i"], ids=["logged", "attached"])
def test_foreground_run_output_is_whole_under_load(ctk, bb, attach):
    ref = _tool(ctk, "run", "--rm", "-q", bb, "sh", "-c", f"{TEXT} | sha256sum; {TEXT} | wc -c")
    assert ref.returncode == 0, ref.stderr
    digest, size = ref.stdout.split()[0].decode(), int(ref.stdout.split()[-1])
    args = [a for a in (attach,) if a]

    def one(_: int) -> str | None:
        p = _tool(ctk, "run", "--rm", "-q", *args, bb, "sh", "-c", f"{TEXT}; exit 3")
        return _check(f"run --rm {attach} {TEXT}", p, size, digest, code=3)

    with _busy_cpus(), ThreadPoolExecutor(PARALLEL) as pool:
        bad = [b for b in pool.map(one, range(RUNS)) if b]
    assert not bad, f"{len(bad)} of {RUNS} runs lost output:\n" + "\n".join(bad)


def test_exec_returns_when_a_background_child_keeps_its_output_open(ctk, bb):
    """Reading to EOF is bounded: a child left running holds the output open past the exit; exec still ends
    soon after (when the output has been quiet for a while and the process is deleted), with all of it."""
    r = _tool(ctk, "run", "-d", "-q", bb, "sleep", "600")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    t0 = time.monotonic()
    p = _tool(ctk, "exec", cid, "sh", "-c", "echo before; sleep 60 & echo after; exit 4")
    took = time.monotonic() - t0
    assert (p.returncode, p.stdout, p.stderr) == (4, b"before\nafter\n", b"")
    assert took < 20, f"exec took {took:.1f} s"
