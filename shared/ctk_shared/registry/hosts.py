"""Per-registry transport settings: scheme, TLS verification, CA files and client certificates.

Read the way containerd and nerdctl read them, from the first hosts directory (``--hosts-dir``,
default ``/etc/containerd/certs.d`` then ``/etc/docker/certs.d``) that has a ``<host[:port]>/``
sub-directory (Docker Hub's is ``docker.io``):

* ``hosts.toml`` (containerd): ``server``, and ``ca`` / ``client`` / ``skip_verify`` / ``header`` at the top level
  or in a ``[host."https://<the same host>"]`` table. Relative paths are relative to the directory.
  ``[host."…"]`` tables for other hosts are mirrors, tried in file order before the upstream (``server``, or
  the registry itself) for what their ``capabilities`` allow (``pull``, ``resolve``, ``push``; all three when
  not given, as containerd), each with its own ``ca`` / ``client`` / ``skip_verify`` / ``header``, and
  ``override_path`` when the URL's path is the API root itself (otherwise ``/v2`` is appended to it).
  A directory ``_default`` holds the settings of every registry that has no directory of its own.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_HOSTS_DIRS = ("/etc/containerd/certs.d", "/etc/docker/certs.d")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_DIR = "_default"
CAPABILITIES = frozenset({"pull", "resolve", "push"})


@dataclass(frozen=True)
class HostSettings:
    """How to reach one registry (or mirror): where requests go, over which schemes, with which TLS and headers."""

    name: str  # the registry as named in image refs: docker.io, 127.0.0.1:5000
    api_host: str  # where requests go: registry-1.docker.io, or hosts.toml's server
    schemes: tuple[str, ...]  # tried in order until one answers
    verify: bool = True
    ca_files: tuple[str, ...] = ()
    client_cert: tuple[str, str] | None = None
    certs_dir: str = ""  # where a CA for this host goes (named in hints)
    source: str = ""  # the directory the settings came from, "" for defaults
    insecure: bool = False
    path: str = "/v2"  # the API root on api_host
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (hosts.toml ``header``)
    capabilities: frozenset[str] = CAPABILITIES
    namespace: str = ""  # for a mirror: the registry it stands in for, sent as ``?ns=`` (as containerd does)
    mirrors: tuple[HostSettings, ...] = ()  # tried in order before this host, for their capabilities

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
    scheme, host, _ = _url_parts(url)
    return scheme, host


def _url_parts(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path without a trailing slash) of a hosts.toml server/host key."""
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


@dataclass
class _Found:
    """What one ``hosts.toml`` says: its ``server``, TLS settings and headers, and the mirrors' ``[host]`` tables."""

    server_scheme: str = ""
    server_host: str = ""
    server_path: str = ""
    skip_verify: bool | None = None
    ca: tuple[str, ...] = ()
    clients: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    mirrors: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)  # scheme, host, path, table


