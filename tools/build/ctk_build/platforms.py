"""Target platforms of a build: the ``--platform a,b`` list, and whether this machine can run their programs.

A RUN step of a foreign architecture runs under QEMU user emulation: the kernel's binfmt_misc hands an ELF
binary of that architecture to a registered interpreter (Debian's ``qemu-user-static``). The check below
asks binfmt_misc the question the kernel will ask at ``execve``: does an enabled entry's magic and mask match
an ELF header of that architecture? So it works whatever the entries are named (``scripts/setup``,
binfmt-support and tonistiigi/binfmt all register them differently), and it runs before any step does.

The entry also needs the ``F`` (fix binary) flag: without it the kernel opens the interpreter's path at each
``execve``, inside the container's mount namespace, where ``/usr/libexec/qemu-binfmt/…`` does not exist.
"""
from __future__ import annotations

import os
import struct

from ctk_shared import oci
from ctk_shared.errors import CtkError, UsageError

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
BINFMT_ENV = "CTK_BINFMT_DIR"  # another binfmt_misc directory (tests point it at an empty one)
MAX_ENTRY = 4096  # an entry file is a few hundred bytes; read no more
MAX_ENTRIES = 512

# OCI architecture -> (ELF class: 1 = 32-bit, 2 = 64-bit; data: 1 = little, 2 = big endian; e_machine)
ELF_MACHINES: dict[str, tuple[int, int, int]] = {
    "amd64": (2, 1, 62), "386": (1, 1, 3), "arm64": (2, 1, 183), "arm": (1, 1, 40),
    "ppc64le": (2, 1, 21), "ppc64": (2, 2, 21), "s390x": (2, 2, 22), "riscv64": (2, 1, 243),
    "mips64le": (2, 1, 8), "mips64": (2, 2, 8), "mipsle": (1, 1, 8), "mips": (1, 2, 8), "loong64": (2, 1, 258),
}
# what the host's CPU runs without help (a 64-bit x86 kernel runs 32-bit x86 programs; arm64 most arm ones)
NATIVE_TOO = {"amd64": ("386",), "arm64": ("arm",)}
QEMU_NAMES = {"amd64": "x86_64", "386": "i386", "arm64": "aarch64", "ppc64le": "ppc64le", "mips64le": "mips64el",
              "mipsle": "mipsel", "loong64": "loongarch64"}


def parse_list(text: str) -> tuple[oci.Platform, ...]:
    """``--platform linux/amd64,linux/arm64`` in order, duplicates dropped; ``local`` is this machine's."""
    out: list[oci.Platform] = []
    for word in text.split(","):
        word = word.strip()
        if not word:
            raise UsageError(f"--platform {text!r}: empty platform in the list")
        p = oci.host_platform() if word == "local" else oci.Platform.parse(word)
        if p not in out:
            out.append(p)
    return tuple(out)


def is_native(p: oci.Platform) -> bool:
    host = oci.host_platform()
    return p.os == host.os and (p.architecture == host.architecture
                                or p.architecture in NATIVE_TOO.get(host.architecture, ()))


def elf_header(architecture: str) -> bytes:
    """The first 20 bytes of an executable (``ET_EXEC``) of that architecture, as binfmt_misc sees them."""
    cls, data, machine = ELF_MACHINES[architecture]
    order = "<" if data == 1 else ">"
    return b"\x7fELF" + bytes((cls, data, 1)) + bytes(9) + struct.pack(order + "HH", 2, machine)


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(MAX_ENTRY).decode("ascii", "replace")


def _entry_matches(text: str, header: bytes) -> bool:
    """An entry file (``enabled``, ``interpreter``, ``flags``, ``offset``, ``magic``, ``mask`` lines) whose
    magic matches ``header`` at its offset, under its mask."""
    fields = dict(line.split(" ", 1) for line in text.splitlines()[1:] if " " in line)
    try:
        magic = bytes.fromhex(fields.get("magic", ""))
        offset = int(fields.get("offset", "0"))
        mask = bytes.fromhex(fields["mask"]) if "mask" in fields else b"\xff" * len(magic)
    except ValueError:
        return False
    if not magic or offset < 0 or offset + len(magic) > len(header) or len(mask) != len(magic):
        return False
    window = header[offset:offset + len(magic)]
    return all(w & m == g & m for w, g, m in zip(window, magic, mask))


def emulator_problem(p: oci.Platform, binfmt_dir: str | None = None) -> str | None:
    """Why RUN steps of platform ``p`` cannot run here, as one line naming the fix; None when they can."""
    if is_native(p):
        return None
    if p.os != "linux":
        return f"cannot run {p} programs (RUN steps): only linux programs run here"
    fix = "apt-get install qemu-user-static, then scripts/setup registers it with the F flag"
    if p.architecture not in ELF_MACHINES:
        return f"cannot run {p} programs (RUN steps): no known emulator for architecture {p.architecture!r}"
    directory = binfmt_dir or os.environ.get(BINFMT_ENV) or BINFMT_DIR
    qemu = "qemu-" + QEMU_NAMES.get(p.architecture, p.architecture)
    try:
        status = _read(os.path.join(directory, "status")).strip()
        names = sorted(os.listdir(directory))[:MAX_ENTRIES]
    except OSError:
        return (f"cannot run {p} programs (RUN steps): binfmt_misc is not mounted at {directory} (mount -t binfmt_misc "
                f"binfmt_misc {directory}; scripts/setup does it and registers QEMU)")
    if status != "enabled":
        return f"cannot run {p} programs (RUN steps): binfmt_misc is disabled ({directory}/status; echo 1 > it)"
    header = elf_header(p.architecture)
    without_f = ""
    for name in names:
        if name in ("status", "register"):
            continue
        try:
            text = _read(os.path.join(directory, name))
        except OSError:
            continue
        if not text.startswith("enabled") or not _entry_matches(text, header):
            continue
        flags = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("flags:")), "")
        if "F" in flags:
            return None
        without_f = name
    if without_f:
        return (f"cannot run {p} programs (RUN steps): the binfmt_misc entry {directory}/{without_f} lacks the F flag, "
                f"so its interpreter is not found inside containers (scripts/setup registers it again with F)")
    return (f"cannot run {p} programs (RUN steps): no {qemu} emulator is registered in {directory} (fix: {fix})")


def require_emulator(p: oci.Platform, binfmt_dir: str | None = None) -> None:
    problem = emulator_problem(p, binfmt_dir)
    if problem is not None:
        raise CtkError(problem)
