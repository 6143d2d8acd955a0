"""``events``: containerd's event stream of the namespace as Docker's container events.

containerd publishes an event for container create/update/delete and for task start/exit/pause/resume/OOM and
exec processes; each becomes Docker's action (``create``, ``start``, ``die``, ``pause``, ``unpause``,
``destroy``, ``rename``, ``oom``, ``exec_create``, ``exec_start``, ``exec_die``), and ctk's own health events
(:mod:`.health_events`) become ``health_status: …``. containerd has no event for a kill or a stop request (only
the exit they cause, ``die``), so ``kill`` and ``stop`` never appear.

History: containerd keeps no events. ``--since`` replays what the container records still show, from their
labels and tasks: each existing container's ``create``, its last ``start`` and, if it has ended since, its
``die``; earlier runs and removed containers are gone. Then the live stream follows, unless ``--until`` is past.

If containerd goes away the stream is reopened (events in the gap are lost, which stderr says); if it does not
come back within :data:`RECONNECT_FOR` seconds (``$CTK_EVENTS_RECONNECT_TIMEOUT``) the command ends with an error.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctk_shared import output
from ctk_shared.errors import CtkError, NotFound, UsageError

from . import labels as L

if TYPE_CHECKING:
    from ctk_shared.config import GlobalOptions
    from ctk_shared.containerd import Client, Container
    from ctk_shared.containerd.models import Event

    from .options import EventsOptions

FIELDS = ("status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano")
FILTER_KEYS = ("container", "event", "type", "image", "label")
RECONNECT_FOR = 60.0  # seconds to wait for containerd to come back before giving up ($CTK_EVENTS_RECONNECT_TIMEOUT)
_RETRY_EVERY = 0.5
# Docker matches these actions by prefix: `event=health_status` also catches `health_status: healthy`
_PREFIX_ACTIONS = ("health_status", "exec_create", "exec_start")


@dataclass
class Message:
    """One Docker event (``docker events --format '{{json .}}'`` keys via :meth:`record`)."""

    when: datetime
    action: str
    actor: str
    attributes: dict[str, str] = field(default_factory=dict)
    type: str = "container"

    def record(self) -> dict[str, Any]:
        nanos = int(self.when.timestamp()) * 1_000_000_000 + self.when.microsecond * 1000
        return {"status": self.action, "id": self.actor, "from": self.attributes.get("image", ""),
                "Type": self.type, "Action": self.action,
                "Actor": {"ID": self.actor, "Attributes": dict(self.attributes)},
                "scope": "local", "time": nanos // 1_000_000_000, "timeNano": nanos}

    def line(self) -> str:
        """Docker's text form: ``TIME TYPE ACTION ID (k=v, …)``, attributes sorted by key."""
        when = self.when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
        attrs = ", ".join(f"{_printable(k)}={_printable(v)}" for k, v in sorted(self.attributes.items()))
        return f"{when} {self.type} {_printable(self.action)} {_printable(self.actor)}" + \
            (f" ({attrs})" if attrs else "")


def _printable(text: str) -> str:
    """Labels and names come from whoever made the container: a newline or an escape sequence in one must not
    forge a line or drive the terminal."""
    return text if text.isprintable() else "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def parse_filters(filters: Iterable[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` filters by key (values of one key are ORed, keys ANDed); an unknown key is a usage error."""
    out: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise UsageError(f"invalid filter {f!r}", hint="supported: " + ", ".join(f"{k}=…" for k in FILTER_KEYS))
        out.setdefault(key, []).append(value)
    return out


def matches(msg: Message, filters: dict[str, list[str]]) -> bool:
    def any_of(key: str, test: Any) -> bool:
        return key not in filters or any(test(v) for v in filters[key])

    name = msg.attributes.get("name", "")
    return (any_of("type", lambda v: v == msg.type)
            and any_of("container", lambda v: v in (name, msg.actor) or (len(v) >= 3 and msg.actor.startswith(v)))
            and any_of("event", lambda v: v == msg.action or (v in _PREFIX_ACTIONS and
                                                             msg.action.startswith(v + ":")))
            and any_of("image", lambda v: v == msg.attributes.get("image"))
            and any_of("label", lambda v: _label_matches(msg.attributes, v)))


