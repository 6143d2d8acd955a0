"""COPY and ADD: sources (context, heredocs, URLs, other stages or images), their checksum for the cache,
and the copy into the step's mounted snapshot (:mod:`copier`)."""
from __future__ import annotations

import contextlib
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ctk_shared import oci
from ctk_shared import reference as refs
from ctk_shared.errors import CtkError, NotFound

from .cache import chain_key
from .dockerfile.instructions import Copy, Instruction
from .dockerfile.parser import DockerfileError
from .dockerfile.shell import Lexer, ShellError
from .sources import SourceTree, file_digest

if TYPE_CHECKING:
    from ctk_shared.containerd import Mount

    from .stage import StageContext


def copy(sc: StageContext, ins: Copy) -> None:
    """COPY or ADD (``ins.add``) as one layer step of the stage ``sc``."""
    kw = ins.keyword.upper()
    for flag in ("parents", "exclude"):
        if flag in ins.flags:
            raise sc.b.df.error(ins.node, f"{kw} --{flag} is not supported by ctk-build yet")
    chmod = None
    if isinstance(ins.flags.get("chmod"), str):
        text = sc.expand(ins.node, str(ins.flags["chmod"]))
        if not re.fullmatch(r"[0-7]{1,4}", text):
            raise sc.b.df.error(ins.node, f"invalid --chmod={text}: an octal mode is required")
        chmod = int(text, 8)
    chown = sc.expand(ins.node, str(ins.flags["chown"])) if isinstance(ins.flags.get("chown"), str) else ""
    dest = sc.expand(ins.node, ins.dest)
    inline: dict[str, bytes] = {}
    doc_names = {d.name: d for d in ins.heredocs}
    patterns: list[str] = []
    for raw in ins.sources:
        m = re.match(r"^\d*<<-?(.*)$", raw)
        if m and ins.heredocs:
            name = m.group(1).strip("'\"")
            doc = doc_names.get(name)
            if doc is not None:
                body = doc.body
                if doc.expand:
                    try:
                        body = Lexer(sc.b.df.escape, raw_quotes=True, raw_escapes=True).process_word(
                            body, sc.word_env())
                    except ShellError as e:
                        raise sc.b.df.error(ins.node, f"heredoc {name}: {e}") from None
                inline[name] = body.encode()
                continue
        for w in sc.expand_words(ins.node, raw) if ins.node.json_args() is None else [sc.expand(ins.node, raw)]:
            patterns.append(w)
    if "keep-git-dir" in ins.flags or any(re.match(r"^(git@|https?://\S*\.git(#|$))", p) for p in patterns):
        raise sc.b.df.error(ins.node, "ADD of a git repository is not supported by ctk-build")
    urls = [p for p in patterns if re.match(r"^https?://", p)]
    if "checksum" in ins.flags and (len(urls) != 1 or len(patterns) != 1):
        raise sc.b.df.error(ins.node, "ADD --checksum needs exactly one http(s) source")
    if urls and not ins.add:
        raise sc.b.df.error(ins.node, "COPY cannot copy from a URL (use ADD)")
    src_from = sc.expand(ins.node, str(ins.flags["from"])) if isinstance(ins.flags.get("from"), str) else ""
    if sc.b.context is None and not src_from and [p for p in patterns if p not in urls]:
        raise sc.b.df.error(ins.node, f"{kw} needs a build context (none was given)")
    with _source(sc, ins, src_from, urls) as (tree, from_key):
        rels: list[str] = []
        wildcard = False
        local = [p for p in patterns if p not in urls]
        for p in local:
            wildcard = wildcard or bool(re.search(r"[*?\[]", p))
            assert tree is not None  # a local source without a context was refused above
            try:
                rels.extend(tree.expand(p))
            except CtkError as e:
                raise sc.b.df.error(ins.node, e.message) from None
        for u in urls:
            rels.append(url_filename(u))
        try:
            checksum = tree.checksum(rels) if tree is not None else ""
        except CtkError as e:
            raise sc.b.df.error(ins.node, e.message) from None
        inline_sums = {k: oci.sha256_digest(v) for k, v in inline.items()}
        kind = "multi" if len(rels) + len(inline) > 1 else \
            ("dir" if rels and tree is not None and os.path.isdir(tree.resolve(rels[0])) else "file")
        digest = checksum or (oci.sha256_digest(repr(sorted(inline_sums.items())).encode())[7:])
        created_by = f"/bin/sh -c #(nop) {kw} {kind}:{digest} in {dest} "
        workdir = str(sc.state.config.get("WorkingDir") or "/")
        key = chain_key(sc.key, kw.lower(), dest, workdir, chown, chmod, checksum, from_key, inline_sums,
                        sorted(rels))

        def change(mounts: list[Mount], _skey: str) -> None:
            from . import copier, mounting, users  # only when the step is not cached

            with mounting.mounted(mounts) as root:
                owner = None
                if chown:
                    try:
                        owner = copier.CopyOwner(*users.resolve_chown(chown, [root]))
                    except CtkError as e:
                        raise sc.b.df.error(ins.node, e.message) from None
                try:
                    copier.copy(root, tree if tree is not None else SourceTree(root, context=False), rels,
                                dest, workdir, owner=owner, chmod=chmod, add=ins.add, wildcard=wildcard,
                                inline=inline)
                except CtkError as e:
                    raise sc.b.df.error(ins.node, e.message) from None

        sc.layer_step(ins, key, created_by, change)


