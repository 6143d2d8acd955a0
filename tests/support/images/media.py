"""Media types, fixed inputs (mtime, PATH, busybox applets, passwd) and digest helpers of the test images."""
from __future__ import annotations

import hashlib
import json
import platform as _platform
from collections.abc import Sequence
from typing import Any, Literal

# --- media types (kept here on purpose: the test images must not depend on the code under test) ------------
OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

Compression = Literal["gzip", "zstd", "none"]
_LAYER_TYPES: dict[tuple[bool, str], str] = {
    (False, "gzip"): OCI_LAYER_GZIP, (False, "zstd"): OCI_LAYER_ZSTD, (False, "none"): OCI_LAYER,
    (True, "gzip"): DOCKER_LAYER_GZIP, (True, "none"): DOCKER_LAYER,
}

CREATED = "2024-01-01T00:00:00Z"
MTIME = 1704067200  # 2024-01-01T00:00:00Z, the mtime of every tar entry
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GZIP_LEVEL = 6  # Go's and containerd's default
ZSTD_LEVEL = 3

BUSYBOX_PATH = "/bin/busybox"  # Debian's busybox-static
BUSYBOX_APPLETS = (
    "[", "[[", "ash", "awk", "basename", "cat", "chmod", "chown", "cmp", "cp", "cut", "date", "dd", "df", "diff",
    "dirname", "du", "echo", "env", "expr", "false", "find", "free", "grep", "gunzip", "gzip", "head", "hostname",
    "httpd", "id", "ip", "ifconfig", "kill", "killall", "less", "ln", "ls", "md5sum", "mkdir", "mkfifo", "mktemp",
    "more", "mount", "mv", "nc", "netstat", "nslookup", "nproc", "ping", "printf", "ps", "pwd", "readlink",
    "realpath", "rm", "rmdir", "route", "sed", "seq", "sh", "sha256sum", "sleep", "sort", "stat", "sync", "tail",
    "tar", "tee", "test", "timeout", "top", "touch", "tr", "true", "umount", "uname", "uniq", "unlink", "uptime",
    "vi", "wc", "wget", "which", "whoami", "xargs", "yes", "zcat",
)
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"


# --- small helpers ---------------------------------------------------------------------------------------
def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(doc: Any) -> bytes:
    """Compact JSON in insertion order: the exact bytes that get digested."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def host_platform() -> tuple[str, str]:
    """(os, GOARCH) of this machine: the platform the local busybox binary runs on."""
    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "386",
            "i386": "386", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
    return ("linux", arch.get(machine, machine))


def platform_string(platform: Sequence[str]) -> str:
    return "/".join(p for p in platform if p)


def _platform_doc(platform: Sequence[str]) -> dict[str, str]:
    doc = {"architecture": platform[1], "os": platform[0]}
    if len(platform) > 2 and platform[2]:
        doc["variant"] = platform[2]
    return doc
