"""WebSocket topics.

``/ws/room/<id>?since=<timepoint>``: a room's events, for its members. Join-request
events are forwarded to the room's owner only.
``/ws/user/<id>/<timepoint>``: the events about one user's own join requests.

Close codes (sent after accepting, so browsers see them): 4401 not logged in,
4403 not allowed, 4404 no such room, 4400 bad timepoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import redis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chat import events, services
from chat.models import ChatRoom

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class EventConsumer(AsyncJsonWebsocketConsumer):
    """Joins a topic's group, then replays the topic's stream after the client's
    timepoint, and forwards live events in stream order, each once.

    ``last`` is the newest stream entry this socket has dealt with (sent, or left out for
    its audience). Every event sent is newer than ``last``, so the newest timepoint a
    client has seen is always one it may resume from: nothing older is still on its way."""

    group: str | None = None
    stream: str | None = None
    last: str | None = None

    async def reject(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    def may_receive(self, audience: str) -> bool:
        return True

    async def subscribe(self, group: str, stream: str, since: str | None) -> None:
        """Join the topic; replay its stream after ``since`` (``None``: live events only)."""
        self.group, self.stream = group, stream
        # Group first, stream second: an event published in between arrives both
        # ways, and the live copy is dropped as not newer than ``last``. Never neither.
        await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        if since is None:
            return
        backlog, gap = await sync_to_async(events.replay)(stream, since)
        if not gap and since != events.ZERO:
            gap = await self.unpublished_since(since)
        if gap:
            await self.send_json({"type": "resync", "timepoint": since, "payload": {}})
        await self.deliver(backlog)
        self.last = backlog[-1].timepoint if backlog else since

    async def unpublished_since(self, since: str) -> bool:
        """Whether something stored around or after ``since`` never reached the stream."""
        return False

    async def deliver(self, batch: list[events.Event]) -> None:
        for event in batch:
            if self.may_receive(event.audience):
                await self.send_json(event.frame())

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def chat_event(self, message: dict[str, Any]) -> None:
        """A live event from the group (``type: chat.event``)."""
        timepoint = message["timepoint"]
        if self.last is not None and not events.is_after(timepoint, self.last):
            return  # replayed already, or read from the stream before its live copy came
        event = events.Event(timepoint, message["event"], message["audience"], message["payload"])
        batch = [event]
        previous = message.get("previous")
        if self.last is not None and previous is not None and previous != self.last:
            # An earlier event's live copy is still on its way (another process appended
            # it first but broadcast it later): take everything up to this one from the
            # stream, in order.
            try:
                batch = await sync_to_async(events.read_after)(self.stream, self.last, timepoint)
            except (redis.RedisError, OSError):
                # Late rather than lost: ``last`` stays, so the other live copy still
                # passes when it comes.
                await self.deliver([event])
                return
        await self.deliver(batch or [event])
        self.last = timepoint


class RoomConsumer(EventConsumer):
    is_owner = False
    room_id = 0

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.reject(CLOSE_UNAUTHORIZED)
            return
        room_id = int(self.scope["url_route"]["kwargs"]["room_id"])
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        since = (query.get("since") or [None])[0]
        if since is not None and not events.is_valid_timepoint(since):
            await self.reject(CLOSE_BAD_REQUEST)
            return
        access = await self._access(room_id, user.pk)
        if access is None:
            await self.reject(CLOSE_NOT_FOUND)
            return
        if access == "none":
            await self.reject(CLOSE_FORBIDDEN)
            return
        self.is_owner = access == "owner"
        self.room_id = room_id
        await self.subscribe(events.room_group(room_id), events.room_stream(room_id), since)

    @database_sync_to_async
    def _access(self, room_id: int, user_id: int) -> str | None:
        room = ChatRoom.objects.filter(pk=room_id).only("owner_id").first()
        if room is None:
            return None
        if room.owner_id == user_id:
            return "owner"
        if room.members.filter(pk=user_id).exists():
            return "member"
        return "none"

    async def unpublished_since(self, since: str) -> bool:
        # A message committed while Redis was unreachable is in the database but not in
        # the stream: the replay finds no gap, yet the client never got it.
        return await database_sync_to_async(services.republish_unpublished)(self.room_id, since)

    def may_receive(self, audience: str) -> bool:
        return audience == "members" or (audience == "owner" and self.is_owner)


class UserConsumer(EventConsumer):
    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.reject(CLOSE_UNAUTHORIZED)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        if int(kwargs["user_id"]) != user.pk:
            await self.reject(CLOSE_FORBIDDEN)
            return
        await self.subscribe(
            events.user_group(user.pk), events.user_stream(user.pk), kwargs["timepoint"]
        )

    def may_receive(self, audience: str) -> bool:
        return audience == "user"
