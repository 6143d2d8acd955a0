"""A real Debian build with BuildKit's features: apt-get through cache mounts that outlive the build (the
second build installs offline from the cache), a multi-stage copy, and a secret used by a RUN."""
from __future__ import annotations

import secrets

import pytest

from .conftest import write
from .test_real_builds import apt_sources

pytestmark = pytest.mark.integration

APT_CACHE = ("--mount=type=cache,target=/var/cache/apt,sharing=locked "
             "--mount=type=cache,target=/var/lib/apt,sharing=locked")

ONLINE = f"""\
ARG BASE
FROM $BASE
COPY apt-sources/ /etc/apt/sources.list.d/
RUN rm -f /etc/apt/apt.conf.d/docker-clean
RUN {APT_CACHE} apt-get update -q -o APT::Sandbox::User=root && \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o APT::Sandbox::User=root hello
"""

OFFLINE = f"""\
ARG BASE
FROM $BASE AS build
COPY apt-sources/ /etc/apt/sources.list.d/
RUN rm -f /etc/apt/apt.conf.d/docker-clean && echo offline > /marker
RUN --network=none {APT_CACHE} \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o APT::Sandbox::User=root hello
RUN --mount=type=secret,id=apikey,required \\
    test "$(cat /run/secrets/apikey)" = "$(printf %s "$EXPECTED")" && hello -g signed > /greeting
FROM $BASE
COPY --from=build /usr/bin/hello /usr/local/bin/hello
COPY --from=build /greeting /greeting
CMD ["hello", "-g", "from the cache"]
"""


def test_apt_cache_mount_lets_the_next_build_install_offline(build, run, real_images, tmp_path):
    base = real_images["debian"].ref
    online = write(tmp_path / "online", {"Dockerfile": ONLINE})
    apt_sources(online)
    r = build("--progress=plain", "-t", "apt:online", "--build-arg", f"BASE={base}", str(online))
    assert r.code == 0, r.err[-3000:]
    chk = run("--rm", "-q", "--network", "none", "apt:online", "sh", "-c",
              "hello -g ok; ls /var/cache/apt/archives/ | grep -c '\\.deb$' || true; ls /var/lib/apt/lists | grep -c Packages || true")
    assert chk.code == 0, chk.err
    greeting, debs, lists = chk.out.splitlines()
    assert greeting == "ok" and debs == "0" and lists == "0"  # the downloads stayed in the cache mounts

    key = "k-" + secrets.token_hex(8)
    offline = write(tmp_path / "offline", {"Dockerfile": OFFLINE.replace("$EXPECTED", key)})
    apt_sources(offline)
    (tmp_path / "apikey").write_text(key)
    r = build("--progress=plain", "-t", "apt:offline", "--build-arg", f"BASE={base}",
              "--secret", f"id=apikey,src={tmp_path / 'apikey'}", str(offline))
    assert r.code == 0, r.err[-3000:]  # no network in the install step: the .deb and lists came from the cache
    out = run("--rm", "-q", "--network", "none", "apt:offline")
    assert out.code == 0 and out.out == "from the cache\n", (out.out, out.err)
    g = run("--rm", "-q", "--network", "none", "apt:offline", "cat", "/greeting")
    assert g.out == "signed\n"
