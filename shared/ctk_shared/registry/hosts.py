"""Per-registry transport settings: scheme, TLS verification, CA files and client certificates.

Read the way containerd and nerdctl read them, from the first hosts directory (``--hosts-dir``,
default ``/etc/containerd/certs.d`` then ``/etc/docker/certs.d``) that has a ``<host[:port]>/``
sub-directory (Docker Hub's is ``docker.io``):

* ``hosts.toml`` (containerd): ``server``, and ``ca`` / ``client`` / ``skip_verify`` at the top level or
  in a ``[host."https://<the same host>"]`` table. Relative paths are relative to the directory.
  Mirror tables for other hosts are not used (logged at debug level).
* Docker-style files (when there is no ``hosts.toml``): every ``*.crt`` is a CA; each ``*.cert`` needs
  the ``*.key`` of the same name.

Schemes: https, with plain http as a fallback only for loopback hosts (127.0.0.0/8, localhost, ::1)
or when ``insecure`` (nerdctl's ``--insecure-registry``, which also skips TLS verification). A scheme
named explicitly in ``hosts.toml`` is used as is.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_HOSTS_DIRS = ("/etc/containerd/certs.d", "/etc/docker/certs.d")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class HostSettings:
    name: str  # the registry as named in image refs: docker.io, 127.0.0.1:5000
    api_host: str  # where requests go: registry-1.docker.io, or hosts.toml's server
    schemes: tuple[str, ...]  # tried in order until one answers
    verify: bool = True
    ca_files: tuple[str, ...] = ()
    client_cert: tuple[str, str] | None = None
    certs_dir: str = ""  # where a CA for this host goes (named in hints)
    source: str = ""  # the directory the settings came from, "" for defaults
    insecure: bool = False

    @property
    def loopback(self) -> bool:
        return is_loopback(self.api_host)

    def base_url(self, scheme: str) -> str:
        return f"{scheme}://{self.api_host}"


def split_host_port(host: str) -> tuple[str, str]:
    """``reg:5000`` → (``reg``, ``5000``); ``[::1]:5000`` → (``::1``, ``5000``); no port → ``""``."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, ""
        return host[1:end], host[end + 2:] if host[end + 1:end + 2] == ":" else ""
    if host.count(":") == 1:
        h, _, p = host.partition(":")
        return h, p
    return host, ""


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port (Go's docker.MatchLocalhost)."""
    h, _ = split_host_port(host)
    h = h.lower().rstrip(".")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def canonical_name(host: str) -> str:
    h = host.strip().lower()
    return DOCKER_HUB if h in _HUB_ALIASES else h


def _dir_names(name: str) -> list[str]:
    if name == DOCKER_HUB:
        return [DOCKER_HUB, "index.docker.io", DOCKER_HUB_API]
    return [name]


def _abs(dir_: Path, p: str) -> str:
    return str(Path(p) if os.path.isabs(p) else dir_ / p)


def _path_list(value: Any, dir_: Path, what: str, toml: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [_abs(dir_, value)]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [_abs(dir_, v) for v in value]
    raise InvalidArgument(f"{toml}: {what} must be a path or a list of paths")


def _client_pairs(value: Any, dir_: Path, toml: Path) -> list[tuple[str, str]]:
    """``client`` may be ``"both.pem"``, ``["a.pem"]`` or ``[["cert", "key"], …]``."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidArgument(f"{toml}: client must be a path or a list of [cert, key] pairs")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            pairs.append((_abs(dir_, item), _abs(dir_, item)))  # a PEM file holding cert and key
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
            pairs.append((_abs(dir_, item[0]), _abs(dir_, item[1])))
        else:
            raise InvalidArgument(f"{toml}: client entries must be paths or [cert, key] pairs")
    return pairs


def _url_host(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a hosts.toml server/host key; no scheme means https."""
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


@dataclass
class _Found:
    server_scheme: str = ""
    server_host: str = ""
    skip_verify: bool | None = None
    ca: tuple[str, ...] = ()
    clients: tuple[tuple[str, str], ...] = ()


def _read_hosts_toml(toml: Path, name: str) -> _Found:
    try:
        doc = tomllib.loads(toml.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"{toml}: {e}") from None
    except OSError as e:
        raise InvalidArgument(f"reading {toml}: {e.strerror or e}") from None
    dir_ = toml.parent
    found = _Found()
    server = doc.get("server")
    if server is not None:
        if not isinstance(server, str):
            raise InvalidArgument(f"{toml}: server must be a URL string")
        found.server_scheme, found.server_host = _url_host(server)
    target = found.server_host or name

    def apply(table: dict[str, Any]) -> None:
        if "skip_verify" in table:
            if not isinstance(table["skip_verify"], bool):
                raise InvalidArgument(f"{toml}: skip_verify must be true or false")
            found.skip_verify = table["skip_verify"]
        found.ca += tuple(_path_list(table.get("ca"), dir_, "ca", toml))
        found.clients += tuple(_client_pairs(table.get("client"), dir_, toml))

    apply(doc)
    hosts = doc.get("host") or {}
    if not isinstance(hosts, dict):
        raise InvalidArgument(f"{toml}: [host] must be a table of tables")
    for key, table in hosts.items():
        if not isinstance(table, dict):
            raise InvalidArgument(f"{toml}: [host.{key!r}] must be a table")
        scheme, h = _url_host(key)
        if h == target or (not found.server_host and canonical_name(h) == name):
            apply(table)
            if "://" in key:
                found.server_scheme = scheme
        else:
            log.debug("%s: mirror %s is not used by ctk", toml, key)
    return found


def _read_docker_dir(dir_: Path) -> _Found:
    """``*.crt`` CAs and ``*.cert``/``*.key`` client pairs, as Docker's certs.d reads them."""
    found = _Found()
    try:
        entries = sorted(p for p in dir_.iterdir() if p.is_file())
    except OSError as e:
        raise InvalidArgument(f"reading {dir_}: {e.strerror or e}") from None
    cas: list[str] = []
    clients: list[tuple[str, str]] = []
    for p in entries:
        if p.suffix == ".crt":
            cas.append(str(p))
        elif p.suffix == ".cert":
            key = p.with_suffix(".key")
            if not key.is_file():
                raise InvalidArgument(f"{dir_}: missing key {key.name} for client certificate {p.name}")
            clients.append((str(p), str(key)))
        elif p.suffix == ".key" and not p.with_suffix(".cert").is_file():
            raise InvalidArgument(f"{dir_}: missing client certificate {p.stem}.cert for key {p.name}")
    found.ca = tuple(cas)
    found.clients = tuple(clients)
    return found


def host_settings(host: str, *, insecure: bool = False,
                  hosts_dirs: Sequence[str] = DEFAULT_HOSTS_DIRS) -> HostSettings:
    """How to talk to registry ``host`` (``docker.io``, ``reg.example:5000``, ``127.0.0.1:5000``)."""
    name = canonical_name(host)
    if not name:
        raise InvalidArgument("empty registry host")
    api_host = DOCKER_HUB_API if name == DOCKER_HUB else name
    dir_names = _dir_names(name)
    found = _Found()
    source = ""
    for root in hosts_dirs:
        for dn in dir_names:
            d = Path(root) / dn
            if d.is_dir():
                source = str(d)
                toml = d / "hosts.toml"
                # as containerd: hosts.toml if present, else Docker's certificate files
                found = _read_hosts_toml(toml, name) if toml.is_file() else _read_docker_dir(d)
                break
        if source:
            break
    certs_dir = source or str(Path(hosts_dirs[0] if hosts_dirs else DEFAULT_HOSTS_DIRS[0]) / dir_names[0])
    if found.server_host:
        api_host = found.server_host
    for f in found.ca:
        if not os.path.isfile(f):
            raise InvalidArgument(f"CA file {f} for {name} does not exist", hint=f"check {source}")
    for cert, key in found.clients:
        for f in (cert, key):
            if not os.path.isfile(f):
                raise InvalidArgument(f"client certificate file {f} for {name} does not exist", hint=f"check {source}")
    if len(found.clients) > 1:
        log.debug("%s: %d client certificates configured; using %s", name, len(found.clients), found.clients[0][0])

    if found.server_scheme:
        schemes: tuple[str, ...] = (found.server_scheme,)
        if insecure and found.server_scheme == "https":
            schemes = ("https", "http")
    elif insecure or is_loopback(api_host):
        schemes = ("https", "http")
    else:
        schemes = ("https",)
    verify = not insecure and not found.skip_verify
    return HostSettings(name=name, api_host=api_host, schemes=schemes, verify=verify, ca_files=found.ca,
                        client_cert=found.clients[0] if found.clients else None, certs_dir=certs_dir,
                        source=source, insecure=insecure)

