"""``ctk-pull prune``: dangling images, ``-a`` unused images, Docker's filters, prompt and report, and what killed
pulls left behind."""
from __future__ import annotations

import os
import pty
import subprocess
import time
from datetime import UTC, datetime

import pytest
from ctk_shared.containerd import Container, Image
from ctk_shared.errors import NotFound

from tests.integration.test_pull_leftovers import _extracts, _kill_during_unpack
from tests.support import images as im

pytestmark = pytest.mark.integration


def _push(registry, tmp_path, name: str, *, seed: str, created: str = im.CREATED,
          labels: dict[str, str] | None = None) -> str:
    layout = tmp_path / f"layout-{name}"
    cfg = {"Labels": labels} if labels else None
    im.build_image(layout, "v1", [im.extra_layer_tar({f"/{seed}": im.random_bytes(seed, 200_000)})], created=created,
                   config=cfg)
    ref = f"{registry.host}/prune/{name}:v1"
    im.push_layout(layout, "v1", ref)
    return ref


@pytest.fixture
def two_images(ctk, ctd, registry, tmp_path):
    """(kept, dangling): two pulled images; the second's tag replaced by ctk-build's untagged name."""
    refs = [_push(registry, tmp_path, n, seed=f"{n}-{tmp_path.name}") for n in ("keep", "loose")]
    for ref in refs:
        r = ctk("-q", ref)
        assert r.code == 0, r.err
    loose = ctd.images.get(refs[1])
    dangling = f"ctk-build-dangling@{loose.target.digest}"
    ctd.images.put(Image(name=dangling, target=loose.target, labels={}))
    ctd.images.delete(refs[1])
    return refs[0], dangling, loose.target.digest


def test_prune_removes_dangling_images_only(ctk, ctd, two_images):
    kept, dangling, digest = two_images
    r = ctk("prune", "-f")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[:3] == ["Deleted Images:", f"deleted: {digest}", ""]
    assert lines[-1].startswith("Total reclaimed space: ") and lines[-1] != "Total reclaimed space: 0B"
    assert [i.name for i in ctd.images.list()] == [kept]
    with pytest.raises(NotFound):
        ctd.content.info(digest)  # collected at once
    r = ctk("prune", "-f")
    assert r.code == 0 and r.out == "Total reclaimed space: 0B\n"


def test_prune_all_keeps_images_containers_use(ctk, ctd, registry, tmp_path):
    used, unused = (_push(registry, tmp_path, n, seed=f"{n}-{tmp_path.name}") for n in ("used", "unused"))
    for ref in (used, unused):
        assert ctk("-q", ref).code == 0
    ctd.containers.create(Container(id="user", image=used, spec=b"{}"))
    try:
        ctk("tag", unused, f"{unused}-again")
        r = ctk("prune", "-a", "-f")
        assert r.code == 0, r.err
        digest = [line for line in r.out.splitlines() if line.startswith("deleted: ")]
        assert r.out.splitlines()[:3] == ["Deleted Images:", f"untagged: {unused}", f"untagged: {unused}-again"]
        assert len(digest) == 1  # one image with two names: deleted once
        assert [i.name for i in ctd.images.list()] == [used]
    finally:
        ctd.containers.delete("user")


def test_prune_filters(ctk, ctd, registry, tmp_path):
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = _push(registry, tmp_path, "old", seed=f"old-{tmp_path.name}")  # created 2024-01-01
    new = _push(registry, tmp_path, "new", seed=f"new-{tmp_path.name}", created=now)
    tagged = _push(registry, tmp_path, "labelled", seed=f"lab-{tmp_path.name}", labels={"keep": "yes"})
    for ref in (old, new, tagged):
        assert ctk("-q", ref).code == 0
    r = ctk("prune", "-a", "-f", "--filter", "until=1h", "--filter", "label!=keep=yes")
    assert r.code == 0, r.err
    assert sorted(i.name for i in ctd.images.list()) == sorted([new, tagged])
    r = ctk("prune", "-a", "-f", "--filter", "label=keep")
    assert r.code == 0, r.err
    assert [i.name for i in ctd.images.list()] == [new]
    for bad in ("until=yesterday", "dangling=true", "label="):
        r = ctk("prune", "-a", "-f", "--filter", bad)
        assert r.code == 2 and "invalid filter" in r.err, bad
    assert [i.name for i in ctd.images.list()] == [new]


def test_prune_asks_first(containerd, ctd, ctk, two_images):
    kept, dangling, _ = two_images
    r = ctk("prune", input="")  # stdin is not a terminal and gives no answer: refused, nothing removed
    assert r.code == 2 and "-f" in r.err
    assert len(ctd.images.list()) == 2

    def answer(text: str) -> tuple[int, str, str]:
        master, slave = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERD_", "CTK_"))}
        p = subprocess.Popen(["ctk-pull", "--address", containerd.address, "-n", ctd.namespace, "prune"],
                             stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        os.close(slave)
        time.sleep(0.5)
        os.write(master, text.encode())
        out, err = p.communicate(timeout=60)
        os.close(master)
        return p.returncode, out, err

    code, out, err = answer("n\n")
    assert code == 0 and out == ""
    assert "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] " in err
    assert len(ctd.images.list()) == 2
    code, out, err = answer("y\n")
    assert code == 0 and out.startswith("Deleted Images:\n")
    assert [i.name for i in ctd.images.list()] == [kept]


def test_prune_takes_back_what_a_killed_pull_left(containerd, ctd, ctk, real_images):
    _kill_during_unpack(containerd, ctd, real_images["redis"].ref)
    time.sleep(0.5)
    assert _extracts(ctd) and ctd.leases.list()
    r = ctk("prune", "-f")
    assert r.code == 0, r.err
    assert "Deleted Pull Leftovers:" in r.out and "snapshot: extract-" in r.out
    assert _extracts(ctd) == []
    assert ctd.leases.list(), "without -a the downloads stay for the next pull to resume from"
    r = ctk("prune", "-a", "-f")
    assert r.code == 0, r.err
    assert ctd.leases.list() == []
