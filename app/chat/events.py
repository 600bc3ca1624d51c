"""Real-time events with timepoints.

Every event is first appended (XADD) to a bounded Redis stream for its topic, and the
entry ID Redis assigns is the event's *timepoint*; then it is broadcast to the topic's
Channels group. A page captures the stream's current timepoint *before* it reads the
database and embeds it; its WebSocket later asks for everything after that timepoint.
The consumer joins the group first and replays the stream second, and drops live
copies of replayed events, so an event that happens between render and connect is
delivered exactly once. Each broadcast also names the stream entry before it, so a
consumer that gets two live events in the other order than their timepoints reads the
earlier one from the stream first: a socket sends its events in stream order.

Stream IDs only grow within one stream, which is what makes "everything after T" well
defined; the topic (room or user) therefore has its own stream."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from ops import metrics

logger = logging.getLogger("chat.events")

Audience = Literal["members", "owner", "user"]
ZERO = "0-0"
TIMEPOINT_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


@dataclass(frozen=True)
class Event:
    timepoint: str
    type: str
    audience: str
    payload: dict[str, Any]

    def frame(self) -> dict[str, Any]:
        """What the browser receives."""
        return {"type": self.type, "timepoint": self.timepoint, "payload": self.payload}


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CHAT_EVENTS_REDIS_URL,
        decode_responses=True,
        socket_timeout=3,
        socket_connect_timeout=2,
        health_check_interval=30,
    )


def room_stream(room_id: int) -> str:
    return f"{settings.CHAT_STREAM_PREFIX}:room:{room_id}"


def user_stream(user_id: int) -> str:
    return f"{settings.CHAT_STREAM_PREFIX}:user:{user_id}"


def room_group(room_id: int) -> str:
    return f"chat.room.{room_id}"


def user_group(user_id: int) -> str:
    return f"chat.user.{user_id}"


def parse_timepoint(value: str | None) -> tuple[int, int] | None:
    if not value or not TIMEPOINT_RE.match(value):
        return None
    ms, seq = value.split("-")
    return int(ms), int(seq)


def is_valid_timepoint(value: str | None) -> bool:
    return parse_timepoint(value) is not None


def is_after(timepoint: str, other: str) -> bool:
    return _tp(timepoint) > _tp(other)


def timepoint_ms(timepoint: str) -> int:
    """The millisecond part of a timepoint: Redis's clock when the entry was added."""
    return _tp(timepoint)[0]


def _tp(value: str) -> tuple[int, int]:
    parsed = parse_timepoint(value)
    return parsed if parsed is not None else (0, 0)


def _info(stream: str) -> dict[str, Any] | None:
    try:
        return redis_client().xinfo_stream(stream)
    except redis.ResponseError:  # no such key
        return None


def current_timepoint(stream: str) -> str:
    """The ID of the last event ever added to ``stream`` (``0-0`` if none). Capture it
    before reading the data a page shows."""
    info = _info(stream)
    if info is None:
        return ZERO
    return str(info.get("last-generated-id") or ZERO)


def append(
    stream: str, event_type: str, payload: dict[str, Any], audience: Audience
) -> tuple[str, str]:
    """Add an event to its topic's stream: its timepoint, and the timepoint of the entry
    before it (``0-0`` for the first), read in the same MULTI so nothing comes between.

    Two processes may broadcast their events in the other order than they appended them;
    the previous timepoint lets a consumer see that an earlier event is still on its way
    and read it from the stream first (``EventConsumer.chat_event``)."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.xrevrange(stream, max="+", min="-", count=1)
    pipe.xadd(
        stream,
        {
            "type": event_type,
            "audience": audience,
            "payload": json.dumps(payload, separators=(",", ":")),
        },
        maxlen=settings.CHAT_STREAM_MAXLEN,
        approximate=True,
    )
    newest_before, timepoint = pipe.execute()
    previous = newest_before[0][0] if newest_before else ZERO
    return str(timepoint), str(previous)


def broadcast(
    group: str,
    event_type: str,
    payload: dict[str, Any],
    audience: Audience,
    timepoint: str,
    previous: str,
) -> None:
    async_to_sync(get_channel_layer().group_send)(
        group,
        {
            "type": "chat.event",
            "timepoint": timepoint,
            "previous": previous,
            "event": event_type,
            "audience": audience,
            "payload": payload,
        },
    )


def publish(
    stream: str, group: str, event_type: str, payload: dict[str, Any], audience: Audience
) -> str | None:
    """Stamp ``payload`` with a timepoint (XADD to the bounded stream) and broadcast it.

    Called from ``transaction.on_commit`` hooks. A Redis failure is logged and counted
    but does not fail the request: the data is committed and shows on the next page
    load."""
    try:
        timepoint, previous = append(stream, event_type, payload, audience)
        broadcast(group, event_type, payload, audience, timepoint, previous)
    except (redis.RedisError, OSError) as exc:
        metrics.incr("events.publish_failed")
        logger.error("could not publish %s to %s: %s", event_type, stream, exc)
        return None
    metrics.incr(metrics.metric_name("events.published", event_type))
    return timepoint


def read_after(stream: str, after: str, until: str) -> list[Event]:
    """The stream's events after ``after`` up to and including ``until``."""
    entries = redis_client().xrange(stream, min=f"({after}", max=until)
    return [_event(entry_id, fields) for entry_id, fields in entries]


