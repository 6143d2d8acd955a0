"""What ctk-pull's image commands do, between parsed flags and the shared library."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ctk_shared import output
from ctk_shared import reference as refs
from ctk_shared.errors import Conflict, CtkError, NotFound, UsageError, raise_failures

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.oci import Platform


def pull(gopts: GlobalOptions, texts: list[str], platform: Platform | None, all_platforms: bool,
         unpack: bool, quiet: bool, fmt: str, max_concurrent: int, decryption_keys: tuple[str, ...] = ()) -> None:
    from ctk_shared import connect
    from ctk_shared.decryption_keys import read_key_specs
    from ctk_shared.progress import make_progress
    from ctk_shared.pull import PullOptions
    from ctk_shared.pull import pull as do_pull

    parsed = [refs.parse(t) for t in texts]  # all refs are checked before any work starts
    keys = tuple(read_key_specs(decryption_keys))
    client = connect.containerd(gopts)
    opts = PullOptions(platform=platform, all_platforms=all_platforms, unpack=unpack,
                       snapshotter=gopts.snapshotter, max_concurrent_downloads=max_concurrent,
                       decryption_keys=keys)
    for ref in parsed:
        progress = make_progress(quiet)
        try:
            result = do_pull(client, connect.registry(ref.domain, gopts), ref, opts, progress)
        finally:
            progress.close()
        output.emit_image(fmt, result.name, result.digest, MediaType=result.media_type,
                          Platforms=list(result.platforms), FetchedBytes=result.fetched_bytes,
                          RemoteLayers=result.remote_layers, Sources=result.sources)


def push(gopts: GlobalOptions, texts: list[str], platform: Platform | None, quiet: bool, fmt: str) -> None:
    from ctk_shared import connect
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress
    from ctk_shared.push import push as do_push

    client = connect.containerd(gopts)
    for text in texts:
        image = find_image(client, text)
        ref = refs.parse(image.name if "@" not in image.name else text)
        progress = make_progress(quiet)
        try:
            digest = do_push(client, connect.registry(ref.domain, gopts), image, ref, platform, progress)
        finally:
            progress.close()
        output.emit_image(fmt, str(ref.with_digest("")), digest)


def tag(gopts: GlobalOptions, source: str, target: str) -> None:
    from ctk_shared import connect
    from ctk_shared.containerd import Image
    from ctk_shared.images import find_image

    dst = refs.parse(target)
    if dst.digest:
        raise UsageError(f"refusing to create a tag with a digest reference: {target}",
                         hint="a tag is NAME[:TAG]; the digest is the image's own")
    client = connect.containerd(gopts)
    src = find_image(client, source)
    from ctk_shared.cri import put_image

    put_image(client, Image(name=str(dst), target=src.target, labels=dict(src.labels),
                            created_at=None, updated_at=None))
    output.emit_line(f"{dst}@{src.target.digest}")


def remove(gopts: GlobalOptions, texts: list[str], force: bool) -> None:
    from ctk_shared import connect
    from ctk_shared.images import find_image

    client = connect.containerd(gopts)
    failed: list[CtkError] = []
    for text in texts:
        try:
            image = find_image(client, text)
            users = client.containers.list([f'image=="{image.name}"']) if not force else []
            if users:
                raise Conflict(f"image {image.name} is used by container {users[0].id}",
                               hint="remove the container first, or use -f")
            client.images.delete(image.name)
            output.emit_line(f"Untagged: {image.name}")
        except NotFound as e:
            failed.append(e)
        except Conflict as e:
            failed.append(e)
    raise_failures(failed)
