"""The network flags of run/create checked together (ctk_run.network.build_net_options): Docker's long form,
aliases per network, and Docker's refusals with its own words."""
from __future__ import annotations

import pytest
from ctk_run.network import ALIAS_NOT_USER_DEFINED, build_net_options, parse_network_flag
from ctk_shared.errors import UsageError


@pytest.mark.parametrize("value,want", [
    ("app", (["app"], (), "")),
    ("a,b", (["a", "b"], (), "")),  # ctk's short form: several networks
    ("host", (["host"], (), "")),
    ("container:web", (["container:web"], (), "")),
    ("name=app,alias=db,alias=pg", (["app"], ("db", "pg"), "")),
    ("app,alias=db,ip=10.5.0.9", (["app"], ("db",), "10.5.0.9")),
    (" name=app , alias=db ", (["app"], ("db",), "")),
])
def test_parse_network_flag(value, want):
    assert parse_network_flag(value) == want


def test_aliases_go_to_their_network_and_network_alias_to_the_first():
    net = build_net_options(networks=("front", "name=back,alias=api,ip=10.9.0.5"), network_aliases=("web", "www"))
    assert net.networks == ("front", "back") and net.mode == "cni"
    assert net.aliases == {"front": ("web", "www"), "back": ("api",)}
    assert net.endpoints() == {"front": {"Aliases": ["web", "www"]},
                               "back": {"Aliases": ["api"], "IPAddress": "10.9.0.5"}}
    # keyed by ctk-net's answer when the user named a network by its ID
    assert list(net.endpoints(["front-net", "back-net"])) == ["front-net", "back-net"]


@pytest.mark.parametrize("kw", [
    {"network_aliases": ("x",)},
    {"networks": ("bridge",), "network_aliases": ("x",)},
    {"networks": ("bridge,alias=x",)},
    {"networks": ("app", "bridge,alias=x")},
    {"networks": ("host",), "network_aliases": ("x",)},
    {"networks": ("container:web",), "network_aliases": ("x",)},
])
def test_aliases_outside_user_networks_are_refused(kw):
    with pytest.raises(UsageError, match=ALIAS_NOT_USER_DEFINED):
        build_net_options(**kw)


def test_container_mode():
    net = build_net_options(networks=("container:web",))
    assert net.mode == "container" and net.container == "web" and net.endpoints() == {}
    with pytest.raises(UsageError, match="cannot be connected to any other network"):
        build_net_options(networks=("container:web", "app"))
    with pytest.raises(UsageError, match="needs a container name"):
        build_net_options(networks=("container:",))
    with pytest.raises(UsageError, match="hostname and the network mode"):
        build_net_options(networks=("container:web",), hostname="h")


@pytest.mark.parametrize("bad", ["name=app,alias=a b", "name=app,alias=#x", "name=app,ip=::1", "alias=x",
                                 "name=app,bogus", "name=host,ip=10.0.0.1"])
def test_bad_long_forms(bad):
    with pytest.raises(UsageError):
        build_net_options(networks=(bad,))
