"""Refs normalise exactly as Docker's reference package does."""
import pytest
from ctk_shared import reference as refs
from ctk_shared.errors import UsageError

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,expected", [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:alpine", "docker.io/library/nginx:alpine"),
    ("user/app", "docker.io/user/app:latest"),
    ("docker.io/nginx", "docker.io/library/nginx:latest"),
    ("index.docker.io/library/nginx:1", "docker.io/library/nginx:1"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app:v1", "localhost:5000/app:v1"),
    ("127.0.0.1:5000/library/busybox:latest", "127.0.0.1:5000/library/busybox:latest"),
    ("ghcr.io/a/b/c:1.0", "ghcr.io/a/b/c:1.0"),
    (f"nginx@{D}", f"docker.io/library/nginx@{D}"),
    (f"nginx:1@{D}", f"docker.io/library/nginx:1@{D}"),
    ("docker://busybox", "docker.io/library/busybox:latest"),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
    ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest"),
])
def test_normalises_like_docker(text, expected):
    assert str(refs.parse(text)) == expected


@pytest.mark.parametrize("text", [
    "", "Nginx", "nginx:", "nginx:-bad", ":tag", "nginx@sha256:abc", "a//b", "-a", "a:b:c",
    "example.com/UPPER", "nginx@sha256:" + "a" * 63, "a/" + "b" * 300, "foo bar",
])
def test_rejects_malformed(text):
    with pytest.raises(UsageError):
        refs.parse(text)


def test_uppercase_gets_a_specific_message():
    with pytest.raises(UsageError, match="lowercase"):
        refs.parse("Nginx")


@pytest.mark.parametrize("text,familiar", [
    ("docker.io/library/nginx:alpine", "nginx:alpine"),
    ("docker.io/user/app:1", "user/app:1"),
    ("127.0.0.1:5000/library/busybox:latest", "127.0.0.1:5000/library/busybox:latest"),
])
def test_familiar_form(text, familiar):
    assert refs.parse(text).familiar() == familiar


def test_reference_prefers_digest():
    r = refs.parse(f"nginx:1@{D}")
    assert r.reference == D and r.tag == "1"


def test_loopback_hosts():
    assert refs.is_loopback_host("127.0.0.1:5000")
    assert refs.is_loopback_host("localhost")
    assert refs.is_loopback_host("[::1]:5000")
    assert not refs.is_loopback_host("registry.example.com:5000")