def _event(entry_id: str, fields: dict[str, str]) -> Event:
    return Event(
        timepoint=entry_id,
        type=fields.get("type", ""),
        audience=fields.get("audience", "members"),
        payload=json.loads(fields.get("payload") or "{}"),
    )


def replay(stream: str, since: str) -> tuple[list[Event], bool]:
    """Events after ``since``, and whether the client may have missed some that were
    already trimmed away (it then reloads the page instead of patching it).

    Trimming only ever removes the oldest entries and always keeps the newest one (see
    ``trim_streams``), so if the entry ``since`` itself is still in the stream, nothing
    after it is missing. ``0-0`` means "the stream did not exist at render time"."""
    client = redis_client()
    if since == ZERO:
        info = _info(stream)
        if info is None:
            return [], False
        entries = client.xrange(stream, min="-", max="+")
        gap = int(info.get("entries-added", 0)) > int(info.get("length", 0))
    else:
        entries = client.xrange(stream, min=since, max="+")
        if entries and entries[0][0] == since:
            entries = entries[1:]
            gap = False
        else:
            gap = True  # the client's last event was trimmed (or Redis lost the stream)
    return [_event(entry_id, fields) for entry_id, fields in entries], gap


def published_message_ids(stream: str, from_ms: int) -> tuple[int, set[int]]:
    """The ids of the chat messages whose ``message.created`` events are in ``stream``
    from ``from_ms`` (Redis time) on, and the millisecond from which that record is
    complete: later than ``from_ms`` when trimming removed entries after it."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.xinfo_stream(stream)
    pipe.xrange(stream, min=f"{from_ms}-0", max="+")
    try:
        info, entries = pipe.execute()
    except redis.ResponseError:  # no such key: nothing published, nothing trimmed
        return from_ms, set()
    # Entries before the first one were trimmed away if any were ever removed (XTRIM does
    # not set max-deleted-entry-id; XDEL does).
    removed = int(info.get("entries-added", 0)) > int(info.get("length", 0))
    first = info.get("first-entry") or [ZERO]
    deleted_ms = max(
        _tp(str(info.get("max-deleted-entry-id") or ZERO))[0],
        _tp(str(first[0]))[0] if removed else 0,
    )
    ids = set()
    for _entry_id, fields in entries:
        if fields.get("type") == "message.created":
            message_id = json.loads(fields.get("payload") or "{}").get("id")
            if isinstance(message_id, int):
                ids.add(message_id)
    return max(from_ms, deleted_ms), ids


def claim(name: str, seconds: int) -> bool:
    """True for the first caller in ``seconds`` to claim ``name`` (across processes)."""
    key = f"{settings.CHAT_STREAM_PREFIX}-claim:{name}"  # not a stream: trim_streams skips it
    return bool(redis_client().set(key, "1", nx=True, ex=seconds))


def trim_streams(older_than_ms: int) -> int:
    """Drop entries older than the given epoch-milliseconds from every event stream,
    always keeping each stream's newest entry (``replay`` relies on it)."""
    client = redis_client()
    removed = 0
    cutoff = (older_than_ms, 0)
    for key in client.scan_iter(match=f"{settings.CHAT_STREAM_PREFIX}:*", count=500):
        newest = client.xrevrange(key, max="+", min="-", count=1)
        if not newest:
            continue
        threshold = min(cutoff, _tp(newest[0][0]))
        removed += int(client.xtrim(key, minid=f"{threshold[0]}-{threshold[1]}", approximate=False))
    return removed
