"""Network aliases (``--network-alias``, ``--network name=NET,alias=…``): every container on the network
resolves them, they follow containers as they come and go, and they are refused where Docker refuses them.

Containers run on the session's private CNI setup (``cni_env``); a user network made here gets a free
subnet next to the session's, and is removed at the end."""
from __future__ import annotations

import json
import secrets
import time

import pytest

from tests.support.cli import remove_containers

pytestmark = pytest.mark.integration

WEB = "mkdir -p /w && echo hello from $(hostname) > /w/index.html && exec httpd -f -p 80 -h /w"
ALIAS_REFUSED = "network-scoped alias is supported only for containers in user defined networks"


@pytest.fixture
def usernet(run):
    name = f"al{secrets.token_hex(3)}"
    r = run("create", name, tool="ctk-net")
    assert r.code == 0, r.err
    yield name
    remove_containers(run)
    run("rm", name, tool="ctk-net")


def hosts_of(run, name: str) -> str:
    return run("exec", name, "cat", "/etc/hosts").out


def wait_hosts(run, name: str, pred, timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    text = hosts_of(run, name)
    while not pred(text) and time.monotonic() < end:
        time.sleep(0.2)
        text = hosts_of(run, name)
    return text


def fetch_by_name(run, net: str, bb: str, host: str) -> str:
    """GET http://HOST/ from a throw-away container on ``net`` (until the server answers)."""
    out = ""
    for _ in range(50):
        c = run("--rm", "-q", "--network", net, bb, "wget", "-qO-", f"http://{host}/")
        out = c.out
        if c.code == 0:
            return out
        time.sleep(0.2)
    raise AssertionError(f"http://{host}/ did not answer on {net}: {out!r}")


def test_aliases_resolve_for_every_container_on_the_network(run, bb, usernet):
    r = run("-d", "-q", "--network", usernet, "--network-alias", "cache", "--net-alias", "kv", "--name", "r1",
            bb, "sh", "-c", WEB)
    assert r.code == 0, r.err
    cid = r.out.strip()
    # a new container on the network reaches r1 by each alias
    assert fetch_by_name(run, usernet, bb, "cache") == f"hello from {cid[:12]}\n"
    assert fetch_by_name(run, usernet, bb, "kv") == f"hello from {cid[:12]}\n"
    # r1 resolves its own aliases too
    own = hosts_of(run, "r1")
    line = next(ln for ln in own.splitlines() if "cache" in ln)
    assert line.split()[1:] == [cid[:12], "r1", "cache", "kv"]
    doc = json.loads(run("inspect", "r1").out)[0]
    ep = doc["NetworkSettings"]["Networks"][usernet]
    assert ep["Aliases"] == ["cache", "kv"] and ep["IPAddress"] == line.split()[0]
    assert ep["DNSNames"] == ["r1", "cache", "kv", cid[:12]]


def test_aliases_follow_containers_as_they_come_and_go(run, bb, usernet):
    assert run("-d", "-q", "--network", usernet, "--name", "app", bb, "sleep", "300").code == 0
    # Docker's long form: name=NET,alias=…; a second alias in the same flag
    r = run("-d", "-q", "--network", f"name={usernet},alias=db,alias=pg", "--name", "d1", bb, "sleep", "300")
    assert r.code == 0, r.err
    text = wait_hosts(run, "app", lambda t: " db" in t)
    assert any(ln.split()[-2:] == ["db", "pg"] for ln in text.splitlines()), text
    # a container on another network does not see the alias
    other = run("--rm", "-q", bb, "cat", "/etc/hosts")
    assert other.code == 0 and " db" not in other.out and "pg" not in other.out
    # stopped: gone from its peers' hosts files; started again: back
    assert run("stop", "-t", "1", "d1").code == 0
    assert " db" not in wait_hosts(run, "app", lambda t: " db" not in t)
    stopped = json.loads(run("inspect", "d1").out)[0]["NetworkSettings"]["Networks"][usernet]
    assert stopped["Aliases"] == ["db", "pg"] and stopped["IPAddress"] == ""  # configured, not attached
    assert run("start", "d1").code == 0
    assert " db" in wait_hosts(run, "app", lambda t: " db" in t)
    # removed with the container
    assert run("rm", "-f", "d1").code == 0
    assert " db" not in wait_hosts(run, "app", lambda t: " db" not in t)


def test_alias_and_ip_in_the_long_form_on_a_second_network(run, bb, usernet):
    second = f"al{secrets.token_hex(3)}"
    sub = f"10.199.{secrets.randbelow(250) + 1}"
    assert run("create", "--subnet", f"{sub}.0/24", second, tool="ctk-net").code == 0
    try:
        r = run("-d", "-q", "--network", usernet, "--network", f"name={second},alias=side,ip={sub}.77",
                "--name", "two", bb, "sleep", "300")
        assert r.code == 0, r.err
        nets = json.loads(run("inspect", "two").out)[0]["NetworkSettings"]["Networks"]
        assert nets[second]["IPAddress"] == f"{sub}.77" and nets[second]["Aliases"] == ["side"]
        assert nets[usernet]["Aliases"] is None
        # a peer on the second network only sees the alias with the second network's address
        peer = run("--rm", "-q", "--network", second, bb, "cat", "/etc/hosts")
        assert any(ln.split()[0] == f"{sub}.77" and "side" in ln.split() for ln in peer.out.splitlines())
        first = run("--rm", "-q", "--network", usernet, bb, "cat", "/etc/hosts")
        assert "side" not in first.out
    finally:
        remove_containers(run)
        run("rm", second, tool="ctk-net")


@pytest.mark.parametrize("args", [
    ("--network-alias", "x"),  # the default bridge
    ("--network", "bridge", "--network-alias", "x"),
    ("--network", "bridge,alias=x"),
    ("--network", "host", "--network-alias", "x"),
    ("--network", "none", "--network-alias", "x"),
])
def test_alias_outside_a_user_network_is_refused_as_docker_does(run, bb, args):
    r = run("--rm", "-q", *args, bb, "true")
    assert r.code == 125
    assert r.err.strip() == f"ctk-run: error: {ALIAS_REFUSED}", r.err
    assert run("ps", "-a", "-q").lines == []


@pytest.mark.parametrize("value,why", [
    ("name=x,alias=", "invalid network alias"),
    ("name=x,foo=1", "unknown key 'foo'"),
    ("alias=a", "no network name"),
    ("name=x,mac-address=02:42:ac:11:00:02", "not supported"),
    ("name=x,ip=10.1.2.300", "not an IPv4 address"),
])
def test_bad_long_form_is_refused_before_anything_is_made(run, bb, value, why):
    r = run("--rm", "-q", "--network", value, bb, "true")
    assert r.code == 125 and why in r.err and r.err.count("\n") <= 2, r.err
    assert run("ps", "-a", "-q").lines == []
