"""The parsers behind issue 17's "every bad value refused when it is given": each refuses at parse time, with
Docker's wording where Docker has one."""
from __future__ import annotations

import signal

import pytest
from ctk_run.lifecycle import parse_signal
from ctk_run.ops import check_user, network_options, run_platform
from ctk_run.options import ContainerOptions
from ctk_run.spec import parse_security_opts
from ctk_run.units import check_cpus
from ctk_shared import reference
from ctk_shared.errors import UsageError


@pytest.mark.parametrize(("text", "want"), [("SIGTERM", 15), ("quit", 3), ("9", 9), (2, 2),
                                            (str(int(signal.SIGRTMAX)), int(signal.SIGRTMAX))])
def test_signals(text, want) -> None:
    assert parse_signal(text) == want


@pytest.mark.parametrize("text", ["SIGFOO", "999", "0", str(int(signal.SIGRTMAX) + 1), "-1", "9x"])
def test_bad_signals(text) -> None:
    with pytest.raises(UsageError, match=f"invalid signal: {text}"):
        parse_signal(text)


def test_cpus_range_is_dockers() -> None:
    assert check_cpus(2.0, available=2) == 2.0 and check_cpus(0.01, available=2) == 0.01
    assert check_cpus(0.0, available=2) == 0.0  # 0: no limit
    for bad in (2.5, 999.0, 0.001):
        with pytest.raises(UsageError) as e:
            check_cpus(bad, available=2)
        assert e.value.message == "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"


@pytest.mark.parametrize("user", [None, "", "root", "1000", "1000:1000", "app:staff"])
def test_users(user) -> None:
    check_user(user)


@pytest.mark.parametrize("user", [":", ":0", "0:", "a:b:c"])
def test_bad_users(user) -> None:
    with pytest.raises(UsageError, match="invalid user"):
        check_user(user)


def test_platforms() -> None:
    assert str(run_platform("linux/arm64")) == "linux/arm64"
    with pytest.raises(UsageError, match='image operating system "windows" cannot be used on this platform'):
        run_platform("windows/amd64")


def test_dns_must_be_ip_addresses() -> None:
    assert network_options(ContainerOptions("x", dns=("1.1.1.1", "2606:4700::1111"))).dns == \
        ("1.1.1.1", "2606:4700::1111")
    with pytest.raises(UsageError) as e:
        network_options(ContainerOptions("x", dns=("notanip",)))
    assert e.value.message == ('invalid argument "notanip" for "--dns" flag: '
                               "IP address is not correctly formatted: notanip")


def test_apparmor_and_selinux_only_as_off() -> None:
    parse_security_opts(["apparmor=unconfined", "label=disable", "label:disable"])
    with pytest.raises(UsageError, match="no AppArmor support"):
        parse_security_opts(["apparmor=x"])
    with pytest.raises(UsageError, match="no SELinux support"):
        parse_security_opts(["label=type:svirt_apache_t"])


def test_reference_digest_algorithms() -> None:
    assert reference.parse("x@sha512:" + "a" * 128).digest.startswith("sha512:")
    with pytest.raises(UsageError, match="unsupported digest algorithm 'md5'"):
        reference.parse("x@md5:" + "a" * 32)