def _label_matches(attrs: dict[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in attrs and (not sep or attrs[key] == value)


@dataclass
class _Known:
    """What an event needs to show about a container (kept, since ``destroy`` comes after it is gone)."""

    name: str
    image: str
    labels: dict[str, str]

    def attributes(self, **extra: str) -> dict[str, str]:
        return {**self.labels, "image": self.image, "name": self.name, **extra}


def _known(c: Container) -> _Known:
    from .listing import _image_name, user_labels
    from .lookup import display_name

    return _Known(display_name(c), _image_name(c), user_labels(c))


class Translator:
    """containerd envelopes → Docker messages, remembering containers' names (for ``destroy`` and ``rename``)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._containers: dict[str, _Known] = {}
        self.refresh()

    def refresh(self) -> None:
        for c in self._client.containers.list():
            self._containers[c.id] = _known(c)

    def _exists(self, cid: str) -> bool:
        if cid in self._containers:
            return True
        try:
            self._containers[cid] = _known(self._client.containers.get(cid))
        except (NotFound, CtkError):
            return False
        return True

    def _lookup(self, cid: str, image: str = "") -> _Known:
        known = self._containers.get(cid)
        if known is None:
            try:
                known = _known(self._client.containers.get(cid))
            except (NotFound, CtkError):
                known = _Known(cid[:12], image, {})
            self._containers[cid] = known
        return known

    def translate(self, ev: Event) -> Message | None:
        from .health_events import STATUSES as HEALTH_STATUSES
        from .health_events import TOPIC as HEALTH_TOPIC
        from .health_events import decode as decode_health

        p = ev.payload
        when = ev.timestamp or datetime.now(UTC)
        topic = ev.topic
        if topic == HEALTH_TOPIC:
            health = decode_health(ev.type_url, ev.value)
            # anyone with the socket can publish: only a status of one of our containers is shown
            if health is None or health["status"] not in HEALTH_STATUSES or not self._exists(health["id"]):
                return None
            return Message(when, f"health_status: {health['status']}", health["id"],
                           self._lookup(health["id"]).attributes())
        if topic == "/containers/create":
            cid = p.get("id", "")
            self._containers.pop(cid, None)
            return Message(when, "create", cid, self._lookup(cid, p.get("image", "")).attributes())
        if topic == "/containers/update":
            return self._update(when, p)
        if topic == "/containers/delete":
            cid = p.get("id", "")
            known = self._containers.pop(cid, None) or _Known(cid[:12], "", {})
            return Message(when, "destroy", cid, known.attributes())
        cid = p.get("container_id", "")
        if not cid:
            return None
        simple = {"/tasks/start": "start", "/tasks/paused": "pause", "/tasks/resumed": "unpause",
                  "/tasks/oom": "oom"}
        if topic in simple:
            return Message(when, simple[topic], cid, self._lookup(cid).attributes())
        if topic == "/tasks/exit":
            code = str(int(p.get("exit_status", 0) or 0))
            if p.get("id") and p.get("id") != cid:
                return Message(when, "exec_die", cid, self._lookup(cid).attributes(execID=p["id"], exitCode=code))
            return Message(when, "die", cid, self._lookup(cid).attributes(exitCode=code))
        if topic in ("/tasks/exec-added", "/tasks/exec-started"):
            action = "exec_create" if topic.endswith("added") else "exec_start"
            return Message(when, action, cid, self._lookup(cid).attributes(execID=p.get("exec_id", "")))
        return None

    def _update(self, when: datetime, p: dict[str, Any]) -> Message | None:
        """Only a change of ctk's name label is shown (``rename``): ctk updates labels for its own state."""
        cid = p.get("id", "")
        labels = p.get("labels") or {}
        old = self._containers.get(cid)
        try:
            fresh = _known(self._client.containers.get(cid))
        except (NotFound, CtkError):
            return None
        self._containers[cid] = fresh
        if old is not None and L.NAME in labels and old.name != fresh.name:
            return Message(when, "rename", cid, fresh.attributes(oldName="/" + old.name))
        return None


def history(client: Client, since: datetime, until: datetime | None) -> list[Message]:
    """What the container records still tell about the past (see the module's docstring), oldest first."""
    from .listing import _created
    from .status import _time

    tasks = {t.id: t for t in client.tasks.list()}
    out: list[Message] = []
    for c in client.containers.list():
        known = _known(c)
        created = _created(c)
        if created is not None:
            out.append(Message(created, "create", c.id, known.attributes()))
        started = _time(c.labels.get(L.STARTED_AT))
        if started is not None and c.labels.get(L.NEVER_STARTED) != "true":
            out.append(Message(started, "start", c.id, known.attributes()))
        task = tasks.get(c.id)
        finished: datetime | None
        if task is not None and task.status == "stopped" and task.exited_at:
            finished, code = task.exited_at, task.exit_status
        else:
            finished, code = _time(c.labels.get(L.FINISHED_AT)), int(c.labels.get(L.EXIT_CODE, "0") or 0)
        if finished is not None and started is not None and finished >= started and \
                not (task is not None and task.status in ("running", "paused")):
            out.append(Message(finished, "die", c.id, known.attributes(exitCode=str(code))))
    out = [m for m in out if m.when >= since and (until is None or m.when <= until)]
    out.sort(key=lambda m: m.when)
    return out


def _note(text: str) -> None:
    sys.stderr.write(f"ctk-run: {text}\n")
    sys.stderr.flush()


def _live(client: Client, until: datetime | None, on_reopen: Any) -> Iterator[Event | None]:
    """The namespace's events until ``until`` (forever without it), reopening the stream after a lost
    connection; a :class:`CtkError` once containerd stays away for :data:`RECONNECT_FOR` seconds. The first
    item is None, once the stream is live."""
    import os

    want = [f'namespace=="{client.namespace}"']
    try:
        patience = float(os.environ.get("CTK_EVENTS_RECONNECT_TIMEOUT") or RECONNECT_FOR)
    except ValueError:
        raise UsageError("CTK_EVENTS_RECONNECT_TIMEOUT must be a number of seconds") from None
    lost_at: float | None = None
    while True:
        try:
            # ready: returns once containerd delivers to the stream (a gRPC stream opens lazily, so a lost
            # daemon would only show at the first read, and the first events after a reopen could be missed)
            sub = client.events.subscribe(want, ready=True, timeout=min(5.0, max(patience, 0.5)))
        except CtkError as e:
            if lost_at is None:
                raise
            if time.monotonic() - lost_at > patience:
                raise CtkError(f"lost the event stream and containerd did not come back within {patience:g}s: {e}",
                               hint="start containerd and run ctk-run events again") from None
            time.sleep(_RETRY_EVERY)
            continue
        if lost_at is not None:
            _note("event stream reopened; events while containerd was away are not shown")
            lost_at = None
            on_reopen()
        else:
            yield None  # subscribed: the caller may now read the past without a gap before the live events
        timer = None
        if until is not None:
            timer = threading.Timer(max(0.0, (until - datetime.now(UTC)).total_seconds()), sub.cancel)
            timer.daemon = True
            timer.start()
        try:
            yield from sub
            if sub.cancelled:
                return  # --until reached
            error = "containerd closed the event stream"
        except CtkError as e:
            error = str(e)
        finally:
            if timer is not None:
                timer.cancel()
            sub.cancel()
        if until is not None and datetime.now(UTC) >= until:
            return
        _note(f"{error}; reconnecting (up to {patience:g}s)…")
        lost_at = time.monotonic()


def events(client: Client, gopts: GlobalOptions, opts: EventsOptions) -> Iterator[Message]:
    """``events``: the flags are checked at once (a bad one fails before any work); the returned iterator
    replays the past from ``--since``, then the live events until ``--until`` (forever without it). The cli
    prints each as it comes and ends on Ctrl-C."""
    from .logfile import parse_since

    wanted = parse_filters(opts.filters)
    output.parse_format(opts.fmt, FIELDS)  # a bad template fails before any work
    now = datetime.now(UTC)
    start = parse_since(opts.since, now) if opts.since else None
    end = parse_since(opts.until, now) if opts.until else None
    if start is not None and end is not None and end < start:
        raise UsageError("--until is before --since")
    return _stream(client, wanted, now, start, end)


def _stream(client: Client, wanted: dict[str, list[str]], now: datetime, start: datetime | None,
            end: datetime | None) -> Iterator[Message]:
    translator = Translator(client)
    live = None
    cut = datetime.now(UTC)  # the past up to here is replayed; later events come through the stream
    if end is None or end > now:
        live = _live(client, end, translator.refresh)
        next(live)  # subscribed before the past is read: nothing falls between the two
    if start is not None:
        for past in history(client, start, min(end, cut) if end is not None else cut):
            if matches(past, wanted):
                yield past
    if live is None:
        return
    for ev in live:
        if ev is None:
            continue
        msg = translator.translate(ev)
        if msg is not None and (start is None or msg.when >= start) and (end is None or msg.when <= end) \
                and matches(msg, wanted):
            yield msg
