"""ctk-build against a real containerd and registry: the seed's Dockerfile, the image config, running it."""
from __future__ import annotations

import json

import pytest
from ctk_shared import images as store

from .conftest import write

pytestmark = pytest.mark.integration

SEED_LIKE = """\
# Like the seed article's Dockerfile, with a local base image instead of alpine from the Internet.
FROM {base}
ARG HELM_VERSION=v3.5.2
RUN echo installing ca-certificates > /ca.txt
# install helm
RUN mkdir -p /tmp/linux-amd64 && \\
echo "helm ${{HELM_VERSION}}" > /tmp/linux-amd64/helm && \\
chmod +x /tmp/linux-amd64/helm && \\
mkdir -p /usr/bin && mv /tmp/linux-amd64/helm /usr/bin/ && \\
rm -rf /tmp/linux-amd64
#
COPY ks-apiserver /usr/local/bin/
EXPOSE 9090
CMD ["sh"]
"""


def _config(ctd, name):
    img = store.load_local(ctd, name)
    return img, img.config.raw


def test_seed_dockerfile_builds_lists_and_runs(build, run, ctk, ctd, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": SEED_LIKE.format(base=bb),
                                   "ks-apiserver": ("#!/bin/sh\necho apiserver $1\n", 0o755)})
    r = build("-t", "ks-apiserver", str(ctx))
    assert r.code == 0, r.err
    assert len(r.lines) == 1 and r.lines[0].startswith("docker.io/library/ks-apiserver:latest@sha256:")
    img, cfg = _config(ctd, "docker.io/library/ks-apiserver:latest")
    assert cfg["config"]["ExposedPorts"] == {"9090/tcp": {}}
    assert cfg["config"]["Cmd"] == ["sh"]
    base = store.load_local(ctd, bb)
    assert len(img.manifest.layers) == len(base.manifest.layers) + 3
    assert cfg["rootfs"]["diff_ids"][: len(base.config.diff_ids)] == base.config.diff_ids
    hist = [h for h in cfg["history"] if not h.get("empty_layer")]
    assert hist[-2]["created_by"].startswith("|1 HELM_VERSION=v3.5.2 /bin/sh -c mkdir -p /tmp/linux-amd64 && ")
    assert [h for h in cfg["history"] if "EXPOSE" in h["created_by"]][0]["empty_layer"] is True
    listed = [json.loads(x) for x in ctk("images").lines]
    assert any(x["Repository"] == "ks-apiserver" for x in listed)
    out = run("--rm", "-q", "ks-apiserver", "sh", "-c",
              "cat /usr/bin/helm /ca.txt; ks-apiserver up; ls /tmp; test -e /proc/1 && echo proc")
    assert out.code == 0, out.err
    assert out.out == "helm v3.5.2\ninstalling ca-certificates\napiserver up\nproc\n"


def test_quiet_build_pipes_into_ctk_run(build, run, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nCMD [\"sh\", \"-c\", \"echo piped; sleep 30\"]\n"})
    r = build("-q", "-t", "app", str(ctx))
    assert r.code == 0 and r.err == "" and len(r.lines) == 1
    d = run("-d", "-", input=r.out)
    assert d.code == 0, d.err
    assert len(d.out.strip()) == 64


def test_failing_run_reports_exit_code_and_output_and_leaves_nothing(build, ctd, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo one; echo two >&2; exit 7\n"})
    before = {s.name for s in ctd.snapshots().list()}
    r = build("-t", "broken", str(ctx))
    assert r.code == 1
    assert "Dockerfile:2: RUN echo one; echo two >&2; exit 7: exit code 7" in r.err
    assert "  one\n" in r.err and "  two\n" in r.err
    assert r.out == ""
    assert [i.name for i in ctd.images.list() if "broken" in i.name] == []
    assert ctd.containers.list() == []
    left = [s for s in ctd.snapshots().list() if s.name not in before and s.kind != "committed"]
    assert left == []
    assert ctd.leases.list() == []


def test_no_context_from_stdin(build, bb):
    r = build("-q", "-t", "stdin", "-", input=f"FROM {bb}\nRUN echo hi > /hi\n")
    assert r.code == 0, r.err
    r = build("-q", "-", input=f"FROM {bb}\nCOPY x /x\n")
    assert r.code == 1 and "needs a build context" in r.err


def test_json_format_digestfile_and_pull(build, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nLABEL a=b\n"})
    r = build("-q", "--pull", "--format", "json", "--digestfile", str(tmp_path / "d"), "-t", "j1", "-t", "j2",
              str(ctx))
    assert r.code == 0, r.err
    rec = json.loads(r.out)
    assert rec["Names"] == ["docker.io/library/j1:latest", "docker.io/library/j2:latest"]
    assert rec["ref"] == f"docker.io/library/j1:latest@{rec['Digest']}"
    assert (tmp_path / "d").read_text() == rec["Digest"]