def _headers(value: Any, toml: Path) -> tuple[tuple[str, str], ...]:
    """``header = {X-A = "v", X-B = ["v1", "v2"]}``: several values of one header are sent comma-joined."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidArgument(f"{toml}: header must be a table of header names")
    out: list[tuple[str, str]] = []
    for k, v in value.items():
        values = [v] if isinstance(v, str) else v
        if not (isinstance(values, list) and values and all(isinstance(x, str) for x in values)) \
                or any(c in x for x in (k, *values) for c in "\r\n\0"):
            raise InvalidArgument(f"{toml}: header {k!r} must be a string or a list of strings on one line")
        out.append((k, ", ".join(values)))
    return tuple(out)


def _capabilities(value: Any, toml: Path, key: str) -> frozenset[str]:
    if value is None:
        return CAPABILITIES
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise InvalidArgument(f"{toml}: [host.{key!r}] capabilities must be a list of strings")
    unknown = sorted(set(value) - CAPABILITIES)
    if unknown:
        raise InvalidArgument(f"{toml}: [host.{key!r}] unknown capability {unknown[0]!r}",
                              hint="capabilities are pull, resolve and push")
    return frozenset(value)


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
        found.server_scheme, found.server_host, found.server_path = _url_parts(server)
    target = found.server_host or name

    def apply(table: dict[str, Any]) -> None:
        if "skip_verify" in table:
            if not isinstance(table["skip_verify"], bool):
                raise InvalidArgument(f"{toml}: skip_verify must be true or false")
            found.skip_verify = table["skip_verify"]
        found.ca += tuple(_path_list(table.get("ca"), dir_, "ca", toml))
        found.clients += tuple(_client_pairs(table.get("client"), dir_, toml))
        found.headers += _headers(table.get("header"), toml)

    apply(doc)
    hosts = doc.get("host") or {}
    if not isinstance(hosts, dict):
        raise InvalidArgument(f"{toml}: [host] must be a table of tables")
    for key, table in hosts.items():
        if not isinstance(table, dict):
            raise InvalidArgument(f"{toml}: [host.{key!r}] must be a table")
        scheme, h, path = _url_parts(key)
        if not h:
            raise InvalidArgument(f"{toml}: [host.{key!r}] names no host")
        if h == target or (not found.server_host and canonical_name(h) == name):
            apply(table)
            if "://" in key:
                found.server_scheme = scheme
        else:
            found.mirrors.append((scheme, h, path, table))
    return found


def _mirror(scheme: str, host: str, path: str, table: dict[str, Any], *, upstream: str, toml: Path,
            insecure: bool) -> HostSettings:
    """One ``[host."URL"]`` table of another host: a mirror of ``upstream``."""
    dir_ = toml.parent
    skip = table.get("skip_verify", False)
    if not isinstance(skip, bool):
        raise InvalidArgument(f"{toml}: skip_verify must be true or false")
    override = table.get("override_path", False)
    if not isinstance(override, bool):
        raise InvalidArgument(f"{toml}: override_path must be true or false")
    clients = _client_pairs(table.get("client"), dir_, toml)
    st = HostSettings(name=host, api_host=host, schemes=(scheme,), verify=not (skip or insecure),
                      ca_files=tuple(_path_list(table.get("ca"), dir_, "ca", toml)),
                      client_cert=clients[0] if clients else None, certs_dir=str(dir_), source=str(dir_),
                      insecure=insecure, path=path if override else f"{path}/v2",
                      headers=_headers(table.get("header"), toml),
                      capabilities=_capabilities(table.get("capabilities"), toml, f"{scheme}://{host}{path}"),
                      namespace=upstream)
    _check_files(st)
    return st


def _check_files(st: HostSettings, extra_clients: Sequence[tuple[str, str]] = ()) -> None:
    for f in st.ca_files:
        if not os.path.isfile(f):
            raise InvalidArgument(f"CA file {f} for {st.name} does not exist", hint=f"check {st.source}")
    for f in [*(st.client_cert or ()), *(x for pair in extra_clients for x in pair)]:
        if not os.path.isfile(f):
            raise InvalidArgument(f"client certificate file {f} for {st.name} does not exist",
                                  hint=f"check {st.source}")


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
    toml = Path()
    for candidates in (dir_names, [DEFAULT_DIR]):  # a registry's own directory wins over _default anywhere
        for root in hosts_dirs:
            for dn in candidates:
                d = Path(root) / dn
                if d.is_dir():
                    source = str(d)
                    toml = d / "hosts.toml"
                    # as containerd: hosts.toml if present, else Docker's certificate files
                    found = _read_hosts_toml(toml, name) if toml.is_file() else _read_docker_dir(d)
                    break
            if source:
                break
        if source:
            break
    certs_dir = source or str(Path(hosts_dirs[0] if hosts_dirs else DEFAULT_HOSTS_DIRS[0]) / dir_names[0])
    if found.server_host:
        api_host = found.server_host
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
    mirrors = tuple(_mirror(scheme, h, path, table, upstream=name, toml=toml, insecure=insecure)
                    for scheme, h, path, table in found.mirrors)
    settings = HostSettings(name=name, api_host=api_host, schemes=schemes, verify=verify, ca_files=found.ca,
                            client_cert=found.clients[0] if found.clients else None, certs_dir=certs_dir,
                            source=source, insecure=insecure, path=f"{found.server_path}/v2",
                            headers=found.headers, mirrors=mirrors)
    _check_files(settings, extra_clients=found.clients[1:])
    return settings

