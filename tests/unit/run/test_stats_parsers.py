"""Pure parsers and formats behind ``ctk-run stats``, ``top`` and ``events``."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ctk_run import cgroupstats as cg
from ctk_run.events import Message, matches, parse_filters
from ctk_run.stats import binary_size
from ctk_run.top import parse_ps, unique_keys
from ctk_shared.errors import CtkError, UsageError

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 1 8:1 / /my\\040disk rw - ext4 /dev/sda1 rw
"""


def test_mountinfo_maps_each_v1_controller_and_the_unified_hierarchy():
    m = cg.parse_mountinfo(HYBRID_MOUNTINFO)
    assert m["cpu"] == m["cpuacct"] == ("/", "/sys/fs/cgroup/cpu,cpuacct")
    assert m["memory"] == ("/", "/sys/fs/cgroup/memory")
    assert m[""] == ("/", "/sys/fs/cgroup/unified")
    assert "name=systemd" not in m and "xattr" in m  # options that are not controllers are harmless keys
    assert "ext4" not in m and "tmpfs" not in m


def test_proc_cgroup_v1_and_v2_lines():
    text = "4:memory:/ns/abc\n2:cpu,cpuacct:/ns/abc\n1:name=systemd:/x\n0::/ns/abc\n"
    assert cg.parse_proc_cgroup(text) == {"memory": "/ns/abc", "cpu": "/ns/abc", "cpuacct": "/ns/abc",
                                          "systemd": "/x", "": "/ns/abc"}


def test_net_dev_skips_loopback_and_sums_the_rest():
    text = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
            "    lo:  500 5 0 0 0 0 0 0  500 5 0 0 0 0 0 0\n"
            "  eth0: 1156 14 0 0 0 0 0 0  752 10 0 0 0 0 0 0\n"
            "  eth1:   44  1 0 0 0 0 0 0    8  1 0 0 0 0 0 0\n")
    assert cg.parse_net_dev(text) == (1200, 760)


def test_block_io_v1_and_v2():
    v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:16 Read 4\nTotal 12292\n"
    assert cg.parse_blkio_v1(v1) == (4100, 8192)
    v2 = "8:0 rbytes=100 wbytes=20 rios=1 wios=1\n8:16 rbytes=1 wbytes=2\n"
    assert cg.parse_io_stat(v2) == (101, 22)


def test_flat_keyed_files():
    assert cg.parse_flat_keyed("usage_usec 129122\nuser_usec 40069\nbad line here\n") == \
        {"usage_usec": 129122, "user_usec": 40069}


def test_cpu_percent_is_per_cpu_like_docker():
    a = cg.Sample(at=10.0, cpu_ns=0)
    assert cg.cpu_percent(a, cg.Sample(at=10.5, cpu_ns=250_000_000)) == pytest.approx(50.0)
    assert cg.cpu_percent(a, cg.Sample(at=10.5, cpu_ns=1_000_000_000)) == pytest.approx(200.0)  # two CPUs busy
    assert cg.cpu_percent(a, cg.Sample(at=10.0, cpu_ns=5)) == 0.0  # no time passed: no figure


def test_binary_sizes_as_docker_prints_memory():
    assert binary_size(0) == "0B"
    assert binary_size(1000) == "1000B"
    assert binary_size(1581056) == "1.508MiB"
    assert binary_size(24683792 * 1024) == "23.54GiB"


def test_sample_of_a_missing_process_is_zeros():
    s = cg.sample(2**22 + 12345)
    assert (s.cpu_ns, s.mem_usage, s.pids, s.net_rx) == (0, 0, 0, 0)


PS = """\
UID        PID  PPID  C STIME TTY          TIME CMD
root         1     0  0 20:50 ?        00:01:07 /sbin/init splash
root       931   909  0 23:41 ?        00:00:00 sleep 3600
root       940   931  0 23:41 ?        00:00:00 sh -c echo  two  spaces
"""


def test_top_keeps_the_container_rows_and_the_command_with_its_spaces():
    titles, rows = parse_ps(PS, {931, 940})
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [r[1] for r in rows] == ["931", "940"]
    assert rows[1][-1] == "sh -c echo  two  spaces"


def test_top_needs_a_pid_column():
    with pytest.raises(CtkError, match="no PID column"):
        parse_ps("COMMAND\nsleep\n", {1})


def test_top_duplicate_titles_get_distinct_keys():
    assert unique_keys(["PID", "COMMAND", "COMMAND"]) == ["PID", "COMMAND", "COMMAND_2"]


def _msg(action: str, **attrs: str) -> Message:
    return Message(datetime(2026, 12, 4, 23, 40, 1, 123456, tzinfo=UTC), action, "abc123def456" * 5 + "abcd",
                   {"image": "busybox", "name": "web", **attrs})


def test_event_line_and_record_look_like_docker():
    m = _msg("die", exitCode="3")
    assert m.line() == ("2026-12-04T23:40:01.123456000Z container die " + m.actor +
                        " (exitCode=3, image=busybox, name=web)")
    rec = m.record()
    assert rec["Type"] == "container" and rec["Action"] == rec["status"] == "die" and rec["from"] == "busybox"
    assert rec["Actor"] == {"ID": m.actor, "Attributes": {"image": "busybox", "name": "web", "exitCode": "3"}}
    assert rec["timeNano"] == rec["time"] * 1_000_000_000 + 123456000


def test_event_filters():
    f = parse_filters(["container=web", "container=other", "event=die"])
    assert matches(_msg("die"), f) and not matches(_msg("start"), f)
    assert matches(_msg("die", name="other"), f) and not matches(_msg("die", name="third"), f)
    assert matches(_msg("start"), parse_filters(["container=abc123"]))  # an ID prefix
    assert matches(_msg("health_status: healthy"), parse_filters(["event=health_status"]))
    assert not matches(_msg("start"), parse_filters(["type=image"]))
    assert matches(_msg("start", tier="db"), parse_filters(["label=tier=db"]))
    with pytest.raises(UsageError, match="invalid filter"):
        parse_filters(["colour=red"])


def test_event_line_cannot_be_forged_by_a_label():
    m = _msg("start", note="x\n2026-12-04T00:00:00Z container destroy y\x1b[2J")
    line = m.line()
    assert "\n" not in line and "\x1b" not in line
    assert "note=x\\x0a2026" in line and "\\x1b[2J" in line
