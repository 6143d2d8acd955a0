"""A built layer is tarred by ctk-build from the step's overlay upper directory (tools/build/ctk_build/upperdiff.py)
instead of containerd's walking differ: it must mean what containerd's diff of the same two snapshots means
(same paths, types, modes, owners, times, link targets and contents; a removed directory's children as one
opaque mark instead of a whiteout each), also for what overlayfs merely copied up without a change."""
from __future__ import annotations

import io
import tarfile

import pytest
from ctk_shared import images, oci

from .conftest import write

pytestmark = pytest.mark.integration

DOCKERFILE = """\
FROM {bb}
RUN mkdir -p /d/keep /d/gone /e /m && echo a > /d/keep/f && echo b > /d/gone/g && echo c > /e/x \\
 && echo same > /same && echo h > /h1 && ln /h1 /h2 && ln -s /h1 /sl && mkfifo /fifo && echo m > /m/f
RUN rm -rf /d/gone && rm -rf /e && mkdir /e && echo new > /e/y && chmod 700 /d/keep \\
 && ln /d/keep/f /d/keep/f2 && chown 0:0 /same && rm /sl && ln -s /h2 /sl && echo more >> /h1 && touch /m
COPY f /d/keep/copied
"""


def _entries(raw: bytes) -> dict[str, tuple[object, ...]]:
    """name -> what it means: a hardlink as its target's content plus the set of names sharing it; a
    whiteout without its time (containerd writes the time of the diff)."""
    out: dict[str, tuple[object, ...]] = {}
    groups: dict[str, set[str]] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tf:
        members = list(tf)
        by_name = {m.name: m for m in members}
        for m in members:
            name = m.name.rstrip("/")
            if name.rsplit("/", 1)[-1].startswith(".wh."):
                out[name] = ("whiteout",)
                continue
            src = by_name[m.linkname] if m.islnk() else m
            data = tf.extractfile(src).read() if src.isreg() else b""  # type: ignore[union-attr]
            caps = {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            kind = tarfile.REGTYPE if m.islnk() else m.type
            out[name] = (kind, src.mode, src.uid, src.gid, int(src.mtime), m.linkname if m.issym() else "", data,
                         caps)
            if m.islnk():
                groups.setdefault(m.linkname, {m.linkname}).add(name)
    for group in groups.values():
        for name in group:
            out[name] = (*out[name], frozenset(group))
    return out


def _containerd_layer(ctd, parent: str, chain: str) -> bytes:  # type: ignore[no-untyped-def]
    """containerd's walking diff between the committed snapshots ``parent`` and ``chain``."""
    with ctd.lease_scope() as c:  # the views under the lease: containerd's GC may not take them meanwhile
        sn = c.snapshots("overlayfs")
        lower = sn.view(f"test-diff-lower-{chain}", parent)
        upper = sn.view(f"test-diff-upper-{chain}", chain)
        try:
            desc = c.diff.diff(lower, upper, oci.OCI_LAYER)
            return c.content.read_all(desc.digest)
        finally:
            sn.remove(f"test-diff-lower-{chain}")
            sn.remove(f"test-diff-upper-{chain}")


def test_layers_mean_what_containerds_diff_means(build, bb, tmp_path, ctd):
    ctx = write(tmp_path / "ctx", {"Dockerfile": DOCKERFILE.format(bb=bb), "f": "copied"})
    r = build("-q", "--network", "none", "-t", "layerdiff:1", str(ctx))
    assert r.code == 0, r.err
    img = images.load_local(ctd, "layerdiff:1")
    layers = [d.digest for d in img.manifest.layers]
    chains = img.chain_ids
    for i in (-3, -2, -1):  # the three built steps
        ours = _entries(ctd.content.read_all(layers[i]))
        theirs = _entries(_containerd_layer(ctd, chains[i - 1], chains[i]))
        opaque = {name.rsplit("/", 1)[0] for name in ours if name.endswith("/.wh..wh..opq")}
        # containerd writes a whiteout per child of a directory that was removed and made again
        theirs = {n: e for n, e in theirs.items()
                  if not (n.rsplit("/", 1)[-1].startswith(".wh.") and n.rsplit("/", 1)[0] in opaque)}
        ours = {n: e for n, e in ours.items() if not n.endswith("/.wh..wh..opq")}
        assert ours == theirs, f"layer {i}: only ours {sorted(set(ours) - set(theirs))}, " \
                               f"only containerd's {sorted(set(theirs) - set(ours))}, " \
                               f"differing {[n for n in ours if n in theirs and ours[n] != theirs[n]]}"
    second = _entries(ctd.content.read_all(layers[-2]))
    assert "same" not in second  # copied up by a chown to the same owner: no change, as containerd sees it
    assert "d/.wh.gone" in second and "e/.wh..wh..opq" in _names(ctd.content.read_all(layers[-2]))
    assert second["d/keep/f2"][-1] == frozenset({"d/keep/f", "d/keep/f2"})  # still one file with two names


def _names(raw: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tf:
        return set(tf.getnames())


def test_gzip_layers_name_their_uncompressed_digest(build, bb, tmp_path, ctd):
    import gzip
    import hashlib

    ctx = write(tmp_path / "ctx", {"Dockerfile": f"FROM {bb}\nRUN echo hi > /hi\n"})
    r = build("-q", "--network", "none", "--compression", "gzip", "-t", "layerdiff:gz", str(ctx))
    assert r.code == 0, r.err
    img = images.load_local(ctd, "layerdiff:gz")
    layer, diff_id = img.manifest.layers[-1], img.config.diff_ids[-1]
    assert layer.media_type == oci.OCI_LAYER_GZIP
    raw = gzip.decompress(ctd.content.read_all(layer.digest))
    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == diff_id
    assert ctd.content.info(layer.digest).labels["containerd.io/uncompressed"] == diff_id
    assert "hi" in _names(raw)
