"""``--platform`` lists and the binfmt_misc check of ctk_build.platforms, against hand-made binfmt directories
(the files the kernel shows under /proc/sys/fs/binfmt_misc), so no machine state is read or changed."""
from __future__ import annotations

from pathlib import Path

import pytest
from ctk_build.platforms import elf_header, emulator_problem, parse_list
from ctk_shared.errors import CtkError
from ctk_shared.oci import Platform, host_platform

# what the kernel shows for Debian's /usr/lib/binfmt.d/qemu-aarch64.conf (flags OPF) and qemu-arm.conf
AARCH64 = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: {flags}
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""
ARM = """enabled
interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P
flags: POF
offset 0
magic 7f454c4601010100000000000000000002002800
mask ffffffffffffff00fffffffffffffffffeffffff
"""
ARM64 = Platform("linux", "arm64")


def binfmt(tmp_path: Path, entries: dict[str, str], status: str = "enabled") -> str:
    d = tmp_path / "binfmt"
    d.mkdir(parents=True)
    (d / "status").write_text(status + "\n")
    (d / "register").write_text("")
    for name, text in entries.items():
        (d / name).write_text(text)
    return str(d)


def test_platform_lists_keep_order_drop_duplicates_and_know_local() -> None:
    assert parse_list("linux/amd64,linux/arm64") == (Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert parse_list("linux/arm64, linux/aarch64 ,arm64") == (ARM64,)
    assert parse_list("local") == (host_platform(),)
    with pytest.raises(CtkError):
        parse_list("linux/amd64,,linux/arm64")


def test_a_registered_entry_is_found_by_its_magic_whatever_its_name(tmp_path: Path) -> None:
    d = binfmt(tmp_path, {"some-other-name": AARCH64.format(flags="OCF"), "qemu-arm": ARM})
    assert emulator_problem(ARM64, d) is None
    assert emulator_problem(Platform("linux", "arm", "v7"), d) is None
    missing = emulator_problem(Platform("linux", "riscv64"), d)
    assert missing is not None and "qemu-riscv64" in missing and "apt-get install qemu-user-static" in missing


def test_an_entry_without_the_f_flag_is_named(tmp_path: Path) -> None:
    d = binfmt(tmp_path, {"qemu-aarch64": AARCH64.format(flags="OP")})
    problem = emulator_problem(ARM64, d)
    assert problem is not None and "qemu-aarch64" in problem and "F flag" in problem


def test_disabled_entries_and_binfmt_do_not_count(tmp_path: Path) -> None:
    d = binfmt(tmp_path, {"qemu-aarch64": AARCH64.format(flags="F").replace("enabled", "disabled", 1)})
    assert "no qemu-aarch64 emulator" in (emulator_problem(ARM64, d) or "")
    off = binfmt(tmp_path / "off", {"qemu-aarch64": AARCH64.format(flags="F")}, status="disabled")
    assert "disabled" in (emulator_problem(ARM64, off) or "")
    assert "not mounted" in (emulator_problem(ARM64, str(tmp_path / "nothing")) or "")


def test_native_platforms_need_no_emulator(tmp_path: Path) -> None:
    assert emulator_problem(host_platform(), str(tmp_path / "nothing")) is None


def test_elf_headers_match_the_kernels_magic() -> None:
    assert elf_header("arm64")[:4] == b"\x7fELF" and elf_header("arm64")[18:20] == b"\xb7\x00"
    assert elf_header("s390x")[5] == 2 and elf_header("s390x")[18:20] == b"\x00\x16"  # big endian
