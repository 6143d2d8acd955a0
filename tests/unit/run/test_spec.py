"""The OCI spec ctk-run hands to runc: what a Docker user would notice if it were wrong."""
import json

import pytest
from ctk_run import spec as S
from ctk_run.mounts import parse_mount, parse_tmpfs, parse_volume
from ctk_run.spec import ALL_CAPS, DEFAULT_CAPS, SpecOptions, build_spec, resolve_user
from ctk_run.units import parse_bytes, parse_cpus, parse_ulimit
from ctk_shared import ocispec
from ctk_shared.errors import UsageError

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
www-data:x:33:app
audio:x:29:app,www-data
app:x:1000:
staff:x:50:
nogroup:x:65534:
"""
IMAGE = {"config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"], "Cmd": ["nginx", "-g", "daemon off;"],
                    "Entrypoint": ["/docker-entrypoint.sh"], "WorkingDir": "/srv"}}


@pytest.fixture(autouse=True)
def fixed_host(monkeypatch):
    """Host facts a spec depends on, pinned so the tests mean the same on every machine."""
    monkeypatch.setattr(ocispec, "nofile_hard", lambda: None)
    monkeypatch.setattr(S, "_cgroup_v2", lambda: False)
    monkeypatch.setattr(S, "_sysctl_exists", lambda name: True)
    monkeypatch.setattr(S, "host_capabilities", lambda: ALL_CAPS)


def build(image=None, **kw):
    return build_spec("c0ffee" * 10 + "abcd", "default", IMAGE if image is None else image, SpecOptions(**kw),
                      passwd=PASSWD, group=GROUP)


def mount_at(spec, dest):
    found = [m for m in spec["mounts"] if m["destination"] == dest]
    assert len(found) <= 1, f"two mounts at {dest}"
    return found[0] if found else None


def allowed_syscalls(spec):
    return {n for r in spec["linux"]["seccomp"]["syscalls"]
            if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}


# ------------------------------------------------------------------------------------------------ the shape


def test_spec_is_plain_json_with_docker_defaults():
    spec = build()
    assert json.loads(json.dumps(spec)) == spec
    assert spec["ociVersion"] == "1.0.2-dev"
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == "c0ffeec0ffee"
    assert spec["linux"]["cgroupsPath"] == "/default/" + "c0ffee" * 10 + "abcd"
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    proc = spec["process"]
    assert proc["noNewPrivileges"] is False  # Docker's default, unlike containerd's
    assert proc["oomScoreAdj"] == 0
    assert proc["terminal"] is False
    assert proc["capabilities"]["bounding"] == list(DEFAULT_CAPS)
    assert proc["capabilities"]["inheritable"] == [] and proc["capabilities"]["ambient"] == []
    assert {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576} in proc["rlimits"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"] and "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert "ro" in mount_at(spec, "/sys")["options"] and "ro" in mount_at(spec, "/sys/fs/cgroup")["options"]


def test_whole_image_config_or_its_config_object_both_work():
    assert build(IMAGE)["process"]["args"] == build(IMAGE["config"])["process"]["args"]


def test_cgroup_namespace_only_on_cgroup_v2(monkeypatch):
    monkeypatch.setattr(S, "_cgroup_v2", lambda: True)
    assert "cgroup" in {n["type"] for n in build()["linux"]["namespaces"]}


def test_devices_default_nodes_and_cgroup_rules():
    spec = build()
    assert {d["path"] for d in spec["linux"]["devices"]} >= {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/tty"}
    rules = spec["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in rules
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in rules  # /dev/pts/*


def test_nofile_is_capped_at_what_this_process_may_grant(monkeypatch):
    monkeypatch.setattr(ocispec, "nofile_hard", lambda: 20000)
    assert {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000} in build()["process"]["rlimits"]


# ------------------------------------------------------------------------------------ entrypoint and command

# Docker's documented ENTRYPOINT x CMD table, plus what the run command line does to it.
@pytest.mark.parametrize("entrypoint,cmd,run_args,run_entrypoint,expected", [
    (None, ["exec_cmd", "p1_cmd"], None, None, ["exec_cmd", "p1_cmd"]),
    (None, ["/bin/sh", "-c", "exec_cmd p1_cmd"], None, None, ["/bin/sh", "-c", "exec_cmd p1_cmd"]),
    (["exec_entry", "p1_entry"], None, None, None, ["exec_entry", "p1_entry"]),
    (["exec_entry", "p1_entry"], ["exec_cmd", "p1_cmd"], None, None, ["exec_entry", "p1_entry", "exec_cmd", "p1_cmd"]),
    (["exec_entry", "p1_entry"], ["/bin/sh", "-c", "exec_cmd p1_cmd"], None, None,
     ["exec_entry", "p1_entry", "/bin/sh", "-c", "exec_cmd p1_cmd"]),
    (["/bin/sh", "-c", "exec_entry p1_entry"], ["exec_cmd", "p1_cmd"], None, None,
     ["/bin/sh", "-c", "exec_entry p1_entry", "exec_cmd", "p1_cmd"]),
    # arguments after the image replace CMD and keep ENTRYPOINT
    (["exec_entry"], ["exec_cmd"], ("ls", "-l"), None, ["exec_entry", "ls", "-l"]),
    (None, ["exec_cmd"], ("ls", "-l"), None, ["ls", "-l"]),
    # --entrypoint replaces ENTRYPOINT and drops the image's CMD
    (["exec_entry"], ["exec_cmd"], None, ("/bin/bash",), ["/bin/bash"]),
    (["exec_entry"], ["exec_cmd"], ("-c", "id"), ("/bin/bash",), ["/bin/bash", "-c", "id"]),
    # --entrypoint "" clears it
    (["exec_entry"], ["exec_cmd"], ("ls",), ("",), ["ls"]),
    (["exec_entry"], ["exec_cmd"], ("ls",), (), ["ls"]),
])
def test_entrypoint_and_cmd_combine_like_docker(entrypoint, cmd, run_args, run_entrypoint, expected):
    image = {"Entrypoint": entrypoint, "Cmd": cmd}
    spec = build(image, command=run_args, entrypoint=run_entrypoint)
    assert spec["process"]["args"] == expected


@pytest.mark.parametrize("image,kw", [
    ({}, {}),
    ({"Entrypoint": None, "Cmd": None}, {}),
    ({"Cmd": ["sh"]}, {"entrypoint": ("",)}),  # clearing the entrypoint drops the image's CMD too
])
def test_nothing_to_run_is_an_error(image, kw):
    with pytest.raises(UsageError, match="no command specified"):
        build(image, **kw)


def test_init_wraps_the_command_and_is_bound_read_only():
    spec = build({"Cmd": ["sleep", "1"]}, init=True, init_path="/usr/libexec/ctk/tini")
    assert spec["process"]["args"] == ["/sbin/ctk-init", "--", "sleep", "1"]
    m = mount_at(spec, "/sbin/ctk-init")
    assert m["source"] == "/usr/libexec/ctk/tini" and "ro" in m["options"]
    with pytest.raises(UsageError):
        build({"Cmd": ["sleep", "1"]}, init=True)


# ------------------------------------------------------------------------------------------ env, cwd, user


def test_env_user_values_replace_image_values_in_place():
    env = build(env=("LANG=de_DE.UTF-8", "NEW=1"), hostname="web")["process"]["env"]
    assert env == ["PATH=/usr/local/bin:/usr/bin:/bin", "HOSTNAME=web", "LANG=de_DE.UTF-8", "NEW=1"]


def test_env_defaults_path_hostname_and_term():
    env = build({"Cmd": ["sh"]}, tty=True, hostname="box")["process"]["env"]
    assert env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=box", "TERM=xterm"]
    assert "TERM=xterm" not in build({"Cmd": ["sh"]})["process"]["env"]
    assert "TERM=dumb" in build({"Cmd": ["sh"]}, tty=True, env=("TERM=dumb",))["process"]["env"]
    assert not any(e.startswith("LANG=") for e in build(env=("LANG",))["process"]["env"])  # a bare K unsets


def test_tty_sets_terminal():
    assert build(tty=True)["process"]["terminal"] is True


def test_working_directory():
    assert build()["process"]["cwd"] == "/srv"
    assert build(workdir="/tmp")["process"]["cwd"] == "/tmp"
    assert build({"Cmd": ["sh"]})["process"]["cwd"] == "/"
    with pytest.raises(UsageError, match="absolute path"):
        build(workdir="tmp")


@pytest.mark.parametrize("user,expected", [
    ("nobody", (65534, 65534, [])),
    ("65534", (65534, 65534, [])),  # a numeric uid with an entry takes the entry's gid
    ("4242", (4242, 0, [])),  # numeric ids need not exist
    ("4242:4343", (4242, 4343, [])),
    ("app", (1000, 1000, [33, 29])),  # supplementary groups from /etc/group membership
    ("app:staff", (1000, 50, [])),  # an explicit group drops the supplementary ones
    ("nobody:0", (65534, 0, [])),
    ("0:nogroup", (0, 65534, [])),
    ("", (0, 0, [])),
    (None, (0, 0, [])),
])
def test_resolve_user_like_runc(user, expected):
    assert resolve_user(user, PASSWD, GROUP) == expected


def test_unknown_user_or_group_is_docker_error():
    with pytest.raises(UsageError, match="unable to find user xyz: no matching entries in passwd file"):
        resolve_user("xyz", PASSWD, GROUP)
    with pytest.raises(UsageError, match="unable to find user xyz"):
        resolve_user("xyz", None, None)  # an image without /etc/passwd
    with pytest.raises(UsageError, match="unable to find group wheel: no matching entries in group file"):
        resolve_user("app:wheel", PASSWD, GROUP)
    assert resolve_user("1000:1000", None, None) == (1000, 1000, [])


def test_user_flag_and_image_user_in_the_spec():
    assert build(user="nobody")["process"]["user"] == {"uid": 65534, "gid": 65534}
    image = {**IMAGE["config"], "User": "www-data"}
    assert build(image)["process"]["user"] == {"uid": 33, "gid": 33, "additionalGids": [29]}
    assert build(image, user="0")["process"]["user"] == {"uid": 0, "gid": 0}


# ---------------------------------------------------------------------------------------------- security


def caps_of(spec):
    c = spec["process"]["capabilities"]
    assert c["bounding"] == c["effective"] == c["permitted"]
    return c["bounding"]


def test_cap_add_and_drop():
    caps = caps_of(build(cap_add=("sys_admin", "CAP_NET_ADMIN"), cap_drop=("NET_RAW", "cap_mknod")))
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_ADMIN" in caps
    assert "CAP_NET_RAW" not in caps and "CAP_MKNOD" not in caps
    assert len(caps) == len(DEFAULT_CAPS)
    assert caps_of(build(cap_add=("CHOWN",))).count("CAP_CHOWN") == 1


def test_cap_drop_all_empties_caps_and_keeps_adds():
    assert caps_of(build(cap_drop=("ALL",))) == []
    assert caps_of(build(cap_drop=("all",), cap_add=("NET_BIND_SERVICE",))) == ["CAP_NET_BIND_SERVICE"]


def test_cap_add_all_minus_drops():
    caps = caps_of(build(cap_add=("ALL",), cap_drop=("SYS_ADMIN",)))
    assert set(caps) == set(ALL_CAPS) - {"CAP_SYS_ADMIN"}


def test_unknown_capability():
    with pytest.raises(UsageError, match='unknown capability: "CAP_SUPERPOWER"'):
        build(cap_add=("SUPERPOWER",))


def test_capability_lists():
    assert len(DEFAULT_CAPS) == 14 and "CAP_NET_BIND_SERVICE" in DEFAULT_CAPS and "CAP_SYS_ADMIN" not in DEFAULT_CAPS
    assert len(ALL_CAPS) == 41 and ALL_CAPS[0] == "CAP_CHOWN" and ALL_CAPS[-1] == "CAP_CHECKPOINT_RESTORE"


def test_cap_add_sys_admin_opens_mount_in_seccomp():
    assert "mount" not in allowed_syscalls(build())
    assert "mount" in allowed_syscalls(build(cap_add=("SYS_ADMIN",)))


def test_privileged_drops_seccomp_masks_and_readonly_sys():
    spec = build(privileged=True)
    assert caps_of(spec) == list(ALL_CAPS)
    linux = spec["linux"]
    assert "seccomp" not in linux and "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert "ro" not in mount_at(spec, "/sys")["options"]
    assert "ro" not in mount_at(spec, "/sys/fs/cgroup")["options"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_privileged_gets_only_the_capabilities_the_host_can_give(monkeypatch):
    monkeypatch.setattr(S, "host_capabilities", lambda: tuple(c for c in ALL_CAPS if c != "CAP_SYS_RESOURCE"))
    assert "CAP_SYS_RESOURCE" not in caps_of(build(privileged=True))


def test_security_opts():
    assert "seccomp" not in build(security_opt=("seccomp=unconfined",))["linux"]
    assert "seccomp" not in build(security_opt=("seccomp:unconfined",))["linux"]  # Docker's legacy form
    assert build(security_opt=("no-new-privileges",))["process"]["noNewPrivileges"] is True
    assert build(security_opt=("no-new-privileges:true",))["process"]["noNewPrivileges"] is True
    assert build(security_opt=("no-new-privileges=false",))["process"]["noNewPrivileges"] is False
    relaxed = build(security_opt=("systempaths=unconfined",))["linux"]
    assert "maskedPaths" not in relaxed and "readonlyPaths" not in relaxed and "seccomp" in relaxed
    assert "seccomp" in build(security_opt=("apparmor=unconfined", "label=disable"))["linux"]  # ignored
    with pytest.raises(UsageError, match="security-opt"):
        build(security_opt=("selinux-magic",))


def test_seccomp_profile_file(tmp_path):
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}))
    sec = build(security_opt=(f"seccomp={profile}",))["linux"]["seccomp"]
    assert sec == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}
    with pytest.raises(UsageError, match="opening seccomp profile"):
        build(security_opt=(f"seccomp={tmp_path / 'missing.json'}",))


def test_read_only_root():
    assert build(read_only=True)["root"] == {"path": "rootfs", "readonly": True}


# --------------------------------------------------------------------------------------------- resources


def test_resources():
    res = build(memory=parse_bytes("512m"), cpus=parse_cpus("1.5"), pids_limit=100)["linux"]["resources"]
    assert res["memory"] == {"limit": 536870912}
    assert res["cpu"] == {"period": 100000, "quota": 150000}
    assert res["pids"] == {"limit": 100}
    assert set(build()["linux"]["resources"]) == {"devices"}
    assert "pids" not in build(pids_limit=-1)["linux"]["resources"]  # Docker: <= 0 is unlimited
    with pytest.raises(UsageError, match="6MB"):
        build(memory=parse_bytes("1m"))


def test_ulimits_in_the_spec():
    rl = {r["type"]: (r["soft"], r["hard"]) for r in build(ulimits=("nofile=1024:2048", "nproc=512"))["process"]["rlimits"]}
    assert rl == {"RLIMIT_NOFILE": (1024, 2048), "RLIMIT_NPROC": (512, 512)}
    rl = {r["type"]: (r["soft"], r["hard"]) for r in build(ulimits=("core=-1",))["process"]["rlimits"]}
    assert rl["RLIMIT_CORE"] == (2**64 - 1, 2**64 - 1)


def test_sysctls():
    sysctl = build(sysctls=("net.core.somaxconn=1024", "kernel.shmmax=68719476736"))["linux"]["sysctl"]
    assert sysctl["net.core.somaxconn"] == "1024" and sysctl["kernel.shmmax"] == "68719476736"
    assert sysctl["net.ipv4.ip_unprivileged_port_start"] == "0"  # Docker's default in a private netns
    assert sysctl["net.ipv4.ping_group_range"] == "0 2147483647"
    assert build(sysctls=("net.ipv4.ip_unprivileged_port_start=1024",))["linux"]["sysctl"][
        "net.ipv4.ip_unprivileged_port_start"] == "1024"
    with pytest.raises(UsageError, match="not allowed"):
        build(sysctls=("kernel.panic=1",))
    with pytest.raises(UsageError, match="host network"):
        build(sysctls=("net.core.somaxconn=1",), network="host")


def test_host_network_shares_the_netns_and_the_hostname(monkeypatch):
    import os

    real = os.uname()
    monkeypatch.setattr(S.os, "uname", lambda: os.uname_result((*real[:1], "the-host", *real[2:])))
    spec = build(network="host")
    assert "network" not in {n["type"] for n in spec["linux"]["namespaces"]}
    assert spec["hostname"] == "the-host"
    assert "sysctl" not in spec["linux"]


@pytest.mark.parametrize("text,expected", [
    ("512m", 536870912), ("512M", 536870912), ("512mb", 536870912), ("512MiB", 536870912), ("1g", 1 << 30),
    ("1.5g", 1610612736), ("100", 100), ("100b", 100), ("64k", 65536), ("2t", 2 << 40), ("1 g", 1 << 30),
])
def test_parse_bytes_like_docker(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "m", "-1", "12x", "1.2.3m", "1e3", "g1"])
def test_parse_bytes_rejects(text):
    with pytest.raises(UsageError, match="invalid size"):
        parse_bytes(text)


def test_parse_cpus():
    assert parse_cpus("1.5") == 1.5 and parse_cpus("2") == 2.0 and parse_cpus("0.01") == 0.01
    for bad in ("abc", "-1", "0.0000000001"):
        with pytest.raises(UsageError):
            parse_cpus(bad)


def test_parse_ulimit():
    u = parse_ulimit("nofile=1024:2048")
    assert (u.oci_type, u.soft, u.hard) == ("RLIMIT_NOFILE", 1024, 2048)
    assert (parse_ulimit("nproc=512").soft, parse_ulimit("nproc=512").hard) == (512, 512)
    for bad, msg in (("nofile", "invalid ulimit argument"), ("bogus=1", "invalid ulimit type"),
                     ("nofile=2048:1024", "soft limit must be less than or equal to hard limit"),
                     ("nofile=a", "invalid ulimit argument"), ("nofile=1:2:3", "too many")):
        with pytest.raises(UsageError, match=msg):
            parse_ulimit(bad)


# ------------------------------------------------------------------------------------------------- mounts


def test_dev_shm_size():
    assert "size=67108864" in mount_at(build(), "/dev/shm")["options"]
    assert "size=134217728" in mount_at(build(shm_size=parse_bytes("128m")), "/dev/shm")["options"]


def test_user_mount_over_dev_shm_replaces_the_default():
    spec = build(mounts=(parse_volume("/srv/shm:/dev/shm"),))
    m = mount_at(spec, "/dev/shm")
    assert m == {"destination": "/dev/shm", "type": "bind", "source": "/srv/shm", "options": ["rbind", "rprivate"]}


def test_user_mount_over_dev_drops_every_default_under_it():
    spec = build(mounts=(parse_volume("/srv/dev:/dev:ro"),))
    assert not [m for m in spec["mounts"] if m["destination"].startswith("/dev/")]


def test_bind_and_tmpfs_mounts():
    spec = build(mounts=(parse_volume("/data:/var/lib/data:ro"), parse_volume("/cache:/cache:rshared,z"),
                         parse_tmpfs("/run:size=64m,mode=1777"),
                         parse_mount("type=tmpfs,dst=/scratch,tmpfs-size=1g,readonly")))
    assert mount_at(spec, "/var/lib/data")["options"] == ["rbind", "ro", "rprivate"]
    assert mount_at(spec, "/cache")["options"] == ["rbind", "rshared"]
    assert spec["linux"]["rootfsPropagation"] == "rshared"
    assert mount_at(spec, "/run") == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                                      "options": ["noexec", "nosuid", "nodev", "rprivate", "size=64m", "mode=1777"]}
    assert mount_at(spec, "/scratch")["options"] == ["noexec", "nosuid", "nodev", "rprivate", "ro", "size=1g"]
    assert mount_at(build(mounts=(parse_tmpfs("/run:exec"),)), "/run")["options"] == [
        "nosuid", "nodev", "rprivate", "exec"]


def test_user_mounts_are_mounted_parents_first():
    spec = build(mounts=(parse_volume("/b:/a/b/c"), parse_volume("/a:/a")))
    user = [m["destination"] for m in spec["mounts"] if m["type"] == "bind"]
    assert user == ["/a", "/a/b/c"]


def test_duplicate_mount_point():
    with pytest.raises(UsageError, match="duplicate mount point: /data"):
        build(mounts=(parse_volume("/x:/data"), parse_tmpfs("/data")))


def test_generated_files_yield_to_the_users_mount():
    ctk_hosts = parse_volume("/var/lib/ctk/c/hosts:/etc/hosts")
    user_hosts = parse_volume("/home/me/hosts:/etc/hosts:ro")
    spec = build(extra_mounts=(ctk_hosts, parse_volume("/var/lib/ctk/c/hostname:/etc/hostname")),
                 mounts=(user_hosts,))
    assert mount_at(spec, "/etc/hosts")["source"] == "/home/me/hosts"
    assert mount_at(spec, "/etc/hostname")["source"] == "/var/lib/ctk/c/hostname"


def test_hooks_and_annotations_verbatim():
    hooks = {"createRuntime": [{"path": "/usr/local/bin/ctk-net", "args": ["ctk-net", "hook", "up"]}]}
    spec = build(hooks=hooks, annotations={"ctk/name": "web"})
    assert spec["hooks"] == hooks and spec["annotations"] == {"ctk/name": "web"}
    assert "hooks" not in build() and "annotations" not in build()
