"""Read queries used by the pages; the hot ones are cached in Memcached.

Keys of cached queries include a version that changes with the data (key-based
expiry), and every timeout is jittered. A cache outage only means the query runs."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache

from chat.context_processors import jitter
from chat.models import ChatMessage, ChatRoom, ChatRoomJoinRequest


class RoomInfo(TypedDict):
    id: int
    title: str
    pending: bool
    is_public: bool


def public_rooms(limit: int = 50) -> list[dict[str, object]]:
    """The public room directory on the front page (a short, jittered TTL: it is
    shared by every visitor and changes often)."""

    def load() -> list[dict[str, object]]:
        return list(
            ChatRoom.objects.filter(is_public=True)
            .order_by("-updated", "-id")
            .values("id", "title", "updated")[:limit]
        )

    return cache.get_or_set("q:public_rooms", load, jitter(settings.CACHE_TTLS["short"]))


def room_members(room: ChatRoom) -> list[str]:
    """Usernames of a room's members, cached under the room's version."""
    key = f"q:room_members:{room.cache_version}"
    members = cache.get(key)
    if members is None:
        members = list(room.members.order_by("username").values_list("username", flat=True))
        cache.set(key, members, jitter(settings.CACHE_TTLS["long"]))
    return members


def recent_messages(room: ChatRoom) -> list[ChatMessage]:
    """The last page of a room's messages, oldest first (one query, senders joined)."""
    newest_first = (
        room.messages.select_related("sender")
        .only("id", "room_id", "posted", "message", "sender__username")
        .order_by("-posted", "-id")[: settings.CHAT_PAGE_MESSAGES]
    )
    return list(reversed(newest_first))


def room_messages_since(room_id: int, since: datetime) -> list[tuple[int, datetime]]:
    """(id, posted) of a room's messages posted at or after ``since``: the index
    ``message_room_recent`` (room, -posted, -id) answers it without reading the table."""
    return list(
        ChatMessage.objects.filter(room_id=room_id, posted__gte=since).values_list("id", "posted")
    )


def pending_requests(room: ChatRoom) -> list[ChatRoomJoinRequest]:
    return list(
        room.join_requests.filter(status=ChatRoomJoinRequest.Status.PENDING)
        .select_related("user")
        .order_by("created", "id")
    )


def user_room_list(user: AbstractBaseUser) -> list[RoomInfo]:
    """Joined rooms plus rooms with a pending request, sorted by (title, id): two
    queries however many rooms there are."""
    joined: list[RoomInfo] = [
        {"id": r["id"], "title": r["title"], "pending": False, "is_public": r["is_public"]}
        for r in ChatRoom.objects.filter(members=user).values("id", "title", "is_public")
    ]
    pending: list[RoomInfo] = [
        {
            "id": r["room_id"],
            "title": r["room__title"],
            "pending": True,
            "is_public": r["room__is_public"],
        }
        for r in ChatRoomJoinRequest.objects.filter(
            user=user, status=ChatRoomJoinRequest.Status.PENDING
        ).values("room_id", "room__title", "room__is_public")
    ]
    return sorted(joined + pending, key=lambda room: (room["title"], room["id"]))
