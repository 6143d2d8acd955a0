"""Pure registry plumbing: WWW-Authenticate parsing, the token cache, error mapping, per-host settings."""
from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import requests
from ctk_shared.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from ctk_shared.registry import errors as rerr
from ctk_shared.registry.hosts import host_settings, is_loopback
from ctk_shared.registry.tokens import Challenge, TokenCache, cache_key, parse_www_authenticate, pick, repository_scope


# --- WWW-Authenticate --------------------------------------------------------------------------
def test_docker_hub_bearer_challenge() -> None:
    h = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
         'scope="repository:library/busybox:pull,push"')
    [c] = parse_www_authenticate(h)
    assert c.scheme == "bearer"
    assert c.realm == "https://auth.docker.io/token"
    assert c.service == "registry.docker.io"
    assert c.scopes == ("repository:library/busybox:pull,push",)  # the comma inside quotes stays


def test_basic_challenge_and_case_insensitive_names() -> None:
    [c] = parse_www_authenticate('BASIC Realm="Registry Realm"')
    assert c == Challenge("basic", {"realm": "Registry Realm"})


def test_unquoted_values_spaces_and_error_params() -> None:
    [c] = parse_www_authenticate('Bearer realm = https://a.example/token , service=reg ,error="insufficient_scope"')
    assert c.params == {"realm": "https://a.example/token", "service": "reg", "error": "insufficient_scope"}
    assert c.error == "insufficient_scope"


def test_escaped_quotes_and_commas_inside_quotes() -> None:
    [c] = parse_www_authenticate(r'Basic realm="say \"hi\", then go"')
    assert c.realm == 'say "hi", then go'


def test_several_challenges_in_one_header() -> None:
    cs = parse_www_authenticate('Negotiate, Basic realm="b", Bearer realm="https://t/", scope="a b"')
    assert [c.scheme for c in cs] == ["negotiate", "basic", "bearer"]
    assert cs[2].scopes == ("a", "b")
    assert pick(cs) is cs[2]  # Bearer preferred
    assert pick(cs[:2]) is cs[1]
    assert pick(cs[:1]) is None


def test_token68_and_garbage() -> None:
    [c] = parse_www_authenticate("Basic dXNlcjpwYXNz==")
    assert c.params == {"": "dXNlcjpwYXNz=="}
    assert parse_www_authenticate("") == []
    assert [c.scheme for c in parse_www_authenticate('"oops", Basic realm="x')] == ["oops", "basic"]
    assert parse_www_authenticate('Basic realm="x')[0].realm == "x"  # unterminated quote


def test_repository_scope() -> None:
    assert repository_scope("library/busybox") == "repository:library/busybox:pull"
    assert repository_scope("a/b", push=True) == "repository:a/b:pull,push"


# --- token cache -------------------------------------------------------------------------------
def test_token_cache_expiry_and_keys() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    ch = Challenge("bearer", {"realm": "https://t/token", "service": "svc"})
    k1 = cache_key(ch, ["repository:a:pull", "repository:b:pull"])
    assert k1 == cache_key(ch, ["repository:b:pull", "repository:a:pull", "repository:a:pull"])  # order-free
    k2 = cache_key(ch, ["repository:a:pull,push"])
    cache.put(k1, "tok-1", 300)
    assert cache.get(k1) == "tok-1"
    assert cache.get(k2) is None
    now[0] += 269  # refreshed up to 30 s early
    assert cache.get(k1) == "tok-1"
    now[0] += 2
    assert cache.get(k1) is None
    cache.put(k1, "tok-2", 60)
    assert cache.secrets() == ("tok-2",)
    cache.invalidate(k1)
    assert cache.get(k1) is None


# --- error mapping -----------------------------------------------------------------------------
def _response(status: int, body: bytes = b"", method: str = "GET", headers: dict[str, str] | None = None,
              ) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body
    r.headers.update(headers or {})
    r.request = requests.Request(method, "http://r.example/v2/x").prepare()
    r.reason = {401: "Unauthorized", 404: "Not Found"}.get(status, "")
    return r


def test_oci_error_body_keeps_the_code() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}'
    e = rerr.from_response(_response(404, body), "fetching manifest r.example/a:x", host="r.example")
    assert isinstance(e, NotFound) and e.code == "MANIFEST_UNKNOWN" and e.status == 404
    assert str(e) == "fetching manifest r.example/a:x: manifest unknown"


def test_head_404_uses_the_callers_code() -> None:
    e = rerr.from_response(_response(404, method="HEAD"), "resolving r.example/a:x", not_found_code="MANIFEST_UNKNOWN")
    assert isinstance(e, NotFound) and e.code == "MANIFEST_UNKNOWN"


def test_401_messages_never_hold_secrets() -> None:
    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad password hunter2"}]}'
    e = rerr.from_response(_response(401, body), "pulling a", host="r.example", had_credentials=True,
                           secrets=["hunter2"])
    assert isinstance(e, Unauthenticated) and e.code == "UNAUTHORIZED"
    assert str(e) == "pulling a (r.example): incorrect username or password"
    e = rerr.from_response(_response(401), "pulling a", host="r.example")
    assert str(e) == "pulling a (r.example): authentication required"
    assert "login" in (e.hint or "")
    assert rerr.redact("x hunter2 y", ["hunter2"]) == "x *** y"


