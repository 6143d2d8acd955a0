"""Less common instructions end to end: ONBUILD, HEALTHCHECK, SHELL, ADD of a URL, proxy args, untagged images."""
from __future__ import annotations

import json

import pytest
from ctk_shared import images as store

from .conftest import write

pytestmark = pytest.mark.integration


def test_onbuild_healthcheck_shell(build, run, ctd, bb, tmp_path):
    parent = write(tmp_path / "parent", {"Dockerfile": f"""FROM {bb}
ONBUILD RUN echo triggered > /onbuild
HEALTHCHECK --interval=30s --retries=3 CMD wget -q -O- http://localhost/ || exit 1
"""})
    assert build("-q", "-t", "parent", str(parent)).code == 0
    cfg = store.load_local(ctd, "docker.io/library/parent:latest").config.raw["config"]
    assert cfg["OnBuild"] == ["RUN echo triggered > /onbuild"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
                                  "Interval": 30_000_000_000, "Retries": 3}
    child = write(tmp_path / "child", {"Dockerfile": """FROM parent
SHELL ["/bin/sh", "-e", "-c"]
RUN echo "shell $0" > /shell
HEALTHCHECK NONE
"""})
    r = build("-q", "-t", "child", str(child))
    assert r.code == 0, r.err
    cfg = store.load_local(ctd, "docker.io/library/child:latest").config.raw["config"]
    assert "OnBuild" not in cfg and cfg["Healthcheck"] == {"Test": ["NONE"]}
    assert cfg["Shell"] == ["/bin/sh", "-e", "-c"]
    out = run("--rm", "-q", "child", "cat", "/onbuild", "/shell")
    assert out.out == "triggered\nshell /bin/sh\n"


def test_add_url_and_proxy_args(build, run, registry, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"""FROM {bb}
ADD {registry.url}/v2/ /fetched/
RUN echo "proxy=$HTTP_PROXY" > /proxy
"""})
    r = build("-q", "-t", "urls", "--build-arg", "HTTP_PROXY=http://proxy.invalid:3128", str(ctx))
    assert r.code == 0, r.err
    out = run("--rm", "-q", "urls", "sh", "-c", "ls /fetched; cat /proxy")
    assert out.out == "download\nproxy=http://proxy.invalid:3128\n"


def test_untagged_build_is_usable_and_unused_args_warned(build, run, ctk, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nCMD [\"echo\", \"untagged\"]\n"})
    r = build("--build-arg", "NOBODY=1", str(ctx))
    assert r.code == 0, r.err
    assert "build-args not consumed: NOBODY" in r.err
    ref = r.out.strip()
    assert ref.startswith("ctk-build-dangling@sha256:")
    assert run("--rm", "-q", ref).out == "untagged\n"
    assert ctk("images").code == 0
    assert any(json.loads(x)["Digest"] == ref.split("@")[1] for x in ctk("images", "--digests").lines)


def test_add_checksum(build, registry, bb, tmp_path):
    good = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # the registry's "{}"
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nADD --checksum={good} {registry.url}/v2/ /v2.json\n"})
    r = build("-q", str(ctx))
    assert r.code == 0, r.err
    (ctx / "Dockerfile").write_text(f"FROM {bb}\nADD --checksum=sha256:{'0' * 64} {registry.url}/v2/ /v2.json\n")
    r = build("-q", str(ctx))
    assert r.code == 1 and f"Dockerfile:2: ADD --checksum: {registry.url}/v2/ has digest {good}" in r.err


def test_missing_base_image_names_the_line(build, registry, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"# base\nFROM {registry.host}/no/such:image\n"})
    r = build("-q", str(ctx))
    assert r.code != 0 and r.err.startswith(f"ctk-build: error: Dockerfile:2: FROM {registry.host}/no/such:image: ")
