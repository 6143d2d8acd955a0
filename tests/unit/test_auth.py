"""Docker config.json credentials: auths, credsStore/credHelpers via a fake docker-credential-test, file safety."""
from __future__ import annotations

import base64
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from ctk_shared import auth
from ctk_shared.auth import Credentials
from ctk_shared.errors import CtkError, InvalidArgument, Unavailable


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "docker" / "config.json"


def write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


# --- reading -----------------------------------------------------------------------------------
def test_auth_field_is_base64_user_colon_password(cfg: Path) -> None:
    write(cfg, {"auths": {"reg.example:5000": {"auth": b64("alice:pa:ss")}}})
    assert auth.get_credentials("reg.example:5000", config_path=cfg) == Credentials("alice", "pa:ss")


def test_username_password_and_identitytoken_fields(cfg: Path) -> None:
    write(cfg, {"auths": {"a.example": {"username": "bob", "password": "pw"},
                          "b.example": {"identitytoken": "refresh-me"}}})
    assert auth.get_credentials("a.example", config_path=cfg) == Credentials("bob", "pw")
    creds = auth.get_credentials("b.example", config_path=cfg)
    assert creds == Credentials("", "", "refresh-me")


def test_missing_file_or_host_means_no_credentials(cfg: Path) -> None:
    assert auth.get_credentials("reg.example", config_path=cfg) is None
    write(cfg, {"auths": {"other.example": {"auth": b64("u:p")}}})
    assert auth.get_credentials("reg.example", config_path=cfg) is None


