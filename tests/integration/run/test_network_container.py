"""``--network container:NAME|ID``: a container joins another one's network namespace (sidecars, pods).

Real images for the headline case (nginx serves, the tools image's curl fetches over the shared loopback);
busybox for the lifecycle rules. Everything on the session's private CNI setup."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.polling import wait_for

pytestmark = pytest.mark.integration


def test_sidecar_reaches_the_target_on_localhost(run, real_images):
    nginx, tools = real_images["nginx"], real_images["tools"]
    r = run("-d", "-q", "--name", "web", nginx.ref)
    assert r.code == 0, r.err
    web_id = r.out.strip()
    body = ""
    for _ in range(100):
        c = run("--rm", "-q", "--network", "container:web", tools.ref, "curl", "-s", "localhost:80")
        body = c.out
        if c.code == 0 and "Welcome to nginx!" in body:
            break
        time.sleep(0.2)
    assert "Welcome to nginx!" in body, (c.code, c.err)
    # by ID prefix too; the joined container has the target's hostname, hosts and resolv.conf, no address
    r = run("-d", "-q", "--network", f"container:{web_id[:10]}", "--name", "side", tools.ref, "sleep", "300")
    assert r.code == 0, r.err
    assert run("exec", "side", "hostname").out == run("exec", "web", "hostname").out == f"{web_id[:12]}\n"
    for f in ("/etc/hosts", "/etc/resolv.conf"):
        assert run("exec", "side", "cat", f).out == run("exec", "web", "cat", f).out
    assert run("exec", "side", "cat", "/sys/class/net/eth0/address").out == \
        run("exec", "web", "cat", "/sys/class/net/eth0/address").out
    doc = json.loads(run("inspect", "side").out)[0]
    assert doc["HostConfig"]["NetworkMode"] == f"container:{web_id}"
    assert doc["NetworkSettings"]["Networks"] == {} and doc["NetworkSettings"]["Ports"] == {}
    assert json.loads(run("ps", "--filter", "name=side").lines[0])["Ports"] == ""


@pytest.mark.parametrize("args,message", [
    (("-p", "8080:80"), "conflicting options: port publishing and the container type network mode"),
    (("-P",), "conflicting options: port publishing and the container type network mode"),
    (("--dns", "1.1.1.1"), "conflicting options: dns and the network mode"),
    (("--dns-search", "example.org"), "conflicting options: dns and the network mode"),
    (("--add-host", "a:10.0.0.1"), "conflicting options: custom host-to-IP mapping and the network mode"),
    (("-h", "other"), "conflicting options: hostname and the network mode"),
    (("--network-alias", "x"), "network-scoped alias is supported only for containers in user defined networks"),
    (("--network", "bridge"), "container sharing network namespace with another container or host cannot be "
                              "connected to any other network"),
])
def test_flags_a_shared_namespace_cannot_take_are_refused(run, bb, args, message):
    r = run("--rm", "-q", "--network", "container:web", *args, bb, "true")
    assert r.code == 125 and r.err.strip() == f"ctk-run: error: {message}", r.err
    assert run("ps", "-a", "-q").lines == []


def test_target_missing_or_not_running_is_a_clear_error(run, bb):
    r = run("--rm", "-q", "--network", "container:nosuch", bb, "true")
    assert r.code == 125 and "no such container: nosuch" in r.err, r.err
    assert run("create", "-q", "--name", "t", bb, "sleep", "300").code == 0
    r = run("--rm", "-q", "--network", "container:t", bb, "true")
    assert r.code == 125, r.err
    assert "cannot join network of a non running container: t" in r.err and "Traceback" not in r.err
    assert "ctk-run start t" in r.err  # the hint
    assert run("ps", "-a", "-q").lines == [run("ps", "-a", "-q", "--filter", "name=t").lines[0]]  # only t
    # create works (as in Docker); the start is what needs the target running
    assert run("create", "-q", "--network", "container:t", "--name", "j", bb, "true").code == 0
    r = run("start", "j")
    assert r.code != 0 and "cannot join network of a non running container: t" in r.err


def test_stopping_the_target_cuts_the_joined_off_and_rm_is_guarded(run, bb):
    assert run("-d", "-q", "--name", "tgt", bb, "sleep", "300").code == 0
    assert run("-d", "-q", "--network", "container:tgt", "--name", "j", bb, "sleep", "300").code == 0
    assert sorted(run("exec", "j", "ls", "/sys/class/net").out.split()) == ["eth0", "lo"]
    # Docker lets the target stop: the joined container keeps running with only its loopback
    assert run("stop", "-t", "1", "tgt").code == 0
    assert json.loads(run("ps", "--filter", "name=j").lines[0])["State"] == "running"
    assert run("exec", "j", "ls", "/sys/class/net").out.split() == ["lo"]
    # ... and that loopback stays up (the target's postStop runs no loopback DEL, which set it down)
    flags = int(run("exec", "j", "cat", "/sys/class/net/lo/flags").out.strip(), 16)
    assert flags & 1, hex(flags)
    # rm of the target while a running container shares its namespace: refused without -f
    r = run("rm", "tgt")
    assert r.code != 0 and "shared by running container(s) j" in r.err and "-f" in r.err, r.err
    assert run("rm", "-f", "tgt").code == 0
    # the joined one can no longer start once its target is gone
    assert run("stop", "-t", "1", "j").code == 0
    r = run("start", "j")
    assert r.code != 0 and "no longer exists" in r.err and "Traceback" not in r.err, r.err


def test_restarted_target_can_be_joined_again(run, bb):
    assert run("-d", "-q", "--name", "tgt", bb, "sh", "-c", "exec httpd -f -p 8081 -h /").code == 0
    assert run("stop", "-t", "1", "tgt").code == 0
    assert run("start", "tgt").code == 0
    ip = json.loads(run("inspect", "tgt").out)[0]["NetworkSettings"]["IPAddress"]

    def joined_sees_ip() -> bool:
        out = run("--rm", "-q", "--network", "container:tgt", bb, "ip", "addr").out
        return ip in out

    assert wait_for(joined_sees_ip, timeout=10), f"a container joined after the restart does not see {ip}"


def test_joining_a_host_network_container_or_a_chain(run, bb):
    import os

    assert run("-d", "-q", "--network", "host", "--name", "h", bb, "sleep", "300").code == 0
    r = run("--rm", "-q", "--network", "container:h", bb, "readlink", "/proc/self/ns/net")
    assert r.code == 0 and r.out.strip() == os.readlink("/proc/self/ns/net"), r.err
    # a chain joins the namespace at its end, as Docker does
    assert run("-d", "-q", "--name", "a", bb, "sleep", "300").code == 0
    assert run("-d", "-q", "--network", "container:a", "--name", "b", bb, "sleep", "300").code == 0
    r = run("--rm", "-q", "--network", "container:b", bb, "cat", "/sys/class/net/eth0/address")
    assert r.code == 0 and r.out == run("exec", "a", "cat", "/sys/class/net/eth0/address").out, r.err
    # a container with no network of ctk's cannot be joined: said before anything is made
    assert run("-d", "-q", "--network", "none", "--name", "n", bb, "sleep", "300").code == 0
    r = run("--rm", "-q", "--network", "container:n", bb, "true")
    assert r.code == 125 and "cannot join the network of container n" in r.err, r.err
    assert sorted(json.loads(ln)["Names"] for ln in run("ps", "-a").lines) == ["a", "b", "h", "n"]
