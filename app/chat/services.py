"""The chat's actions. Views call these; each one changes the database in a transaction
and, only once it has committed, publishes real-time events and enqueues tasks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chat import events, queries
from chat.models import ChatMessage, ChatRoom, ChatRoomJoinRequest

Status = ChatRoomJoinRequest.Status


def _touch_room(room_id: int) -> None:
    """Bump the room's version: every cached fragment keyed on it expires by key."""
    ChatRoom.objects.filter(pk=room_id).update(version=F("version") + 1, updated=timezone.now())


def is_member(user: AbstractBaseUser, room: ChatRoom) -> bool:
    if not user.is_authenticated:
        return False
    return room.owner_id == user.pk or room.members.filter(pk=user.pk).exists()


def create_room(owner: AbstractBaseUser, title: str, is_public: bool) -> ChatRoom:
    with transaction.atomic():
        room = ChatRoom.objects.create(owner=owner, title=title, is_public=is_public)
        room.members.add(owner)
    return room


def set_members(
    room: ChatRoom,
    joining: Iterable[AbstractBaseUser],
    leaving: Iterable[AbstractBaseUser],
) -> None:
    """Add and remove members directly, outside the join-request flow (seeding accounts);
    pages show the new member list, whose cache expires with the room's version."""
    joining, leaving = list(joining), list(leaving)
    if not joining and not leaving:
        return
    with transaction.atomic():
        room.members.add(*joining)
        room.members.remove(*leaving)
        _touch_room(room.pk)


def post_message(room: ChatRoom, sender: AbstractBaseUser, text: str) -> ChatMessage:
    from chat import tasks

    with transaction.atomic():
        message = ChatMessage.objects.create(room=room, sender=sender, message=text)
        _touch_room(room.pk)
        payload = message.as_event()
        transaction.on_commit(
            partial(
                events.publish,
                events.room_stream(room.pk),
                events.room_group(room.pk),
                "message.created",
                payload,
                "members",
            )
        )
        if room.is_public:
            transaction.on_commit(partial(tasks.schedule_room_purge, room.pk))
    return message


def republish_unpublished(room_id: int, since: str) -> bool:
    """Whether a message stored in the room since a little before the timepoint ``since``
    is missing from the room's stream (its publish failed: Redis was unreachable when it
    committed); if so, publish it now.

    The caller then asks its client to reload. Publishing the message too ends the
    matter for every client: without it, each reloaded page would embed the same
    timepoint and be asked to reload again until the room's next event. A claim keeps
    the sockets that find the same message at once from publishing it more than once.
    A message whose publish is merely still on its way also counts as missing: an extra
    reload, and a copy the page's script drops by its id."""
    start_ms = events.timepoint_ms(since) - settings.CHAT_PUBLISH_CHECK_MARGIN_MS
    stored = queries.room_messages_since(room_id, datetime.fromtimestamp(start_ms / 1000, UTC))
    if not stored:
        return False
    stream = events.room_stream(room_id)
    complete_from_ms, published = events.published_message_ids(stream, start_ms)
    complete_from = datetime.fromtimestamp(complete_from_ms / 1000, UTC)
    missing = [pk for pk, posted in stored if pk not in published and posted >= complete_from]
    if not missing:
        return False
    messages = ChatMessage.objects.filter(pk__in=missing).select_related("sender")
    for message in messages.order_by("posted", "id"):
        if events.claim(f"republish:{message.pk}", seconds=60):
            events.publish(
                stream, events.room_group(room_id), "message.created", message.as_event(), "members"
            )
    return True


def request_to_join(user: AbstractBaseUser, room: ChatRoom) -> ChatRoomJoinRequest | None:
    """Create (or renew a denied) join request. Returns None if already a member."""
    from chat import tasks

    if is_member(user, room):
        return None
    with transaction.atomic():
        join_request, created = ChatRoomJoinRequest.objects.select_for_update().get_or_create(
            user=user, room=room
        )
        if not created:
            if join_request.status == Status.PENDING:
                return join_request
            # Denied before (or admitted and since removed): ask again.
            join_request.status = Status.PENDING
            join_request.owner_notified_at = None
            join_request.save(update_fields=["status", "owner_notified_at", "updated"])
        _announce(join_request, "join_request.created")
        transaction.on_commit(partial(tasks.notify_owner_of_join_request.delay, join_request.pk))
    return join_request


def decide_join_request(join_request: ChatRoomJoinRequest, admit: bool) -> bool:
    """Admit or deny a pending request. Returns False if it was not pending."""
    with transaction.atomic():
        locked = (
            ChatRoomJoinRequest.objects.select_for_update()
            .select_related("user", "room")
            .get(pk=join_request.pk)
        )
        if locked.status != Status.PENDING:
            return False
        locked.status = Status.ADMITTED if admit else Status.DENIED
        locked.save(update_fields=["status", "updated"])
        if admit:
            locked.room.members.add(locked.user)
            _touch_room(locked.room_id)
        _announce(locked, "join_request.admitted" if admit else "join_request.denied")
    join_request.status = locked.status
    return True


def _announce(join_request: ChatRoomJoinRequest, event_type: str) -> None:
    """Join-request events go to the room's owner (room topic, owner audience) and to
    the requesting user's own topic; never to the room's other members."""
    payload = join_request.as_event()
    transaction.on_commit(
        partial(
            events.publish,
            events.room_stream(join_request.room_id),
            events.room_group(join_request.room_id),
            event_type,
            payload,
            "owner",
        )
    )
    transaction.on_commit(
        partial(
            events.publish,
            events.user_stream(join_request.user_id),
            events.user_group(join_request.user_id),
            event_type,
            payload,
            "user",
        )
    )


def set_room_image(room: ChatRoom, upload: UploadedFile) -> None:
    from chat import tasks

    with transaction.atomic():
        old_names = [f.name for f in (room.image, room.thumbnail) if f]
        room.image.save(upload.name or "image", upload, save=False)
        room.thumbnail = ""
        room.save(update_fields=["image", "thumbnail", "updated"])
        _touch_room(room.pk)
        storage = room.image.storage
        for name in old_names:
            storage.delete(name)
        transaction.on_commit(partial(tasks.make_room_thumbnail.delay, room.pk))
        if room.is_public:
            transaction.on_commit(partial(tasks.schedule_room_purge, room.pk))
