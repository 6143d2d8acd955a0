"""The eStargz writer and reader, checked against the spec (stargz-snapshotter docs/estargz.md, v0.12) with an
independent parse: the blob is taken apart here with zlib, gzip, tarfile and json only."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import struct
import tarfile
import zlib

import pytest
import zstandard
from ctk_shared import estargz
from ctk_shared.errors import IntegrityError, InvalidArgument

MTIME = 1704067200  # 2024-01-01T00:00:00Z
CHUNK = 4096


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ti(name, type_=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, uname="root", gname="root", **kw):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = type_, mode, MTIME, uid, gid, uname, gname
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


BIG = bytes(range(256)) * 40 + b"tail"  # 10244 bytes: 2 full chunks of 4096 and a 2052-byte one
EXACT = b"x" * CHUNK  # exactly one chunk
LONG = "deep/" + "d" * 120 + "/file-with-a-long-name.txt"  # needs a PAX path record


def source_entries() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    xattr = _ti("etc/cap", pax_headers={"SCHILY.xattr.security.capability": "\x01\x02ab",
                                        "SCHILY.xattr.user.note": "hello"})
    return [
        (_ti("etc/", tarfile.DIRTYPE, 0o40755), None),  # Go's FileInfoHeader puts the type bits in the mode
        (_ti("etc/passwd", mode=0o100644), b"root:x:0:0:root:/root:/bin/sh\n"),
        (_ti("etc/empty"), b""),
        (xattr, b"cap"),
        (_ti("bin/", tarfile.DIRTYPE, 0o755), None),
        (_ti("bin/big", mode=0o755), BIG),
        (_ti("bin/exact"), EXACT),
        (_ti("bin/sh", tarfile.SYMTYPE, 0o777, linkname="big"), None),
        (_ti("bin/hard", tarfile.LNKTYPE, linkname="bin/big"), None),
        (_ti("home/", tarfile.DIRTYPE, 0o755, uid=1000, gid=1000, uname="user", gname="users"), None),
        (_ti("home/u.txt", uid=1000, gid=1000, uname="user", gname="users"), b"mine"),
        (_ti("home/v.txt", uid=1000, gid=1000, uname="user", gname="users"), b"also mine"),
        (_ti("dev/", tarfile.DIRTYPE, 0o755), None),
        (_ti("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3), None),
        (_ti("dev/loop0", tarfile.BLKTYPE, 0o660, devmajor=7, devminor=0), None),
        (_ti("dev/fifo", tarfile.FIFOTYPE, 0o600), None),
        (_ti("epoch", mtime=0), b"old"),
        (_ti("caf\u00e9 & <b>.txt"), b"utf8"),
        (_ti("deep/", tarfile.DIRTYPE, 0o755), None),
        (_ti(LONG), b"long"),
    ]


def make_tar(entries) -> bytes:
    """A PAX tar; unlike tarfile's writer it keeps file-type bits in the mode field, as Go's tar headers have."""
    buf = io.BytesIO()
    for ti, data in entries:
        ti.size = len(data) if data is not None else 0
        hdr = bytearray(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        b = len(hdr) - 512
        hdr[b + 100:b + 108] = b"%07o\0" % ti.mode
        hdr[b + 148:b + 156] = b" " * 8
        hdr[b + 148:b + 156] = b"%06o\0 " % sum(hdr[b:b + 512])
        buf.write(hdr)
        if data:
            buf.write(data + b"\0" * (-len(data) % 512))
    buf.write(b"\0" * 1024)
    return buf.getvalue()


def build(tar: bytes, **kw) -> tuple[bytes, estargz.BuildResult]:
    out = io.BytesIO()
    res = estargz.build(io.BytesIO(tar), out, **kw)
    return out.getvalue(), res


def members_at(blob: bytes, off: int) -> bytes:
    """Decompress the one gzip member at ``off`` (independently of the reader under test)."""
    assert blob[off:off + 3] == b"\x1f\x8b\x08", f"no gzip member starts at {off}"
    return zlib.decompressobj(31).decompress(blob[off:])


def independent_toc(blob: bytes) -> tuple[int, bytes, dict]:
    footer = blob[-51:]
    assert footer[:10] == b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff"
    assert footer[10:12] == struct.pack("<H", 26) and footer[12:14] == b"SG" and footer[14:16] == struct.pack("<H", 22)
    assert footer[32:38] == b"STARGZ" and footer[38:] == b"\x01\x00\x00\xff\xff" + b"\x00" * 8
    toc_off = int(footer[16:32], 16)
    with tarfile.open(fileobj=io.BytesIO(members_at(blob, toc_off)), mode="r:") as tf:
        (m,) = tf.getmembers()  # the TOC member holds the TOC entry and the end of the archive, nothing else
        assert m.name == "stargz.index.json" and m.mode == 0 and m.mtime == 0
        data = tf.extractfile(m).read()
    return toc_off, data, json.loads(data)


@pytest.fixture(scope="module")
def src_tar() -> bytes:
    return make_tar(source_entries())


@pytest.fixture(scope="module")
def built(src_tar):
    return build(gzip.compress(src_tar, mtime=0), chunk_size=CHUNK)


# --- the blob is an ordinary tar.gz ----------------------------------------------------------------------
def test_result_is_a_valid_tar_gz_with_the_same_files(src_tar, built):
    blob, res = built
    with tarfile.open(fileobj=io.BytesIO(src_tar)) as tf:
        want = {m.name: (m, tf.extractfile(m).read() if m.isfile() else None) for m in tf}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        got = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf]
    names = [m.name for m, _ in got]
    assert names[0] == ".no.prefetch.landmark" and got[0][1] == b"\x0f"
    assert names[-1] == "stargz.index.json"
    assert names[1:-1] == list(want)  # input order kept
    for m, data in got[1:-1]:
        w, wdata = want[m.name]
        assert (m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.linkname, m.devmajor, m.devminor) == \
            (w.type, w.mode, w.uid, w.gid, w.uname, w.gname, w.mtime, w.linkname, w.devmajor, w.devminor), m.name
        assert data == wdata, m.name
        assert {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY")} == \
            {k: v for k, v in w.pax_headers.items() if k.startswith("SCHILY")}


def test_diff_id_and_sizes(built):
    blob, res = built
    tar = gzip.decompress(blob)  # all members in a row; the footer decompresses to nothing
    assert res.diff_id == sha(tar) and res.uncompressed_size == len(tar)
    assert res.digest == sha(blob) and res.size == len(blob)
    assert gzip.decompress(blob[-51:]) == b""
    assert res.annotations == {"containerd.io/snapshot/stargz/toc.digest": res.toc_digest,
                               "io.containers.estargz.uncompressed-size": str(len(tar))}


def test_input_compression_does_not_matter(src_tar, built):
    for data in (src_tar, zstandard.ZstdCompressor().compress(src_tar)):
        blob, res = build(data, chunk_size=CHUNK)
        assert blob == built[0] and res.toc_digest == built[1].toc_digest


# --- footer and TOC, parsed independently --------------------------------------------------------------------
def test_footer_bytes_point_at_the_toc(built):
    blob, res = built
    toc_off, data, toc = independent_toc(blob)
    assert toc_off == res.toc_offset
    assert blob[-51:] == estargz.footer_bytes(toc_off)
    assert res.toc_digest == sha(data)
    assert data.startswith(b'{\n\t"version": 1,\n\t"entries": [\n\t\t{\n\t\t\t"name": ')  # Go's MarshalIndent(…, "\t")
    assert b"\\u0026 \\u003cb\\u003e" in data and "café".encode() in data  # Go's HTML escaping, raw UTF-8
    assert estargz.parse_footer(blob[-51:]) == (toc_off, 51)


def test_legacy_47_byte_footer_is_read():
    sub = b"%016xSTARGZ" % 1234
    legacy = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff" + struct.pack("<H", 22) + sub + b"\x01\x00\x00\xff\xff" + b"\0" * 8
    assert len(legacy) == 47 and gzip.decompress(legacy) == b""
    assert estargz.parse_footer(b"junk" + legacy) == (1234, 47)
    with pytest.raises(InvalidArgument):
        estargz.parse_footer(b"\0" * 51)


def test_toc_fields_one_by_one(src_tar, built):
    blob, res = built
    _, _, toc = independent_toc(blob)
    assert set(toc) == {"version", "entries"} and toc["version"] == 1
    ents = toc["entries"]
    by = {}
    for e in ents:
        if e["type"] != "chunk":
            by[e["name"]] = e
    with tarfile.open(fileobj=io.BytesIO(src_tar)) as tf:
        src = {m.name + ("/" if m.isdir() else ""): (m, tf.extractfile(m).read() if m.isfile() else None) for m in tf}
    assert list(by) == [".no.prefetch.landmark", *src]
    seen_user: dict[int, str] = {}
    seen_group: dict[int, str] = {}
    for name, (m, data) in src.items():
        e = by[name]
        kind = {tarfile.REGTYPE: "reg", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
                tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}[m.type]
        assert e["type"] == kind, name
        assert e.get("size", 0) == (len(data) if kind == "reg" else 0), name
        assert e.get("modtime", "") == ("" if m.mtime == 0 else "2024-01-01T00:00:00Z"), name
        assert e.get("mode", 0) == m.mode and e.get("uid", 0) == m.uid and e.get("gid", 0) == m.gid, name
        assert e.get("linkName", "") == m.linkname, name
        # user and group names appear only where they change for a uid/gid
        assert e.get("userName") == (m.uname if seen_user.get(m.uid) != m.uname else None), name
        assert e.get("groupName") == (m.gname if seen_group.get(m.gid) != m.gname else None), name
        seen_user[m.uid], seen_group[m.gid] = m.uname, m.gname
        if kind in ("char", "block"):
            assert (e.get("devMajor", 0), e.get("devMinor", 0)) == (m.devmajor, m.devminor)
        else:
            assert "devMajor" not in e and "devMinor" not in e
        xattrs = {k[len("SCHILY.xattr."):]: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()
                  for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        assert e.get("xattrs", {}) == xattrs, name
        if kind == "reg":
            assert e["digest"] == sha(data)
            if data:
                assert e["chunkDigest"] == sha(data[:CHUNK])
                # the member at `offset` decompresses to the file's data, from its first byte
                assert members_at(blob, e["offset"])[:min(len(data), CHUNK)] == data[:CHUNK]
            else:
                assert "offset" not in e and "chunkDigest" not in e
        else:
            assert not {"digest", "chunkDigest", "offset", "size"} & set(e), name
    assert by["dev/null"]["devMajor"] == 1 and by["dev/null"]["devMinor"] == 3
    assert by["etc/"]["mode"] == 0o40755 and by["etc/passwd"]["mode"] == 0o100644  # type bits kept
    assert by["etc/cap"]["xattrs"] == {"security.capability": base64.b64encode(b"\x01\x02ab").decode(),
                                       "user.note": base64.b64encode(b"hello").decode()}
    assert by[LONG]["name"] == LONG
    land = by[".no.prefetch.landmark"]
    assert land == {"name": ".no.prefetch.landmark", "type": "reg", "size": 1, "offset": land["offset"],
                    "digest": sha(b"\x0f"), "chunkDigest": sha(b"\x0f")}
    # JSON field order is Go's struct order
    order = ["name", "type", "size", "modtime", "linkName", "mode", "uid", "gid", "userName", "groupName", "offset",
             "devMajor", "devMinor", "xattrs", "digest", "chunkOffset", "chunkSize", "chunkDigest"]
    for e in ents:
        assert list(e) == [k for k in order if k in e]
    # offsets strictly increase: a new member per non-empty file/chunk
    offs = [e["offset"] for e in ents if "offset" in e]
    assert offs == sorted(set(offs)) and offs[0] > 0


def test_chunks(built):
    blob, _ = built
    _, _, toc = independent_toc(blob)
    ents = toc["entries"]
    i = next(n for n, e in enumerate(ents) if e["name"] == "bin/big")
    big = ents[i:i + 3]
    assert [e["type"] for e in big] == ["reg", "chunk", "chunk"] and ents[i + 3]["type"] != "chunk"
    assert big[0]["chunkSize"] == CHUNK and "chunkOffset" not in big[0]
    assert big[1] == {"name": "bin/big", "type": "chunk", "offset": big[1]["offset"], "chunkOffset": CHUNK,
                      "chunkSize": CHUNK, "chunkDigest": sha(BIG[CHUNK:2 * CHUNK])}
    assert big[2] == {"name": "bin/big", "type": "chunk", "offset": big[2]["offset"], "chunkOffset": 2 * CHUNK,
                      "chunkDigest": sha(BIG[2 * CHUNK:])}  # the last chunk: no chunkSize ("to the end")
    for e, start in zip(big, (0, CHUNK, 2 * CHUNK)):
        want = BIG[start:start + CHUNK]
        assert members_at(blob, e["offset"])[:len(want)] == want
    exact = next(e for e in ents if e["name"] == "bin/exact")
    assert exact["chunkSize"] == CHUNK  # exactly one chunk: Go sets chunkSize when the rest is >= the chunk size
    assert ents[ents.index(exact) + 1]["type"] != "chunk"


def test_default_chunk_size_is_4_mib():
    data = b"\1" * ((4 << 20) + 10)
    blob, res = build(make_tar([(_ti("f"), data)]))
    ents = res.toc["entries"]
    assert [e["type"] for e in ents] == ["reg", "reg", "chunk"]
    assert ents[1]["chunkSize"] == 4 << 20 and ents[2]["chunkOffset"] == 4 << 20


# --- landmarks and prioritised files ---------------------------------------------------------------------------
def test_prioritized_files_move_with_parents_and_link_targets(src_tar):
    blob, res = build(src_tar, chunk_size=CHUNK, prioritized=["bin/hard", "/etc/passwd", "nope/x", "home/u.txt"])
    _, _, toc = independent_toc(blob)
    names = [e["name"] for e in toc["entries"] if e["type"] != "chunk"]
    assert names[:8] == ["bin/", "bin/big", "bin/hard", "etc/", "etc/passwd", "home/", "home/u.txt",
                         ".prefetch.landmark"]
    assert names[8:] == [n for n in [m for m in _src_names(src_tar)] if n not in names[:8]]
    assert res.missed_prioritized == ["nope/x"]
    r = estargz.Reader.from_bytes(blob, res.toc_digest)
    assert r.landmark() == ".prefetch.landmark"
    assert r.prefetch_range() == (0, r.lookup(".prefetch.landmark")["offset"])
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        assert tf.extractfile(".prefetch.landmark").read() == b"\x0f"


def _src_names(tar: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return [m.name + ("/" if m.isdir() else "") for m in tf]


def test_old_landmarks_and_toc_are_dropped_and_duplicates_replaced():
    tar = make_tar([(_ti(".no.prefetch.landmark"), b"\x0f"), (_ti("stargz.index.json"), b"{}"),
                    (_ti("a"), b"first"), (_ti("b"), b"b"), (_ti("./a"), b"second")])
    blob, res = build(tar)
    names = [e["name"] for e in res.toc["entries"]]
    assert names == [".no.prefetch.landmark", "b", "./a"]
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tf:
        assert tf.getnames() == [".no.prefetch.landmark", "b", "./a", "stargz.index.json"]
    # a converted layer converts again to the same thing
    again, res2 = build(blob)
    assert again == blob and res2.toc_digest == res.toc_digest


def test_record_file_formats(tmp_path):
    p = tmp_path / "rec.json"
    p.write_text('{"path":"a","manifestDigest":"sha256:x","layerIndex":0}\n{"path":"b"}\n{"path":"a"}\n')
    assert estargz.read_record_file(p) == ["a", "b"]
    p.write_text('["x", {"path": "y"}]')
    assert estargz.read_record_file(p) == ["x", "y"]
    p.write_text("{nope")
    with pytest.raises(InvalidArgument):
        estargz.read_record_file(p)


# --- the reader: verification and faults ------------------------------------------------------------------------
def test_reader_round_trip(src_tar, built):
    blob, res = built
    r = estargz.Reader.from_bytes(blob, res.toc_digest)
    r.verify()
    assert r.toc.digest == res.toc_digest and r.toc.offset == res.toc_offset
    assert r.read_file("bin/big") == BIG and r.read_file("/bin/hard") == BIG and r.read_file("etc/empty") == b""
    assert r.read_file(LONG) == b"long"
    assert [len(c) for c in r.iter_file("bin/big")] == [CHUNK, CHUNK, len(BIG) - 2 * CHUNK]
    with tarfile.open(fileobj=io.BytesIO(src_tar)) as tf:
        for m in tf:
            if m.isfile():
                assert r.read_file(m.name) == tf.extractfile(m).read()
    toc = estargz.verify_blob(io.BytesIO(blob), res.toc_digest)
    assert toc.entries[0]["name"] == ".no.prefetch.landmark"


def _rebuild_with_toc(blob: bytes, toc: dict) -> bytes:
    """The blob with another TOC JSON in its TOC member (and the footer unchanged: the offset is the same)."""
    off = estargz.parse_footer(blob[-51:])[0]
    data = estargz.toc_json(toc)
    ti = tarfile.TarInfo("stargz.index.json")
    ti.size, ti.mode, ti.mtime = len(data), 0, 0
    raw = ti.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512) + b"\0" * 1024
    return blob[:off] + gzip.compress(raw, mtime=0) + blob[-51:]


def test_tampered_toc_is_refused(built):
    blob, res = built
    toc = json.loads(json.dumps(res.toc))
    toc["entries"][2]["mode"] = 0o777
    bad = _rebuild_with_toc(blob, toc)
    with tarfile.open(fileobj=io.BytesIO(bad), mode="r:gz") as tf:  # still a fine tar.gz
        assert "stargz.index.json" in tf.getnames()
    with pytest.raises(IntegrityError, match="TOC digest"):
        estargz.Reader.from_bytes(bad, res.toc_digest)
    with pytest.raises(IntegrityError):
        estargz.verify_blob(io.BytesIO(bad), res.toc_digest)
    estargz.Reader.from_bytes(bad)  # without the annotation it parses (what a verifying consumer must avoid)


def test_corrupted_chunk_is_detected():
    """A data member replaced by a well-formed one of the same length (stored deflate) with other bytes:
    the gzip stream is valid, the TOC digest matches, and only the chunk digest tells."""
    tar = make_tar([(_ti("a"), b"A" * 3000), (_ti("b"), b"B" * 3000)])
    blob, res = build(tar, level=0)
    r = estargz.Reader.from_bytes(blob, res.toc_digest)
    e = r.lookup("a")
    start, end = e["offset"], r.lookup("b")["offset"]
    plain = members_at(blob, start)
    evil = b"Z" * 3000 + plain[3000:]
    z = zlib.compressobj(0, zlib.DEFLATED, -15)
    member = (blob[start:start + 10] + z.compress(evil) + z.flush()
              + struct.pack("<II", zlib.crc32(evil), len(evil)))
    assert len(member) == end - start
    bad = blob[:start] + member + blob[end:]
    with tarfile.open(fileobj=io.BytesIO(bad), mode="r:gz") as tf:
        assert tf.extractfile("a").read() == b"Z" * 3000  # gzip and tar are happy with it
    r = estargz.Reader.from_bytes(bad, res.toc_digest)  # the TOC is intact
    assert r.read_file("b") == b"B" * 3000
    with pytest.raises(IntegrityError, match="chunk at offset"):
        r.read_file("a")
    with pytest.raises(IntegrityError):
        r.verify()
    # flipped compressed bytes are caught too, as corruption or as a digest mismatch
    flipped = bytearray(blob)
    flipped[start + 20] ^= 0xFF
    with pytest.raises(IntegrityError):
        estargz.Reader.from_bytes(bytes(flipped), res.toc_digest).read_file("a")


def test_not_estargz_and_not_tar():
    plain = gzip.compress(make_tar([(_ti("a"), b"x")]), mtime=0)
    with pytest.raises(InvalidArgument, match="not an eStargz"):
        estargz.Reader.from_bytes(plain)
    with pytest.raises(InvalidArgument):
        build(b"this is not a tar archive at all" * 40)


# --- the TOC in one read (the lazy snapshotter's mount cost) ---------------------------------------------
def _counting(blob: bytes) -> tuple[list[tuple[int, int]], object]:
    calls: list[tuple[int, int]] = []

    def read_at(off: int, n: int) -> bytes:
        calls.append((off, n))
        return blob[off:off + n]

    return calls, read_at


def test_footer_and_a_small_toc_come_in_one_read(built):
    blob, res = built
    calls, read_at = _counting(blob)
    r = estargz.Reader(read_at, len(blob), res.toc_digest)
    assert r.toc.digest == res.toc_digest
    assert calls == [(len(blob) - estargz.TAIL_GUESS, estargz.TAIL_GUESS)] or calls == [(0, len(blob))]
    # a blob smaller than the guess is read whole, once
    tail = estargz.read_tail(read_at, len(blob), guess=1 << 30)
    assert tail == blob[res.toc_offset:]


def test_a_toc_larger_than_the_guess_takes_a_second_read_of_what_is_missing(built):
    blob, res = built
    calls, read_at = _counting(blob)
    guess = len(blob) - res.toc_offset - 10  # the footer and most of the TOC, not its start
    tail = estargz.read_tail(read_at, len(blob), guess=guess)
    assert tail == blob[res.toc_offset:]
    assert calls == [(len(blob) - guess, guess), (res.toc_offset, 10)]


def test_a_tail_fetched_by_someone_else_is_checked_as_if_read_here(built):
    blob, res = built
    calls, read_at = _counting(blob)
    r = estargz.Reader(read_at, len(blob), res.toc_digest, tail=blob[res.toc_offset:])
    assert calls == [] and r.read_file("bin/big") == BIG
    toc = json.loads(json.dumps(res.toc))
    toc["entries"][2]["mode"] = 0o777
    bad = _rebuild_with_toc(blob, toc)
    with pytest.raises(IntegrityError, match="TOC digest"):
        estargz.Reader(read_at, len(bad), res.toc_digest, tail=bad[res.toc_offset:])
    with pytest.raises(InvalidArgument, match="TOC tail"):  # cut short, or with bytes before the TOC
        estargz.Reader(read_at, len(blob), res.toc_digest, tail=blob[res.toc_offset + 1:])
    with pytest.raises(InvalidArgument, match="not an eStargz"):
        estargz.Reader(read_at, len(blob), res.toc_digest, tail=b"garbage from a registry" * 3)


def test_a_footer_pointing_past_the_cap_is_refused_before_a_second_read(built, monkeypatch):
    from ctk_shared import limits

    blob, res = built
    calls, read_at = _counting(blob)
    monkeypatch.setitem(limits.CAPS, "TOC", 16)
    with pytest.raises(limits.DocumentTooLarge, match="TOC"):
        estargz.read_tail(read_at, len(blob), guess=64)
    assert len(calls) == 1