@contextlib.contextmanager


def _source(sc: StageContext, ins: Copy, src_from: str,
            urls: list[str]) -> Iterator[tuple[SourceTree | None, str]]:
    """The tree COPY reads: the context, a downloaded URL, or a view of a stage or image."""
    if urls:
        with tempfile.TemporaryDirectory(prefix="ctk-build-url-") as tmp:
            for u in urls:
                dest = os.path.join(tmp, url_filename(u))
                _download(u, dest)
                want = str(ins.flags.get("checksum") or "")
                if want:
                    got = "sha256:" + file_digest(dest)
                    if got != sc.expand(ins.node, want):
                        raise sc.b.df.error(ins.node, f"ADD --checksum: {u} has digest {got}, "
                                              f"expected {want}")
            yield SourceTree(tmp, context=True, label="download"), ""
        return
    with source_tree(sc, ins, src_from) as tree:
        yield tree


@contextlib.contextmanager
def source_tree(sc: StageContext, ins: Instruction, src_from: str) -> Iterator[tuple[SourceTree | None, str]]:
    """The context (``src_from`` empty), or a read-only view of a stage's or an image's root, with the key of
    its content (the stage's cache key, the image's digest; "" for the context)."""
    if not src_from:
        yield sc.b.context, ""
        return
    dep = sc.b._stage_ref(src_from, sc.stage.index)
    if dep is not None:
        res = sc.b.results[dep.index]
        chain, from_key = res.state.chain_id, res.key
    else:
        if any(s.name == src_from.lower() for s in sc.b.plan.stages):
            raise sc.b.df.error(ins.node, f"--from={src_from}: stage is defined later")
        try:
            refs.parse(src_from)
        except CtkError:
            raise sc.b.df.error(ins.node, f"--from={src_from}: no such stage, and not an image "
                                  "reference") from None
        try:
            state, digest = sc.b.base_image(src_from, sc.b.opts.platform, ins.node)
        except DockerfileError:
            raise
        except CtkError as e:
            what = "RUN --mount from" if ins.keyword == "run" else f"{ins.keyword.upper()} --from"
            raise sc.b.df.error(ins.node, f"{what}={src_from}: no such stage, and no such image "
                                  f"({e.message})") from None
        chain, from_key = state.chain_id, digest
    if not chain:
        with tempfile.TemporaryDirectory(prefix="ctk-build-empty-") as tmp:
            yield SourceTree(tmp, context=False, label=f"stage {src_from}"), from_key
        return
    sn = sc.b.client.snapshots(sc.b.sn_name)
    from . import mounting
    from .layers import new_key

    vkey = new_key("from")
    mounts = sn.view(vkey, chain)
    try:
        with mounting.mounted(mounts) as root:
            yield SourceTree(root, context=False, label=f"stage {src_from}"), from_key
    finally:
        with contextlib.suppress(NotFound):
            sn.remove(vkey)