@pytest.mark.parametrize("status,code,cls", [
    (403, "DENIED", PermissionDenied), (400, "DIGEST_INVALID", rerr.IntegrityError),
    (400, "MANIFEST_INVALID", InvalidArgument), (429, "TOOMANYREQUESTS", Unavailable), (503, "", Unavailable),
])
def test_status_and_code_pick_the_class(status: int, code: str, cls: type) -> None:
    body = f'{{"errors":[{{"code":"{code}","message":"m"}}]}}'.encode() if code else b"oops"
    e = rerr.from_response(_response(status, body), "x")
    assert isinstance(e, cls) and e.code == code and "\n" not in str(e)


def test_transport_errors() -> None:
    wrong_version = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    plain = requests.exceptions.SSLError(wrong_version)
    e = rerr.from_transport_error(plain, "reg.example:5000")
    assert isinstance(e, Unavailable) and e.hint == rerr.PLAIN_HTTP_HINT
    verify = requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    e = rerr.from_transport_error(verify, "reg.example", certs_dir="/etc/containerd/certs.d/reg.example")
    assert "/etc/containerd/certs.d/reg.example" in (e.hint or "") and "--insecure-registry" in (e.hint or "")
    import socket
    dns = requests.exceptions.ConnectionError(socket.gaierror(-2, "Name or service not known"))
    e = rerr.from_transport_error(dns, "nonexistent.invalid")
    assert isinstance(e, Unavailable) and "nonexistent.invalid" in str(e)
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert "connection refused" in str(rerr.from_transport_error(refused, "r:1"))


# --- per-host settings (certs.d, hosts.toml) ---------------------------------------------------
@pytest.mark.parametrize("host,expected", [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.1.2.3", True),
    ("[::1]:5000", True), ("::1", True), ("10.0.0.1:5000", False), ("registry.example", False),
    ("localhost.example", False),
])
def test_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_default_schemes() -> None:
    assert host_settings("reg.example", hosts_dirs=()).schemes == ("https",)
    assert host_settings("127.0.0.1:5000", hosts_dirs=()).schemes == ("https", "http")
    s = host_settings("reg.example", insecure=True, hosts_dirs=())
    assert s.schemes == ("https", "http") and s.verify is False
    hub = host_settings("index.docker.io", hosts_dirs=())
    assert (hub.name, hub.api_host, hub.verify) == ("docker.io", "registry-1.docker.io", True)


def test_docker_style_certs_dir(tmp_path: Path) -> None:
    d = tmp_path / "second" / "reg.example:5000"
    d.mkdir(parents=True)
    for f in ("ca.crt", "extra.crt", "client.cert", "client.key"):
        (d / f).write_text("x")
    s = host_settings("reg.example:5000", hosts_dirs=(str(tmp_path / "first"), str(tmp_path / "second")))
    assert s.ca_files == (str(d / "ca.crt"), str(d / "extra.crt"))
    assert s.client_cert == (str(d / "client.cert"), str(d / "client.key"))
    assert s.certs_dir == str(d)
    (d / "client.key").unlink()
    with pytest.raises(InvalidArgument, match="missing key client.key"):
        host_settings("reg.example:5000", hosts_dirs=(str(tmp_path / "second"),))


def test_hosts_toml(tmp_path: Path) -> None:
    d = tmp_path / "docker.io"
    d.mkdir()
    for f in ("hub-ca.pem", "c.pem", "k.pem", "mirror-ca.pem"):
        (d / f).write_text("x")
    (d / "hosts.toml").write_text('''
server = "https://registry-1.docker.io"
[host."https://mirror.example"]
  ca = "mirror-ca.pem"
[host."https://registry-1.docker.io"]
  ca = ["hub-ca.pem"]
  client = [["c.pem", "k.pem"]]
  skip_verify = true
''')
    s = host_settings("docker.io", hosts_dirs=(str(tmp_path),))
    assert s.api_host == "registry-1.docker.io" and s.schemes == ("https",)
    assert s.ca_files == (str(d / "hub-ca.pem"),)  # the mirror's CA is not ours
    assert s.client_cert == (str(d / "c.pem"), str(d / "k.pem"))
    assert s.verify is False


def test_hosts_toml_scheme_is_pinned(tmp_path: Path) -> None:
    d = tmp_path / "127.0.0.1:5000"
    d.mkdir()
    (d / "hosts.toml").write_text('server = "https://127.0.0.1:5000"\n')
    assert host_settings("127.0.0.1:5000", hosts_dirs=(str(tmp_path),)).schemes == ("https",)
    (d / "hosts.toml").write_text('[host."http://127.0.0.1:5000"]\n')
    assert host_settings("127.0.0.1:5000", hosts_dirs=(str(tmp_path),)).schemes == ("http",)
    (d / "hosts.toml").write_text('[host."https://127.0.0.1:5000"]\n  ca = "nope.pem"\n')
    with pytest.raises(InvalidArgument, match="nope.pem"):
        host_settings("127.0.0.1:5000", hosts_dirs=(str(tmp_path),))
    (d / "hosts.toml").write_text("server = [")
    with pytest.raises(InvalidArgument, match="hosts.toml"):
        host_settings("127.0.0.1:5000", hosts_dirs=(str(tmp_path),))
