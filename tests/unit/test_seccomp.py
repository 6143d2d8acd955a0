"""Docker's default seccomp profile and Docker-format profiles, resolved into the OCI form runc reads."""
import json

import pytest
from ctk_shared import seccomp
from ctk_shared.errors import UsageError
from ctk_shared.ocispec import DEFAULT_CAPS

DEFAULT = set(DEFAULT_CAPS)
MASK = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def profile(caps=DEFAULT, arch="x86_64", kernel="6.1.0"):
    return seccomp.default_profile(caps, arch, kernel=kernel)


def rules_for(p, name):
    return [r for r in p.get("syscalls", []) if name in r["names"]]


def unconditionally_allowed(p, name):
    return any(r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for r in rules_for(p, name))


def test_default_denies_with_eperm_and_allows_about_three_hundred_syscalls():
    p = profile()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    allowed = {n for r in p["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}
    assert len(allowed) > 300
    assert {"read", "write", "openat", "execve", "futex", "epoll_wait", "chroot", "ptrace"} <= allowed
    # what keeps a container in its box
    for name in ("mount", "umount2", "unshare", "setns", "reboot", "init_module", "kexec_load", "bpf", "keyctl",
                 "add_key", "pivot_root", "swapon", "open_by_handle_at", "sethostname", "iopl", "acct", "syslog",
                 "settimeofday", "clock_settime", "vhangup", "mbind", "userfaultfd", "io_uring_setup"):
        assert not unconditionally_allowed(p, name), name


@pytest.mark.parametrize("cap,syscalls", [
    ("CAP_SYS_ADMIN", ["mount", "umount2", "unshare", "setns", "sethostname", "setdomainname", "bpf", "clone3"]),
    ("CAP_SYS_BOOT", ["reboot"]),
    ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
    ("CAP_SYS_PACCT", ["acct"]),
    ("CAP_SYS_PTRACE", ["kcmp", "process_vm_readv", "process_vm_writev", "ptrace"]),
    ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
    ("CAP_SYS_TIME", ["settimeofday", "stime", "clock_settime"]),
    ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
    ("CAP_SYS_NICE", ["get_mempolicy", "mbind", "set_mempolicy"]),
    ("CAP_SYSLOG", ["syslog"]),
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
])
def test_capabilities_open_their_syscalls(cap, syscalls):
    without, with_cap = profile(), profile(DEFAULT | {cap})
    for name in syscalls:
        assert unconditionally_allowed(with_cap, name), (cap, name)
    assert any(not unconditionally_allowed(without, n) for n in syscalls)


def test_chroot_follows_cap_sys_chroot():
    assert unconditionally_allowed(profile(), "chroot")
    assert not unconditionally_allowed(profile(DEFAULT - {"CAP_SYS_CHROOT"}), "chroot")


def test_clone_without_sys_admin_is_limited_to_no_new_namespaces():
    p = profile()
    [clone] = rules_for(p, "clone")
    assert clone["action"] == "SCMP_ACT_ALLOW"
    assert clone["args"] == [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    assert clone["args"][0]["value"] == MASK
    [clone3] = rules_for(p, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    admin = profile(DEFAULT | {"CAP_SYS_ADMIN"})
    assert unconditionally_allowed(admin, "clone") and unconditionally_allowed(admin, "clone3")
    assert not any(r.get("args") for r in rules_for(admin, "clone"))


def test_personality_only_for_known_personas():
    values = sorted(r["args"][0]["value"] for r in rules_for(profile(), "personality"))
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(r["args"][0]["op"] == "SCMP_CMP_EQ" for r in rules_for(profile(), "personality"))


def test_socket_everything_but_vsock():
    [rule] = rules_for(profile(), "socket")
    assert rule["args"] == [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]


@pytest.mark.parametrize("arch,arches,only_here,not_here", [
    ("x86_64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "arch_prctl", "cacheflush"),
    ("amd64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "modify_ldt", "set_tls"),
    ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], "cacheflush", "arch_prctl"),
    ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"], "s390_runtime_instr", "modify_ldt"),
])
def test_architectures(arch, arches, only_here, not_here):
    p = profile(arch=arch)
    assert p["architectures"] == arches
    assert unconditionally_allowed(p, only_here) and not unconditionally_allowed(p, not_here)


def test_s390_clone_filters_its_second_argument():
    [clone] = rules_for(profile(arch="s390x"), "clone")
    assert clone["args"][0]["index"] == 1


def test_ptrace_needs_kernel_4_8():
    assert unconditionally_allowed(profile(kernel="4.8.0"), "ptrace")
    assert unconditionally_allowed(profile(kernel="6.18.44-fc-v595"), "ptrace")
    assert not unconditionally_allowed(profile(kernel="4.4.0-210-generic"), "ptrace")


def test_docker_default_profile_is_docker_json_and_round_trips(tmp_path):
    docker = seccomp.docker_default_profile()
    assert {"defaultAction", "archMap", "syscalls"} <= docker.keys()
    path = tmp_path / "default.json"
    path.write_text(json.dumps(docker))
    assert seccomp.load_profile(path, DEFAULT, "x86_64", kernel="6.1") == profile()


def test_docker_format_profile_conditions(tmp_path):
    path = tmp_path / "custom.json"
    path.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "ignored"},
            {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "excludes": {"caps": ["CAP_FOWNER"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["newthing"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        ],
    }))
    p = seccomp.load_profile(path, {"CAP_CHOWN"}, "x86_64", kernel="6.1")
    assert p == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
        ],
    }
    p = seccomp.load_profile(path, {"CAP_SYS_ADMIN", "CAP_FOWNER"}, "aarch64", kernel="6.1")
    assert [r["names"] for r in p["syscalls"]] == [["read", "write"], ["getpid"], ["mount"], ["kill"]]
    assert p["architectures"] == ["SCMP_ARCH_AARCH64"]


def test_old_style_architectures_list_is_kept(tmp_path):
    p = seccomp.to_oci({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}, set(), "x86_64")
    assert p == {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}


@pytest.mark.parametrize("doc,message", [
    ({"architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]},
     "use either 'architectures' or 'archMap'"),
    ({"syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}, "use either 'name' or 'names'"),
])
def test_contradictory_profiles(doc, message):
    with pytest.raises(UsageError, match=message):
        seccomp.to_oci(doc, set(), "x86_64")


def test_unreadable_profiles(tmp_path):
    with pytest.raises(UsageError, match="opening seccomp profile"):
        seccomp.load_profile(tmp_path / "nope.json", DEFAULT)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match="decoding seccomp profile failed"):
        seccomp.load_profile(bad, DEFAULT)