@pytest.mark.parametrize("alias", ["docker.io", "index.docker.io", "registry-1.docker.io", "Docker.IO"])
def test_docker_hub_aliases_share_the_index_key(cfg: Path, alias: str) -> None:
    write(cfg, {"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}})
    assert auth.get_credentials(alias, config_path=cfg) == Credentials("hub", "pw")
    assert auth.config_key(alias) == "https://index.docker.io/v1/"


def test_keys_with_scheme_and_path_match_the_host(cfg: Path) -> None:
    write(cfg, {"auths": {"https://reg.example:5000/v2/": {"auth": b64("u:p")}}})
    assert auth.get_credentials("reg.example:5000", config_path=cfg) == Credentials("u", "p")


def test_docker_config_env_names_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "d" / "config.json", {"auths": {"r.example": {"auth": b64("e:nv")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "d"))
    assert auth.resolve_config_path() == tmp_path / "d" / "config.json"
    assert auth.get_credentials("r.example") == Credentials("e", "nv")


def test_malformed_config_is_an_invalid_argument(cfg: Path) -> None:
    cfg.parent.mkdir(parents=True)
    cfg.write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        auth.get_credentials("r.example", config_path=cfg)
    write(cfg, {"auths": {"r.example": {"auth": "@@@"}}})
    with pytest.raises(InvalidArgument, match="r.example"):
        auth.get_credentials("r.example", config_path=cfg)


def test_repr_hides_secrets() -> None:
    text = repr(Credentials("alice", "hunter2", "tok-123"))
    assert "alice" in text and "hunter2" not in text and "tok-123" not in text


# --- writing -----------------------------------------------------------------------------------
def test_store_creates_a_0600_file_and_round_trips(cfg: Path) -> None:
    auth.store_credentials("reg.example", "alice", "s3cret", config_path=cfg)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    doc = json.loads(cfg.read_text())
    assert doc["auths"]["reg.example"] == {"auth": b64("alice:s3cret")}
    assert auth.get_credentials("reg.example", config_path=cfg) == Credentials("alice", "s3cret")


def test_store_preserves_unknown_keys_and_tightens_mode(cfg: Path) -> None:
    write(cfg, {"proxies": {"default": {"httpProxy": "http://p:3128"}}, "currentContext": "x",
                "auths": {"other.example": {"auth": b64("o:p"), "email": "o@example.com"}}})
    cfg.chmod(0o644)
    auth.store_credentials("docker.io", "hub", "pw", config_path=cfg)
    doc = json.loads(cfg.read_text())
    assert doc["proxies"] == {"default": {"httpProxy": "http://p:3128"}}
    assert doc["currentContext"] == "x"
    assert doc["auths"]["other.example"] == {"auth": b64("o:p"), "email": "o@example.com"}
    assert doc["auths"]["https://index.docker.io/v1/"] == {"auth": b64("hub:pw")}
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_store_replaces_a_non_canonical_key(cfg: Path) -> None:
    write(cfg, {"auths": {"https://reg.example/": {"auth": b64("old:old")}}})
    auth.store_credentials("reg.example", "new", "pw", config_path=cfg)
    assert set(json.loads(cfg.read_text())["auths"]) == {"reg.example"}


def test_write_is_atomic(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(cfg, {"auths": {"keep.example": {"auth": b64("k:k")}}})
    before = cfg.read_text()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CtkError, match="No space left"):  # one error line, not a traceback
        auth.store_credentials("reg.example", "u", "p", config_path=cfg)
    assert cfg.read_text() == before
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["config.json"]  # no temp file left behind


def test_symlinked_config_is_updated_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker.json"
    write(real, {"auths": {}})
    link = tmp_path / ".docker" / "config.json"
    link.parent.mkdir()
    link.symlink_to(real)
    auth.store_credentials("reg.example", "u", "p", config_path=link)
    assert link.is_symlink()
    assert "reg.example" in json.loads(real.read_text())["auths"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_config_linked_to_a_device_is_written_into_not_replaced(tmp_path: Path) -> None:
    """`ln -s /dev/null ~/.docker/config.json` (never store credentials) must keep the device a device; the
    node here is a private copy of /dev/null's numbers, never the machine's own."""
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    link = tmp_path / ".docker" / "config.json"
    link.parent.mkdir()
    link.symlink_to(dev)
    auth.store_credentials("reg.example", "u", "p", config_path=link)
    assert link.is_symlink() and stat.S_ISCHR(os.lstat(dev).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".docker", "null"]


def test_erase(cfg: Path) -> None:
    auth.store_credentials("reg.example", "u", "p", config_path=cfg)
    auth.store_credentials("keep.example", "k", "k", config_path=cfg)
    assert auth.erase_credentials("reg.example", config_path=cfg) is True
    assert auth.get_credentials("reg.example", config_path=cfg) is None
    assert auth.get_credentials("keep.example", config_path=cfg) == Credentials("k", "k")
    assert auth.erase_credentials("reg.example", config_path=cfg) is False


# --- credential helpers ------------------------------------------------------------------------
HELPER = textwrap.dedent('''\
    #!{python}
    """A docker-credential-* helper keeping secrets in a JSON file, as the real ones keep them in a keychain."""
    import json, os, sys
    store_path = os.environ["CTK_TEST_HELPER_STORE"]
    with open(store_path + ".log", "a") as log:
        log.write(sys.argv[1] + "\\n")
    try:
        store = json.load(open(store_path))
    except FileNotFoundError:
        store = {{}}
    data = sys.stdin.read()
    action = sys.argv[1]
    if action == "get":
        if data not in store:
            print("credentials not found in native keychain")
            sys.exit(1)
        user, secret = store[data]
        print(json.dumps({{"ServerURL": data, "Username": user, "Secret": secret}}))
    elif action == "store":
        req = json.loads(data)
        store[req["ServerURL"]] = [req["Username"], req["Secret"]]
        json.dump(store, open(store_path, "w"))
    elif action == "erase":
        if data not in store:
            print("credentials not found in native keychain")
            sys.exit(1)
        del store[data]
        json.dump(store, open(store_path, "w"))
    else:
        print("unknown action")
        sys.exit(1)
    ''')


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "docker-credential-test"
    exe.write_text(HELPER.format(python=sys.executable))
    exe.chmod(0o755)
    store = tmp_path / "helper-store.json"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CTK_TEST_HELPER_STORE", str(store))
    return store


def test_creds_store_round_trip(cfg: Path, helper: Path) -> None:
    write(cfg, {"credsStore": "test"})
    auth.store_credentials("docker.io", "hub", "hunter2", config_path=cfg)
    text = cfg.read_text()
    assert "hunter2" not in text and b64("hub:hunter2") not in text
    assert json.loads(text)["auths"] == {"https://index.docker.io/v1/": {}}
    assert json.loads(helper.read_text()) == {"https://index.docker.io/v1/": ["hub", "hunter2"]}
    assert auth.get_credentials("index.docker.io", config_path=cfg) == Credentials("hub", "hunter2")
    assert auth.erase_credentials("docker.io", config_path=cfg) is True
    assert json.loads(helper.read_text()) == {}
    assert auth.get_credentials("docker.io", config_path=cfg) is None


def test_cred_helpers_override_creds_store_per_host(cfg: Path, helper: Path) -> None:
    helper.write_text(json.dumps({"reg.example": ["h", "from-helper"]}))
    write(cfg, {"credsStore": "missing-store", "credHelpers": {"reg.example": "test"},
                "auths": {"reg.example": {"auth": b64("file:from-file")}}})
    assert auth.get_credentials("reg.example", config_path=cfg) == Credentials("h", "from-helper")
    assert (helper.parent / "helper-store.json.log").read_text().split() == ["get"]


def test_helper_token_username_means_identity_token(cfg: Path, helper: Path) -> None:
    helper.write_text(json.dumps({"reg.example": ["<token>", "refresh-tok"]}))
    write(cfg, {"credHelpers": {"reg.example": "test"}})
    assert auth.get_credentials("reg.example", config_path=cfg) == Credentials("", "", "refresh-tok")


def test_helper_without_entry_falls_back_to_auths(cfg: Path, helper: Path) -> None:
    write(cfg, {"credsStore": "test", "auths": {"reg.example": {"auth": b64("file:pw")}}})
    assert auth.get_credentials("reg.example", config_path=cfg) == Credentials("file", "pw")
    assert auth.get_credentials("none.example", config_path=cfg) is None


def test_missing_helper_binary(cfg: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(cfg, {"credsStore": "does-not-exist", "auths": {"reg.example": {"auth": b64("file:pw")}}})
    # reading degrades to the file (public pulls keep working), with a warning naming the helper
    assert auth.get_credentials("reg.example", config_path=cfg) == Credentials("file", "pw")
    assert "docker-credential-does-not-exist" in caplog.text
    # storing must not silently put the secret somewhere else
    with pytest.raises(Unavailable, match="docker-credential-does-not-exist"):
        auth.store_credentials("reg.example", "u", "p", config_path=cfg)
