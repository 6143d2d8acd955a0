"""Smoke test on a real image (scripts/images, Debian's nginx-light): the article's `run -d -p` answers with
nginx's page, and `logs` shows nginx's access-log line for the request (its log files are /dev/stdout)."""
from __future__ import annotations

import json
import secrets
import time
import urllib.request

import pytest

from .test_network import free_port

pytestmark = pytest.mark.integration


def get(port: int, agent: str, timeout: float = 30.0) -> tuple[int, dict[str, str], str]:
    """GET http://127.0.0.1:PORT/ until nginx answers (status, headers, body)."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < end:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"User-Agent": agent})
            with opener.open(req, timeout=2) as r:
                return r.status, dict(r.headers), r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise AssertionError(f"nginx did not answer on 127.0.0.1:{port}: {last}")


def test_nginx_answers_on_a_published_port_and_logs_the_request(run, real_images):
    nginx = real_images["nginx"]
    port = free_port()
    r = run("-d", "-q", "-p", f"{port}:80", "--name=nginx", "--restart=always", nginx.ref)
    assert r.code == 0, r.err
    agent = f"ctk-smoke/{secrets.token_hex(4)}"
    status, headers, body = get(port, agent)
    assert status == 200 and headers["Server"].startswith("nginx/")
    assert "Welcome to nginx!" in body
    ps = json.loads(run("ps").lines[0])
    assert ps["Names"] == "nginx" and ps["Ports"] == f"0.0.0.0:{port}->80/tcp"
    end = time.monotonic() + 10
    while True:
        logs = run("logs", "nginx")
        hits = [ln for ln in logs.out.splitlines() if agent in ln]
        if hits or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert len(hits) == 1, f"stdout={logs.out!r} stderr={logs.err!r}"
    assert '"GET / HTTP/1.1" 200' in hits[0]  # nginx's combined log format, on the container's stdout
