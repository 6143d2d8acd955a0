"""Issue 14 against the real containerd: `-P` publishes the image's EXPOSEd ports, and `-n` inside a
sub-command is Docker's (`logs -n` = `--tail`, `ps -n` = `--last`), not the namespace."""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.run.test_network import fetch
from tests.support.images import WEB_PAGE, push_layout, web_image
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def web(registry, tmp_path):
    """busybox httpd serving WEB_PAGE, with ``EXPOSE 80/tcp`` in its config, in the session's registry."""
    ref = f"{registry.host}/test/web-expose:v1"
    web_image(tmp_path / "web-layout", "v1")
    push_layout(tmp_path / "web-layout", "v1", ref)
    return ref


def test_publish_all_publishes_the_exposed_port_on_a_free_host_port(run, web):
    r = run("-d", "-q", "-P", "--name", "pall", web)
    assert r.code == 0, r.err
    (line,) = run("port", "pall").lines
    assert line.startswith("80/tcp -> 0.0.0.0:"), line
    host_port = int(line.rsplit(":", 1)[1])
    assert 1024 < host_port < 65536
    assert fetch(host_port) == WEB_PAGE.decode()
    (doc,) = json.loads(run("inspect", "pall").out)
    assert doc["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(host_port)}]}
    assert json.loads(run("ps", "--format", "json").lines[0])["Ports"] == f"0.0.0.0:{host_port}->80/tcp"


def test_publish_all_keeps_an_explicit_mapping_of_the_same_port(run, web):
    from tests.integration.run.test_network import free_port

    port = free_port()
    r = run("-d", "-q", "-P", "-p", f"{port}:80", "--name", "both", web)
    assert r.code == 0, r.err
    assert run("port", "both").lines == [f"80/tcp -> 0.0.0.0:{port}"]
    assert fetch(port) == WEB_PAGE.decode()


def test_logs_n_is_tail(run, bb):
    r = run("-q", "--name", "counter", bb, "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done")
    assert r.code == 0, r.err
    assert wait_for(lambda: "line5" in run("logs", "counter").out)
    short = run("logs", "-n", "2", "counter")
    assert short.code == 0, short.err
    assert short.out == "line4\nline5\n" == run("logs", "--tail", "2", "counter").out


def test_ps_n_is_last_and_counts_stopped_containers(run, bb):
    for name in ("first", "second", "third"):
        assert run("-q", "--name", name, bb, "true").code == 0
        time.sleep(1.1)  # creation times are kept to the second
    last = run("ps", "-n", "1", "--format", "{{.Names}}")
    assert last.code == 0, last.err
    assert last.lines == ["third"]
    assert run("ps", "-n", "2", "--format", "{{.Names}}").lines == ["third", "second"]
    assert run("ps", "--last", "2", "--format", "{{.Names}}").lines == ["third", "second"]
    table = run("ps", "-a", "--format", "table {{.Names}}\t{{.State}}").lines
    assert table[0].split() == ["NAMES", "STATE"] and sorted(r.split()[0] for r in table[1:]) == \
        ["first", "second", "third"]


def test_inspect_format_json_is_the_array_and_unknown_fields_fail(run, bb):
    assert run("-q", "--name", "once", bb, "true").code == 0
    plain = json.loads(run("inspect", "once").out)
    assert json.loads(run("inspect", "--format", "json", "once").out) == plain
    assert run("inspect", "-f", "{{.State.Status}}", "once").lines == ["exited"]
    bad = run("inspect", "--format", "{{.Nope}}", "once")
    assert bad.code == 2 and "'.Nope'" in bad.err and "State" in bad.err and bad.out == ""
