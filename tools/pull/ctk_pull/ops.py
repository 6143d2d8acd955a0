"""What ctk-pull's image commands do, between parsed flags and the shared library: one function per command,
``(client, gopts, opts) -> Result`` (docs/CONVENTIONS.md §7). Nothing here prints; ``cli.py`` prints results."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ctk_shared import reference as refs
from ctk_shared.errors import Conflict, CtkError, NotFound, UsageError

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client
    from ctk_shared.pull import PullResult

    from .options import LoginOptions, LogoutOptions, PullOptions, PushOptions, RmOptions, TagOptions


@dataclass(frozen=True)
class Pushed:
    """An image ``push`` sent: its name, and the digest the registry has it under (printed as ``NAME@DIGEST``)."""

    name: str
    digest: str


@dataclass(frozen=True)
class Tagged:
    """Result of ``tag``: the new name, and the digest of the image it points at (the cli prints ``NAME@DIGEST``)."""

    name: str
    digest: str


@dataclass(frozen=True)
class Removed:
    """``rm``: the names untagged, and a failure per ref that was not (the cli raises them after printing)."""

    names: list[str]
    failures: list[CtkError] = field(default_factory=list)


def pull(client: Client, gopts: GlobalOptions, opts: PullOptions) -> Iterator[PullResult]:
    """Each ref of ``opts`` pulled in turn, yielded as it is done (so a pipe gets the first before the
    second starts); every ref is checked before any work starts."""
    from ctk_shared import connect
    from ctk_shared.decryption_keys import read_key_specs
    from ctk_shared.progress import make_progress
    from ctk_shared.pull import PullOptions as Pulling
    from ctk_shared.pull import pull as do_pull

    parsed = [refs.parse(t) for t in opts.refs]  # all refs are checked before any work starts
    keys = tuple(read_key_specs(opts.decryption_keys))
    how = Pulling(platform=opts.platform, all_platforms=opts.all_platforms, unpack=opts.unpack,
                  snapshotter=gopts.snapshotter, max_concurrent_downloads=opts.max_concurrent_downloads,
                  decryption_keys=keys)
    for ref in parsed:
        progress = make_progress(opts.quiet)
        try:
            result = do_pull(client, connect.registry(ref.domain, gopts), ref, how, progress)
        finally:
            progress.close()
        yield result


def push(client: Client, gopts: GlobalOptions, opts: PushOptions) -> Iterator[Pushed]:
    """Each image of ``opts`` pushed in turn, yielded as it is done."""
    from ctk_shared import connect
    from ctk_shared.images import find_image
    from ctk_shared.progress import make_progress
    from ctk_shared.push import push as do_push

    for text in opts.refs:
        image = find_image(client, text)
        ref = refs.parse(image.name if "@" not in image.name else text)
        progress = make_progress(opts.quiet)
        try:
            digest = do_push(client, connect.registry(ref.domain, gopts), image, ref, opts.platform, progress)
        finally:
            progress.close()
        yield Pushed(str(ref.with_digest("")), digest)


def tag(client: Client, gopts: GlobalOptions, opts: TagOptions) -> Tagged:
    from ctk_shared.containerd import Image
    from ctk_shared.cri import put_image
    from ctk_shared.images import find_image

    dst = refs.parse(opts.target)
    if dst.digest:
        raise UsageError(f"refusing to create a tag with a digest reference: {opts.target}",
                         hint="a tag is NAME[:TAG]; the digest is the image's own")
    src = find_image(client, opts.source)
    put_image(client, Image(name=str(dst), target=src.target, labels=dict(src.labels),
                            created_at=None, updated_at=None))
    return Tagged(str(dst), src.target.digest)


def remove(client: Client, gopts: GlobalOptions, opts: RmOptions) -> Removed:
    """Like ``docker rmi``: every ref is tried; a missing or used image is a failure in the result."""
    from ctk_shared.images import find_image

    removed: list[str] = []
    failed: list[CtkError] = []
    for text in opts.refs:
        try:
            image = find_image(client, text)
            users = client.containers.list([f'image=="{image.name}"']) if not opts.force else []
            if users:
                raise Conflict(f"image {image.name} is used by container {users[0].id}",
                               hint="remove the container first, or use -f")
            client.images.delete(image.name)
            removed.append(image.name)
        except NotFound as e:
            failed.append(e)
        except Conflict as e:
            failed.append(e)
    return Removed(removed, failed)


def login(client: Client | None, gopts: GlobalOptions, opts: LoginOptions) -> None:
    """Credentials checked against the registry, then stored (no containerd: ``client`` may be None); the
    note goes to stderr, as Docker's ``Login Succeeded``."""
    from . import account

    account.login(gopts, opts.server, opts.username, opts.password)


def logout(client: Client | None, gopts: GlobalOptions, opts: LogoutOptions) -> None:
    from . import account

    account.logout(opts.server)
