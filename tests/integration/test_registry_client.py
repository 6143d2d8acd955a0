"""RegistryClient against real CNCF distribution registries (plain, TLS + Basic auth, Bearer token auth).

Only three protocol corners the real registry cannot produce (a manifest over 4 MiB — distribution
itself refuses to store one —, a server ignoring Range, a HEAD without digest headers) use a tiny
fake server on loopback.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from ctk_shared import auth, oci
from ctk_shared.auth import Credentials
from ctk_shared.errors import IntegrityError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from ctk_shared.registry import errors as rerr
from ctk_shared.registry.client import RegistryClient
from ctk_shared.registry.tokens import cache_key

from tests.support.registry_daemon import RegistryDaemon, free_port
from tests.support.registry_fixtures import IDENTITY_TOKEN, REGISTRY_PASSWORD, REGISTRY_USER

pytestmark = pytest.mark.integration

GOOD = Credentials(REGISTRY_USER, REGISTRY_PASSWORD)


def code_of(e: BaseException) -> str:
    """The OCI error code a registry error carries."""
    assert isinstance(e, rerr.RegistryError), type(e)
    return e.code


def repo_name(prefix: str = "t") -> str:
    return f"ctk-test/{prefix}-{uuid.uuid4().hex[:10]}"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pieces(data: bytes, n: int) -> Iterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i:i + n]


def blob(size: int, seed: str = "") -> bytes:
    block = hashlib.sha256(f"{seed}{size}".encode()).digest() * 2048  # 64 KiB, not compressible to nothing
    return (block * (size // len(block) + 1))[:size]


def push_image(c: RegistryClient, repo: str, tag: str, media_type: str = oci.OCI_MANIFEST) -> tuple[bytes, str, bytes]:
    """A minimal image (config + one layer) pushed under ``tag``; returns (manifest, digest, layer)."""
    layer = blob(300_000, repo)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}}).encode()
    for data in (config, layer):
        c.upload_blob(repo, digest_of(data), len(data), [data])
    docker = media_type == oci.DOCKER_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG, "digest": digest_of(config),
                   "size": len(config)},
        "layers": [{"mediaType": oci.DOCKER_LAYER_GZIP if docker else oci.OCI_LAYER_GZIP,
                    "digest": digest_of(layer), "size": len(layer)}],
    }).encode()
    digest = c.put_manifest(repo, tag, manifest, media_type)
    return manifest, digest, layer


@pytest.fixture(scope="module")
def plain(registry: RegistryDaemon) -> Iterator[RegistryClient]:
    with RegistryClient(registry.host, hosts_dirs=()) as c:
        yield c


def tls_client(reg: RegistryDaemon, creds: Credentials | None = GOOD, **kw: object) -> RegistryClient:
    assert reg.certs_dir is not None
    kw.setdefault("hosts_dirs", (str(reg.certs_dir),))
    return RegistryClient(reg.host, credentials=(lambda host: creds), **kw)  # type: ignore[arg-type]


# --- plain registry ----------------------------------------------------------------------------
def test_loopback_registry_is_reached_over_plain_http(plain: RegistryClient) -> None:
    assert plain.base_url.startswith("http://127.0.0.1:")


def test_monolithic_upload_exists_and_reads_back(plain: RegistryClient) -> None:
    repo = repo_name("mono")
    data = blob(3 << 20, "mono")
    d = digest_of(data)
    assert not plain.blob_exists(repo, d)
    plain.upload_blob(repo, d, len(data), pieces(data, 100_000))
    assert plain.blob_exists(repo, d)
    with plain.open_blob(repo, d) as s:
        assert s.size == len(data)
        assert b"".join(s) == data


def test_chunked_upload(plain: RegistryClient) -> None:
    repo = repo_name("chunked")
    data = blob((5 << 20) // 2, "chunked")
    d = digest_of(data)
    plain.upload_blob(repo, d, len(data), pieces(data, 333_333), chunk_size=(1 << 20) + 7)
    assert plain.blob_exists(repo, d)
    assert b"".join(plain.open_blob(repo, d)) == data
    empty = b""
    plain.upload_blob(repo, digest_of(empty), 0, [], chunk_size=1 << 20)
    assert plain.blob_exists(repo, digest_of(empty))


def test_upload_with_wrong_digest_or_size_fails_cleanly(plain: RegistryClient) -> None:
    repo = repo_name("bad")
    data = blob(1000, "bad")
    with pytest.raises(IntegrityError) as exc:
        plain.upload_blob(repo, digest_of(b"something else"), len(data), [data])
    assert code_of(exc.value) == "DIGEST_INVALID"
    with pytest.raises(IntegrityError, match="only 1000 of the declared 2000 bytes"):
        plain.upload_blob(repo, digest_of(data), 2000, [data])  # must not hang waiting for bytes
    with pytest.raises(IntegrityError, match="more than the declared"):
        plain.upload_blob(repo, digest_of(data), 10, [data], chunk_size=4)


def test_mount_across_repositories(plain: RegistryClient, registry: RegistryDaemon) -> None:
    src, dst = repo_name("src"), repo_name("dst")
    data = blob(200_000, "mount")
    d = digest_of(data)
    plain.upload_blob(src, d, len(data), [data])
    assert plain.mount_blob(dst, d, src) is True
    assert plain.blob_exists(dst, d)
    # declined mount: False, and the upload the registry opened instead is cancelled
    missing = digest_of(b"never uploaded")
    other = repo_name("declined")
    assert plain.mount_blob(other, missing, src) is False
    uploads = registry.base_dir / "data/docker/registry/v2/repositories" / other / "_uploads"
    # distribution 2.8 leaves an empty hashstates/ behind on cancel; the session files are gone
    assert not list(uploads.glob("*/startedat")) and not list(uploads.glob("*/data"))


@pytest.mark.parametrize("media_type", [oci.OCI_MANIFEST, oci.DOCKER_MANIFEST])
def test_manifest_put_get_resolve_by_tag_and_digest(plain: RegistryClient, media_type: str) -> None:
    repo = repo_name("img")
    manifest, digest, _ = push_image(plain, repo, "v1", media_type)
    assert digest == digest_of(manifest)
    for ref in ("v1", digest):
        desc = plain.resolve(repo, ref)
        assert (desc.media_type, desc.digest, desc.size) == (media_type, digest, len(manifest))
        assert plain.get_manifest(repo, ref) == (manifest, media_type)
    index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        {"mediaType": media_type, "digest": digest, "size": len(manifest),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    assert plain.put_manifest(repo, digest_of(index), index, oci.OCI_INDEX) == digest_of(index)
    plain.put_manifest(repo, "multi", index, oci.OCI_INDEX)
    assert plain.resolve(repo, "multi") == oci.Descriptor(oci.OCI_INDEX, digest_of(index), len(index))
    assert sorted(plain.list_tags(repo)) == ["multi", "v1"]


def test_manifest_digest_is_verified(plain: RegistryClient) -> None:
    repo = repo_name("verify")
    manifest, _, _ = push_image(plain, repo, "v1")
    with pytest.raises(IntegrityError):
        plain.put_manifest(repo, digest_of(b"other"), manifest, oci.OCI_MANIFEST)


def test_range_resume(plain: RegistryClient) -> None:
    repo = repo_name("range")
    data = blob(2_500_000, "range")
    d = digest_of(data)
    plain.upload_blob(repo, d, len(data), [data])
    for offset in (1, 1 << 20, len(data) - 1):
        with plain.open_blob(repo, d, offset) as s:
            assert (s.offset, s.size) == (offset, len(data))
            assert b"".join(s) == data[offset:]


def test_parallel_downloads_share_one_client(plain: RegistryClient) -> None:
    repo = repo_name("par")
    blobs = [blob(400_000, f"par{i}") for i in range(8)]
    for b in blobs:
        plain.upload_blob(repo, digest_of(b), len(b), [b])
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda b: b"".join(plain.open_blob(repo, digest_of(b))), blobs))
    assert got == blobs


def test_not_found(plain: RegistryClient) -> None:
    repo = repo_name("nf")
    push_image(plain, repo, "v1")
    missing = digest_of(b"missing")
    with pytest.raises(NotFound) as exc:
        plain.get_manifest(repo, "nope")
    assert code_of(exc.value) == "MANIFEST_UNKNOWN" and "nope" in str(exc.value)
    with pytest.raises(NotFound) as exc:
        plain.resolve(repo, "nope")
    assert code_of(exc.value) == "MANIFEST_UNKNOWN"
    with pytest.raises(NotFound) as exc:
        plain.open_blob(repo, missing)
    assert code_of(exc.value) == "BLOB_UNKNOWN"
    assert plain.blob_exists(repo, missing) is False
    with pytest.raises(NotFound) as exc:
        plain.list_tags(repo_name("never-pushed"))
    assert code_of(exc.value) == "NAME_UNKNOWN"


# --- TLS + Basic auth --------------------------------------------------------------------------
def test_tls_auth_with_ca_from_certs_dir(registry_tls_auth: RegistryDaemon) -> None:
    with tls_client(registry_tls_auth) as c:
        repo = repo_name("tls")
        manifest, digest, layer = push_image(c, repo, "v1")
        assert c.base_url == f"https://{registry_tls_auth.host}"
        assert c.resolve(repo, "v1").digest == digest
        assert b"".join(c.open_blob(repo, digest_of(layer), 10)) == layer[10:]
        c.check_login()


def test_tls_auth_with_credentials_from_docker_config(registry_tls_auth: RegistryDaemon, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    auth.store_credentials(registry_tls_auth.host, REGISTRY_USER, REGISTRY_PASSWORD, config_path=cfg)
    assert registry_tls_auth.certs_dir is not None
    with RegistryClient(registry_tls_auth.host, hosts_dirs=(str(registry_tls_auth.certs_dir),),
                        credentials=functools.partial(auth.get_credentials, config_path=cfg)) as c:
        c.check_login()
        push_image(c, repo_name("cfg"), "v1")


def test_wrong_password_is_unauthenticated_without_the_password(registry_tls_auth: RegistryDaemon) -> None:
    secret = "wr0ng-Passw0rd"
    with tls_client(registry_tls_auth, Credentials(REGISTRY_USER, secret)) as c:
        for call in (c.check_login, lambda: c.resolve("ctk-test/any", "v1"),
                     lambda: c.upload_blob("ctk-test/any", digest_of(b"x"), 1, [b"x"])):
            with pytest.raises(Unauthenticated) as exc:
                call()
            text = f"{exc.value} {exc.value.hint}"
            assert "incorrect username or password" in text
            assert secret not in text and REGISTRY_PASSWORD not in text


def test_no_credentials_is_unauthenticated(registry_tls_auth: RegistryDaemon) -> None:
    with tls_client(registry_tls_auth, None) as c:
        with pytest.raises(Unauthenticated, match="authentication required") as exc:
            c.get_manifest("ctk-test/any", "v1")
        assert code_of(exc.value) == "UNAUTHORIZED"
        with pytest.raises(Unauthenticated, match="authentication required"):
            c.check_login()


def test_tls_without_ca_names_the_certs_dir(registry_tls_auth: RegistryDaemon, tmp_path: Path) -> None:
    hosts = tmp_path / "certs.d"
    with tls_client(registry_tls_auth, hosts_dirs=(str(hosts),)) as c:
        with pytest.raises(Unavailable, match="TLS certificate verification failed") as exc:
            c.resolve("ctk-test/any", "v1")
    hint = exc.value.hint or ""
    assert f"{hosts}/{registry_tls_auth.host}/ca.crt" in hint and "--insecure-registry" in hint
    # --insecure-registry skips verification
    with tls_client(registry_tls_auth, hosts_dirs=(str(hosts),), insecure=True) as c:
        assert c.base_url.startswith("https://")
        push_image(c, repo_name("insecure"), "v1")


def test_hosts_toml_ca_and_skip_verify(registry_tls_auth: RegistryDaemon, tmp_path: Path) -> None:
    d = tmp_path / registry_tls_auth.host
    d.mkdir()
    (d / "hosts.toml").write_text(f'server = "https://{registry_tls_auth.host}"\n'
                                  f'[host."https://{registry_tls_auth.host}"]\n  ca = "{registry_tls_auth.ca_path}"\n')
    with tls_client(registry_tls_auth, hosts_dirs=(str(tmp_path),)) as c:
        c.check_login()
    (d / "hosts.toml").write_text(f'[host."https://{registry_tls_auth.host}"]\n  skip_verify = true\n')
    with tls_client(registry_tls_auth, hosts_dirs=(str(tmp_path),)) as c:
        c.check_login()


# --- transport errors --------------------------------------------------------------------------
def test_https_to_a_plain_http_registry_hints_insecure_registry(registry: RegistryDaemon, tmp_path: Path) -> None:
    # the registry is on loopback, where http is allowed; hosts.toml pins https as for a remote host
    d = tmp_path / registry.host
    d.mkdir()
    (d / "hosts.toml").write_text(f'server = "https://{registry.host}"\n')
    with RegistryClient(registry.host, hosts_dirs=(str(tmp_path),)) as c, pytest.raises(Unavailable) as exc:
        c.resolve("ctk-test/any", "v1")
    assert exc.value.hint == "the registry speaks plain HTTP: use --insecure-registry"
    assert "server gave HTTP response to HTTPS client" in str(exc.value)
    # the mapping itself, from what requests raises
    with pytest.raises(requests.exceptions.SSLError) as raw:
        requests.get(f"https://{registry.host}/v2/", timeout=5)
    assert rerr.from_transport_error(raw.value, "reg.example:5000").hint == rerr.PLAIN_HTTP_HINT


def test_unknown_host() -> None:
    with RegistryClient("nonexistent.invalid", hosts_dirs=()) as c:
        with pytest.raises(Unavailable, match="nonexistent.invalid") as exc:
            c.resolve("library/busybox", "latest")
    assert "unknown host" in str(exc.value)


def test_connection_refused() -> None:
    host = f"127.0.0.1:{free_port()}"
    with RegistryClient(host, hosts_dirs=()) as c, pytest.raises(Unavailable, match="connection refused") as exc:
        c.resolve("library/busybox", "latest")
    assert host in str(exc.value)


# --- Bearer token auth -------------------------------------------------------------------------
def token_client(reg: RegistryDaemon, creds: Credentials | None) -> RegistryClient:
    return RegistryClient(reg.host, hosts_dirs=(), credentials=lambda host: creds)


def test_bearer_push_pull_and_token_cache(registry_token_auth: RegistryDaemon) -> None:
    ts = registry_token_auth.token_server
    assert ts is not None
    with token_client(registry_token_auth, GOOD) as c:
        repo = repo_name("bearer")
        manifest, digest, layer = push_image(c, repo, "v1")  # one push-scope token for all of it
        n = ts.requests
        assert c.get_manifest(repo, digest)[0] == manifest
        assert b"".join(c.open_blob(repo, digest_of(layer))) == layer
        assert c.resolve(repo, "v1").digest == digest
        assert ts.requests == n + 1  # one pull-scope token, then cached
        # mount needs a token for both repositories
        other = repo_name("bearer-mount")
        assert c.mount_blob(other, digest_of(layer), repo) is True
        # a token the registry no longer accepts is replaced once, transparently
        key = cache_key(c._challenge, [f"repository:{repo}:pull"])  # type: ignore[arg-type]
        c._tokens.put(key, "not-a-valid-token", 300)
        n = ts.requests
        assert c.resolve(repo, "v1").digest == digest
        assert ts.requests == n + 1
        c.check_login()


def test_bearer_identity_token(registry_token_auth: RegistryDaemon) -> None:
    with token_client(registry_token_auth, Credentials("", "", IDENTITY_TOKEN)) as c:
        c.check_login()
        push_image(c, repo_name("idtoken"), "v1")
    with token_client(registry_token_auth, Credentials("", "", "revoked-token")) as c:
        with pytest.raises(Unauthenticated, match="incorrect username or password") as exc:
            c.resolve("ctk-test/any", "v1")
        assert "revoked-token" not in str(exc.value)


def test_bearer_wrong_password_and_anonymous(registry_token_auth: RegistryDaemon) -> None:
    with token_client(registry_token_auth, Credentials(REGISTRY_USER, "nope-nope")) as c:
        with pytest.raises(Unauthenticated, match="incorrect username or password") as exc:
            c.resolve("ctk-test/any", "v1")
        assert "nope-nope" not in f"{exc.value} {exc.value.hint}"
        with pytest.raises(Unauthenticated):
            c.check_login()
    with token_client(registry_token_auth, None) as c:
        with pytest.raises(Unauthenticated, match="authentication required"):
            c.resolve("ctk-test/any", "v1")


# --- protocol corners the real registry cannot produce -----------------------------------------
class _Fake(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    blob = blob(100_000, "fake")
    small = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "config": {
        "mediaType": oci.OCI_CONFIG, "digest": digest_of(b"{}"), "size": 2}, "layers": []}).encode()
    sent_big = 0

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False,
               length: bool = True) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if head:
            return
        if length:
            self.wfile.write(body)
            return
        try:  # chunked, 64 KiB at a time, counting what the client took before hanging up
            for i in range(0, len(body), 65536):
                part = body[i:i + 65536]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                type(self).sent_big += len(part)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:  # noqa: N802
        if self.path == "/v2/":
            self._reply(200, b"{}", {"Content-Type": "application/json"}, head=head)
        elif self.path.startswith("/v2/fake/blobs/"):  # ignores Range
            self._reply(200, self.blob, {"Content-Type": "application/octet-stream"}, head=head)
        elif self.path == "/v2/fake/manifests/small":  # no Docker-Content-Digest, generic type
            self._reply(200, self.small, {"Content-Type": "application/json"}, head=head)
        elif self.path.startswith("/v2/fake/manifests/big"):
            big = b" " * (oci.MAX_MANIFEST_SIZE + 1) if head else b" " * (64 << 20)
            self._reply(200, big, {"Content-Type": oci.OCI_MANIFEST}, head=head,
                        length=self.path.endswith("with-length"))
        else:
            self._reply(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}', {}, head=head)


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_manifest_over_4_mib_is_refused_before_reading_it(fake: str) -> None:
    with RegistryClient(fake, hosts_dirs=()) as c:
        with pytest.raises(InvalidArgument, match="over the 4 MiB cap"):
            c.get_manifest("fake", "big-with-length")
        _Fake.sent_big = 0
        with pytest.raises(InvalidArgument, match="over the 4 MiB cap"):
            c.get_manifest("fake", "big-chunked")  # no Content-Length: the read is capped
    assert _Fake.sent_big < 16 << 20  # nowhere near the 64 MiB the server would send


def test_server_ignoring_range_and_head_without_digest(fake: str) -> None:
    with RegistryClient(fake, hosts_dirs=()) as c:
        d = digest_of(_Fake.blob)
        with c.open_blob("fake", d, 70_000) as s:
            assert b"".join(s) == _Fake.blob[70_000:]
        desc = c.resolve("fake", "small")  # HEAD lacks the digest: GET, hash, sniff the type
        assert desc == oci.Descriptor(oci.OCI_MANIFEST, digest_of(_Fake.small), len(_Fake.small))


def test_no_temp_ca_bundle_is_left_behind(registry_tls_auth: RegistryDaemon) -> None:
    c = tls_client(registry_tls_auth)
    bundle = c._bundle
    assert bundle and os.path.exists(bundle)
    c.close()
    assert not os.path.exists(bundle)