ADD_MAX_SIZE = 8 << 30
"""The most bytes ``ADD <url>`` downloads (``$CTK_BUILD_ADD_MAX_SIZE``): Docker and BuildKit set none, but
a server that streams without end must not fill the build machine's disk."""
ADD_TIMEOUT = (30.0, 60.0)
"""Seconds to connect, and that the server may stay silent while the response is read
(``$CTK_BUILD_ADD_TIMEOUT``: one number for both, or ``CONNECT,STALL``)."""


def download_limits() -> tuple[int, tuple[float, float]]:
    """The size cap and timeouts of ``ADD <url>``, with the environment's overrides."""
    cap, timeout = ADD_MAX_SIZE, ADD_TIMEOUT
    raw = os.environ.get("CTK_BUILD_ADD_MAX_SIZE", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) <= 0:
            raise CtkError(f"CTK_BUILD_ADD_MAX_SIZE={raw!r}: a positive number of bytes is required")
        cap = int(raw)
    raw = os.environ.get("CTK_BUILD_ADD_TIMEOUT", "").strip()
    if raw:
        try:
            nums = [float(p) for p in raw.split(",")]
        except ValueError:
            nums = []
        if len(nums) not in (1, 2) or not all(0 < n <= 86400 for n in nums):
            raise CtkError(f"CTK_BUILD_ADD_TIMEOUT={raw!r}: seconds (0 < s <= 86400) are required, "
                           "one number or CONNECT,STALL")
        timeout = (nums[0], nums[-1])
    return cap, timeout


def url_filename(url: str) -> str:
    """The name an ``ADD <url>`` file gets: the last segment of the URL's path (as BuildKit), ``download``
    when there is none or it is ``.``/``..``."""
    name = posixpath.basename(url.split("#", 1)[0].split("?", 1)[0].split("://", 1)[-1].partition("/")[2])
    return name if name not in ("", ".", "..") else "download"


def _timed_out(e: BaseException) -> bool:
    import socket

    import requests
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    seen: list[BaseException] = []
    todo: list[object] = [e]
    while todo:
        x = todo.pop()
        if not isinstance(x, BaseException) or any(x is s for s in seen):
            continue
        seen.append(x)
        if isinstance(x, (requests.Timeout, Urllib3Timeout, socket.timeout)):
            return True
        todo.extend([*x.args, x.__cause__, x.__context__])
    return False


def _download(url: str, dest: str) -> None:
    """Stream ``url`` to the new file ``dest``: at most the size cap, and no longer than the stall timeout
    between two reads."""
    import requests
    from ctk_shared.limits import human

    cap, timeout = download_limits()
    n = 0
    try:
        with requests.get(url, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            declared = r.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cap:
                raise CtkError(f"downloading {url}: the server declares {human(int(declared))}, over the "
                               f"{human(cap)} cap for ADD (CTK_BUILD_ADD_MAX_SIZE)")
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                for chunk in r.iter_content(64 << 10):
                    n += len(chunk)
                    if n > cap:
                        raise CtkError(f"downloading {url}: over the {human(cap)} cap for ADD "
                                       "(CTK_BUILD_ADD_MAX_SIZE; stopped reading)")
                    f.write(chunk)
    except requests.RequestException as e:
        if _timed_out(e):  # a stall in the body comes as a ConnectionError wrapping urllib3's timeout
            what = "let the connection wait" if isinstance(e, requests.ConnectTimeout) else "sent nothing"
            secs = timeout[0] if isinstance(e, requests.ConnectTimeout) else timeout[1]
            raise CtkError(f"downloading {url}: the server {what} for {secs:g} s "
                           f"(after {human(n)}; CTK_BUILD_ADD_TIMEOUT)") from None
        raise CtkError(f"downloading {url}: {e}") from e
    except OSError as e:
        raise CtkError(f"downloading {url}: {e.strerror}: {os.path.basename(dest)}") from None
