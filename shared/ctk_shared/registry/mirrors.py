"""Registry mirrors from ``hosts.toml``: each request goes to the mirrors that may serve it, in file order, and to
the upstream registry last, the way containerd's resolver walks its host list.

Which hosts a request may use depends on what it does (containerd's capabilities): resolving a tag needs
``resolve``; fetching by digest (manifests, configs, layers) needs ``pull``; anything that writes needs ``push``.
The upstream can do all three. A mirror that fails (down, slow, or without the content) is skipped for the next
one; a mirror that could not be reached is not asked again by this client, so the parallel layer downloads of one
pull pay the connect limit once. Content is verified by digest wherever it comes from, so a mirror is trusted
for availability only: one that sends bytes not matching their digest is dropped (``distrust``) and the content
is fetched again from the next host (pull.py retries its blobs that way). When every host fails, the error is the upstream's (its class decides the exit code)
with what each mirror answered in front.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import oci
from ..errors import CtkError, IntegrityError, Interrupted, Timeout, Unavailable
from .client import RegistryClient
from .streams import BlobStream

if TYPE_CHECKING:
    from ..auth import Credentials

log = logging.getLogger(__name__)
T = TypeVar("T")


class MirroredClient:
    """The read and write API of :class:`RegistryClient` over an upstream client and its mirrors."""

    def __init__(self, upstream: RegistryClient, mirrors: Sequence[RegistryClient]) -> None:
        self.upstream = upstream
        self.mirrors = tuple(mirrors)
        self.host = upstream.host
        self.settings = upstream.settings
        self.timeouts = upstream.timeouts
        self._unreachable: set[str] = set()
        self._lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        for c in (*self.mirrors, self.upstream):
            c.close()

    def __enter__(self) -> MirroredClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MirroredClient({self.host!r}, mirrors={[m.host for m in self.mirrors]!r})"

    @property
    def base_url(self) -> str:
        return self.upstream.base_url

    # --- host walk ---------------------------------------------------------------------------------
    def _hosts(self, capability: str) -> list[RegistryClient]:
        with self._lock:
            usable = [m for m in self.mirrors
                      if capability in m.settings.capabilities and m.host not in self._unreachable]
        return [*usable, self.upstream]

    def _walk(self, capability: str, call: Callable[[RegistryClient], T]) -> T:
        failed: list[str] = []
        for c in self._hosts(capability):
            if c is self.upstream:
                try:
                    return call(c)
                except CtkError as e:
                    if failed:
                        e.message = f"{e.message} (mirrors: {'; '.join(failed)})"
                        e.args = (e.message,)
                    raise
            try:
                return call(c)
            except Interrupted:
                raise
            except CtkError as e:
                failed.append(f"{c.host}: {e.message}")
                if isinstance(e, IntegrityError):  # a manifest that fails its digest: never ask that mirror again
                    self.distrust(c.host)
                elif isinstance(e, (Unavailable, Timeout)):
                    with self._lock:
                        self._unreachable.add(c.host)
                log.info("mirror %s failed (%s); trying the next host", c.host, e.message)
        raise AssertionError("the upstream is always the last host")

    def distrust(self, host: str) -> bool:
        """A mirror that sent bytes not matching their digest is not asked again by this client."""
        if host == self.upstream.host or host not in {m.host for m in self.mirrors}:
            return False
        with self._lock:
            self._unreachable.add(host)
        log.warning("mirror %s sent content that does not match its digest; not using it again", host)
        return True

    @staticmethod
    def _by_digest(reference: str) -> bool:
        return ":" in reference

    # --- reads -------------------------------------------------------------------------------------
    def check_login(self) -> None:
        self.upstream.check_login()

    def resolve(self, repo: str, reference: str) -> oci.Descriptor:
        return self._walk("resolve", lambda c: c.resolve(repo, reference))

    def get_manifest(self, repo: str, reference: str, size: int | None = None,
                     kind: str = "manifest") -> tuple[bytes, str]:
        cap = "pull" if self._by_digest(reference) else "resolve"
        return self._walk(cap, lambda c: c.get_manifest(repo, reference, size, kind))

    def open_blob(self, repo: str, digest: str, offset: int = 0, length: int | None = None, *,
                  resumable: bool = False) -> BlobStream:
        return self._walk("pull", lambda c: c.open_blob(repo, digest, offset, length, resumable=resumable))

    def list_tags(self, repo: str) -> list[str]:
        return self._walk("resolve", lambda c: c.list_tags(repo))

    # --- writes: the first host that may push (containerd pushes to one host) ---------------------
    def _pusher(self) -> RegistryClient:
        return self._hosts("push")[0]

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self._pusher().blob_exists(repo, digest)

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        return self._pusher().mount_blob(repo, digest, from_repo)

    def upload_blob(self, repo: str, digest: str, size: int, chunks: Iterable[bytes], **kw: Any) -> None:
        self._pusher().upload_blob(repo, digest, size, chunks, **kw)

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        return self._pusher().put_manifest(repo, reference, data, media_type)


def open_registry(host: str, *, insecure: bool, hosts_dirs: Sequence[str],
                  credentials: Callable[[str], Credentials | None] | None,
                  timeout: float | Sequence[float]) -> RegistryClient | MirroredClient:
    """A client for ``host``, walking its ``hosts.toml`` mirrors first when it has any."""
    upstream = RegistryClient(host, insecure=insecure, hosts_dirs=hosts_dirs, credentials=credentials,
                              timeout=timeout)
    if not upstream.settings.mirrors:
        return upstream
    mirrors = [RegistryClient(m.name, credentials=credentials, timeout=timeout, settings=m)
               for m in upstream.settings.mirrors]
    return MirroredClient(upstream, mirrors)
