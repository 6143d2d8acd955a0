"""A real OCI registry for tests: Debian's ``docker-registry`` (CNCF distribution) on a free loopback port.

``start_registry(base_dir)`` writes a config (filesystem storage under ``base_dir``, deletes enabled),
optionally a CA + server certificate (``tls=True``), an htpasswd file with bcrypt hashes
(``htpasswd={"user": "password"}``, Basic auth) or a token server (``token_users={...}``, Bearer
auth: the registry checks JWTs that a small in-process server signs, as Docker Hub's auth does), then
polls ``GET /v2/`` until it answers. A missing binary is an error, never a skip.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

START_TIMEOUT = 20.0


def find_binary() -> str:
    path = shutil.which("docker-registry") or ("/usr/bin/docker-registry" if os.path.exists("/usr/bin/docker-registry")
                                               else None)
    if not path:
        raise RuntimeError("docker-registry (CNCF distribution) is not installed: apt-get install docker-registry")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- certificates ------------------------------------------------------------------------------
def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert_builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
                  ) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2)))


def make_ca(dir_: Path, name: str = "ctk test CA") -> tuple[Path, Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_cert_builder(_name(name), _name(name), key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = dir_ / "ca.crt", dir_ / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path, key, cert


def make_server_cert(dir_: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                     names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1", "::1"),
                     ) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (_cert_builder(_name(names[0]), ca_cert.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = dir_ / "server.crt", dir_ / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


def write_htpasswd(path: Path, users: dict[str, str]) -> None:
    # cost 4: the registry checks the hash on every request, so keep it cheap in tests
    lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")


# --- a token server (Docker's token auth spec) -------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenServer:
    """Issues ES256 JWTs the registry trusts; valid users get every action they ask for, anonymous none.

    ``identity_tokens`` maps refresh tokens (``identitytoken`` in config.json) to users, accepted by
    ``POST`` with ``grant_type=refresh_token``. ``requests`` counts token requests (cache tests).
    """

    users: dict[str, str]
    issuer: str = "ctk-test-issuer"
    service: str = "ctk-test-registry"
    expires_in: int = 300
    identity_tokens: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    port: int = 0
    cert_path: Path | None = None
    _key: ec.EllipticCurvePrivateKey | None = None
    _cert_der: bytes = b""
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self, dir_: Path) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        cert = (_cert_builder(_name("ctk token signer"), _name("ctk token signer"), self._key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_path = dir_ / "token-signer.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        ts = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, doc: dict[str, object]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                ts.requests += 1
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = ""
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if ts.users.get(u) != p:
                        self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]})
                        return
                    user = u
                self._send(200, ts.issue(user, q.get("scope", [])))

            def do_POST(self) -> None:  # noqa: N802
                ts.requests += 1
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                if form.get("grant_type") != ["refresh_token"]:
                    self._send(400, {"error": "unsupported_grant_type"})
                    return
                user = ts.identity_tokens.get((form.get("refresh_token") or [""])[0])
                if not user:
                    self._send(401, {"error": "invalid_grant"})
                    return
                scopes = " ".join(form.get("scope", [])).split()
                doc = ts.issue(user, scopes)
                doc["access_token"] = doc.pop("token")
                self._send(200, doc)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True).start()

    def issue(self, user: str, scopes: list[str]) -> dict[str, object]:
        access = []
        if user:
            for scope in scopes:
                parts = scope.split(":")
                if len(parts) >= 3:
                    access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        assert self._key is not None
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return {"token": f"{signing_input}.{_b64url(sig)}", "expires_in": self.expires_in,
                "issued_at": dt.datetime.now(dt.UTC).isoformat()}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --- the registry ------------------------------------------------------------------------------
@dataclass
class RegistryDaemon:
    base_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    tls: bool
    ca_path: Path | None = None
    certs_dir: Path | None = None  # <certs_dir>/127.0.0.1:PORT/ca.crt, usable as a hosts dir
    users: dict[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None
    log_path: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def verify(self) -> str | bool:
        """What to pass as requests' ``verify`` for raw calls in tests."""
        return str(self.ca_path) if self.ca_path else True

    def log_tail(self, n: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.token_server is not None:
            self.token_server.stop()


def _config(base_dir: Path, port: int, tls: tuple[Path, Path] | None, htpasswd: Path | None,
            token: TokenServer | None, proxy_remote: str | None = None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        f"    disabled: {'false' if proxy_remote else 'true'}",  # a mirror's log shows what came through it
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {base_dir / 'data'}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: ctk-test-secret",
    ]
    if tls:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if proxy_remote:
        lines += ["proxy:", f"  remoteurl: {proxy_remote}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: ctk-test", f"    path: {htpasswd}"]
    elif token:
        lines += ["auth:", "  token:", f"    realm: {token.realm}", f"    service: {token.service}",
                  f"    issuer: {token.issuer}", f"    rootcertbundle: {token.cert_path}"]
    return "\n".join(lines) + "\n"


def start_registry(base_dir: str | os.PathLike[str], *, tls: bool = False, htpasswd: dict[str, str] | None = None,
                   token_users: dict[str, str] | None = None, port: int | None = None,
                   proxy_remote: str | None = None) -> RegistryDaemon:
    """Start ``docker-registry serve`` and wait until ``/v2/`` answers (200, or 401 with auth). ``port``: listen
    there (e.g. to bring a stopped registry back with the same storage and address) instead of a free one.
    ``proxy_remote``: a pull-through cache of that registry URL, with its access log on (``log_path``)."""
    if htpasswd and token_users:
        raise ValueError("htpasswd and token auth are exclusive")
    binary = find_binary()
    base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    ca_path = None
    tls_files = None
    if tls:
        ca_path, _, ca_key, ca_cert = make_ca(base)
        tls_files = make_server_cert(base, ca_key, ca_cert)
    htpasswd_path = None
    if htpasswd:
        htpasswd_path = base / "htpasswd"
        write_htpasswd(htpasswd_path, htpasswd)
    token = None
    if token_users is not None:
        token = TokenServer(users=dict(token_users))
        token.start(base)
    last_error = ""
    fixed_port = port
    for _ in range(3):  # the port may be taken between probing and binding
        port = fixed_port or free_port()
        config = base / "config.yml"
        config.write_text(_config(base, port, tls_files, htpasswd_path, token, proxy_remote))
        log_path = base / "registry.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        daemon = RegistryDaemon(base, port, proc, tls, ca_path, users=dict(htpasswd or token_users or {}),
                                token_server=token, log_path=log_path)
        if _wait_ready(daemon):
            if tls and ca_path is not None:
                daemon.certs_dir = base / "certs.d"
                host_dir = daemon.certs_dir / daemon.host
                host_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(ca_path, host_dir / "ca.crt")
            return daemon
        last_error = daemon.log_tail()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    if token is not None:
        token.stop()
    raise RuntimeError(f"docker-registry did not start:\n{last_error}")


def _wait_ready(daemon: RegistryDaemon) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            return False
        try:
            r = requests.get(f"{daemon.url}/v2/", verify=daemon.verify, timeout=1)
            if r.status_code in (200, 401):
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False
