"""The registry waits are settings (flag, env, TOML) checked where given, and each transport failure names
what happened: refused, no connection in C s, no response in R s, a redirect loop."""
from __future__ import annotations

import socket

import pytest
import requests
from ctk_shared import config
from ctk_shared.errors import UsageError
from ctk_shared.registry import errors as rerr
from ctk_shared.registry.client import RegistryClient
from ctk_shared.registry.session import DEFAULT_TIMEOUT
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ReadTimeoutError


@pytest.mark.parametrize(("text", "want"), [("30", (30.0, 30.0, 30.0)), ("10,30,60", (10.0, 30.0, 60.0)),
                                            (" 0.5 , 1,2 ", (0.5, 1.0, 2.0)), (7, (7.0, 7.0, 7.0)),
                                            ([1, 2, 3], (1.0, 2.0, 3.0))])
def test_registry_timeout_forms(text, want) -> None:
    assert config.parse_registry_timeout(text) == want


@pytest.mark.parametrize("text", ["", "abc", "0", "-1", "1,2", "1,2,3,4", "nan", "inf", "100000", True])
def test_registry_timeout_bad_values_are_usage_errors(text) -> None:
    with pytest.raises(UsageError, match="--registry-timeout"):
        config.parse_registry_timeout(text)


def _resolve(monkeypatch, tmp_path, toml: str = "", **env: str) -> config.GlobalOptions:
    for var in [*config.ENV_VARS.values(), "CTK_CONFIG"]:
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "ctk.toml"
    path.write_text(toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return config.resolve({}, str(path))


def test_registry_timeout_default_env_and_toml(monkeypatch, tmp_path) -> None:
    assert _resolve(monkeypatch, tmp_path).registry_timeout == DEFAULT_TIMEOUT == (10.0, 30.0, 60.0)
    assert _resolve(monkeypatch, tmp_path, "registry_timeout = 5\n").registry_timeout == (5.0, 5.0, 5.0)
    assert _resolve(monkeypatch, tmp_path, 'registry_timeout = "1,2,3"\n',
                    CTK_REGISTRY_TIMEOUT="4").registry_timeout == (4.0, 4.0, 4.0)
    with pytest.raises(UsageError, match=r"\$CTK_REGISTRY_TIMEOUT"):
        _resolve(monkeypatch, tmp_path, CTK_REGISTRY_TIMEOUT="soon")
    with pytest.raises(UsageError, match=r"config file .*ctk.toml: registry_timeout"):
        _resolve(monkeypatch, tmp_path, "registry_timeout = -3\n")


@pytest.mark.parametrize(("toml", "key", "want"), [("address = 5", "address", "a string"),
                                                   ("debug = \"yes\"", "debug", "a boolean"),
                                                   ("hosts_dir = [1]", "hosts_dir", "a string or an array of strings"),
                                                   ("namespace = {a = 1}", "namespace", "a string")])
def test_toml_values_of_the_wrong_type_name_key_and_file(monkeypatch, tmp_path, toml, key, want) -> None:
    with pytest.raises(UsageError) as e:
        _resolve(monkeypatch, tmp_path, toml + "\n")
    assert f"{tmp_path / 'ctk.toml'}: {key} must be {want}" in e.value.message


def test_client_takes_three_limits() -> None:
    c = RegistryClient("127.0.0.1:1", timeout=(1, 2, 3))
    assert c.timeouts == (1.0, 2.0, 3.0) and c._kw()["timeout"] == (1.0, 2.0)
    assert RegistryClient("127.0.0.1:1", timeout=4).timeouts == (4.0, 4.0, 4.0)


def _wrapped(reason: Exception) -> requests.exceptions.ConnectionError:
    # what requests raises when urllib3 gives up: the timeout is only a cause of a ConnectionError
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/v2/", reason))  # type: ignore[arg-type]


def test_timeouts_name_their_phase_and_limit() -> None:
    e = rerr.from_transport_error(_wrapped(ReadTimeoutError(None, "/v2/", "Read timed out.")), "reg:5000",
                                  what="resolving reg:5000/a:v1", timeouts=(10, 30))
    assert e.message == "resolving reg:5000/a:v1: registry reg:5000 accepted the connection but sent no response in 30 s"
    assert isinstance(e, rerr.RegistryTimeout)
    e = rerr.from_transport_error(_wrapped(ConnectTimeoutError("x")), "reg:5000", timeouts=(10, 30))
    assert e.message == "registry reg:5000 did not accept the connection in 10 s"


def test_redirect_loop_names_the_url_without_its_query() -> None:
    resp = requests.Response()
    resp.url = "https://blobs.example/x?X-Signature=secret"
    e = rerr.from_transport_error(requests.exceptions.TooManyRedirects("Exceeded 30 redirects.", response=resp),
                                  "reg:5000", what="fetching blob")
    assert e.message == "fetching blob: reg:5000: redirect loop at https://blobs.example/x"


def test_refused_connection_says_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(rerr.RegistryUnavailable, match="connection refused"):
        RegistryClient(f"127.0.0.1:{port}", timeout=2).resolve("a/b", "v1")
