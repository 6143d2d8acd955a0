"""The image config ctk-build writes equals buildah's for the same Dockerfile (Debian's buildah, when installed).

Compared: the ``config`` object (without buildah's own ``io.buildah.version`` label), the number of layers,
and the history: ``created_by`` (COPY source hashes aside, each tool hashes its own way) and ``empty_layer``.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from ctk_shared import images as store

from .conftest import write

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")]

DOCKERFILE = """\
FROM {base}
ARG HELM_VERSION=v3.5.2
RUN echo installing > /ca.txt
RUN mkdir -p /tmp/h && \\
    echo "helm ${{HELM_VERSION}}" > /tmp/h/helm && \\
    rm -rf /tmp/h
COPY app /usr/local/bin/
ENV A=b C="d e"
WORKDIR /srv
LABEL org.example.x=y
EXPOSE 9090 53/udp
USER 1000:1000
VOLUME /data
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
"""


def _normalise(history):
    out = []
    for h in history:
        by = re.sub(r"(COPY|ADD) (file|dir|multi):[0-9a-f]+", r"\1 \2:HASH", h.get("created_by", ""))
        out.append((by, bool(h.get("empty_layer"))))
    return out


def test_config_and_history_match_buildah(build, ctd, bb, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE.format(base=bb), "app": ("#!/bin/sh\n", 0o755)})
    r = build("-q", "-t", "parity", str(ctx))
    assert r.code == 0, r.err
    ours = store.load_local(ctd, "docker.io/library/parity:latest").config.raw

    root = tmp_path / "buildah"
    g = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
    p = subprocess.run([*g, "bud", "--layers", "--tls-verify=false", "--isolation", "chroot", "-t", "parity",
                        str(ctx)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    doc = json.loads(subprocess.run([*g, "inspect", "--type", "image", "parity"], capture_output=True, text=True,
                                    check=True).stdout)
    theirs = doc["OCIv1"]
    subprocess.run([*g, "rmi", "-a", "-f"], capture_output=True)

    their_cfg = dict(theirs["config"])
    their_cfg["Labels"] = {k: v for k, v in their_cfg.get("Labels", {}).items() if k != "io.buildah.version"}
    assert ours["config"] == their_cfg
    assert len(ours["rootfs"]["diff_ids"]) == len(theirs["rootfs"]["diff_ids"])
    assert _normalise(ours["history"]) == _normalise(theirs["history"])
    assert (ours["os"], ours["architecture"]) == (theirs["os"], theirs["architecture"])
