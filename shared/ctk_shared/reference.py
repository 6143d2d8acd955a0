"""Image references parsed and normalised exactly as Docker does.

``nginx`` → ``docker.io/library/nginx:latest``; a first component with a dot, a colon or equal to
``localhost`` is a registry host; tags and digests may both be present (the digest wins on pull).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference, normalised as Docker does (``nginx`` is ``docker.io/library/nginx:latest``)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        """Repository with its host: ``docker.io/library/nginx``."""
        return f"{self.domain}/{self.path}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def familiar(self) -> str:
        """The short form Docker shows (``nginx:alpine``, ``user/app:1``)."""
        name = self.path if self.domain == DEFAULT_DOMAIN else self.name
        if self.domain == DEFAULT_DOMAIN and name.startswith(OFFICIAL_REPO_PREFIX) and name.count("/") == 1:
            name = name[len(OFFICIAL_REPO_PREFIX):]
        s = name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse a user-typed reference; ``default_tag`` adds ``:latest`` when neither tag nor digest is given."""
    s = text.strip()
    if not s:
        raise UsageError("invalid reference format: empty image name")
    if s.startswith("docker://"):
        s = s[len("docker://"):]
    digest = ""
    if "@" in s:
        s, digest = s.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise UsageError(f"invalid reference format: bad digest in {text!r}")
        algo, hexpart = digest.split(":", 1)
        if algo.lower() not in ("sha256", "sha384", "sha512"):
            raise UsageError(f"invalid reference format: unsupported digest algorithm {algo!r} in {text!r}",
                             hint="digests are sha256:<64 hex digits> (sha384 and sha512 also work)")
        if algo == "sha256" and len(hexpart) != 64:
            raise UsageError(f"invalid reference format: sha256 digest must have 64 hex digits in {text!r}")
        digest = digest.lower()
    tag = ""
    last_slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > last_slash:
        s, tag = s[:colon], s[colon + 1:]
        if not _TAG_RE.match(tag):
            raise UsageError(f"invalid reference format: bad tag {tag!r} in {text!r}")
    domain, path = _split_domain(s)
    if not _PATH_RE.match(path):
        if path.lower() != path and _PATH_RE.match(path.lower()):
            raise UsageError(f"invalid reference format: repository name must be lowercase: {text!r}")
        raise UsageError(f"invalid reference format: {text!r}")
    if domain != DEFAULT_DOMAIN and not _DOMAIN_RE.match(domain):
        raise UsageError(f"invalid reference format: bad registry host {domain!r} in {text!r}")
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise UsageError(f"invalid reference format: repository name longer than {MAX_NAME_LENGTH} characters")
    if default_tag and not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def is_loopback_host(host: str) -> bool:
    """Registries on loopback may speak plain HTTP, as in Docker and containerd."""
    h = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    h = h.strip("[]")
    return h == "localhost" or h == "::1" or h.startswith("127.")
