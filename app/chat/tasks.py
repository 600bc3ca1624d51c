"""Celery tasks. Each takes primary keys (never model instances), is safe to run twice
(acks_late means a worker lost mid-task gets it redelivered) and is enqueued from
``transaction.on_commit`` so it never sees uncommitted or rolled-back rows."""

from __future__ import annotations

import http.client
import io
import logging
import time
from datetime import timedelta
from functools import lru_cache
from pathlib import PurePosixPath

import redis
from celery import shared_task
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from chat import events
from chat.models import ChatRoom, ChatRoomJoinRequest

logger = logging.getLogger("chat.tasks")

TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


# How long a room's "purge queued" mark outlives its task at most: a purge lost with its
# worker is then queued again by the next post after this many seconds.
PURGE_PENDING_SECONDS = 60


class PurgeFailed(Exception):
    pass


@lru_cache(maxsize=1)
def _broker() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2
    )


def _purge_pending_key(room_id: int) -> str:
    return f"{settings.CACHE_KEY_PREFIX}:purge-pending:{room_id}"


def schedule_room_purge(room_id: int) -> bool:
    """Queue a purge of the room's public URLs unless one is already waiting; whether
    one was queued.

    A busy room gets several posts a second, and every purge makes Varnish fetch the same
    pages again: one waiting purge does the work of all the posts before it runs, since the
    task clears the room's mark before it reads anything (a post after that queues the
    next). The mark lives in the broker's Redis, beside the queue it stands for, and
    expires. If the broker cannot be asked, the purge is queued anyway."""
    try:
        first = _broker().set(_purge_pending_key(room_id), 1, nx=True, ex=PURGE_PENDING_SECONDS)
    except (redis.RedisError, OSError):
        first = True
    if first:
        purge_room_urls.delay(room_id)
    return bool(first)


@shared_task(**TASK_OPTIONS)
def notify_owner_of_join_request(join_request_id: int) -> str:
    """E-mail the room's owner about a new join request (once)."""
    with transaction.atomic():
        join_request = (
            ChatRoomJoinRequest.objects.select_for_update(of=("self",))
            .select_related("user", "room", "room__owner")
            .filter(pk=join_request_id)
            .first()
        )
        if join_request is None:
            return "gone"
        if join_request.status != ChatRoomJoinRequest.Status.PENDING:
            return "not pending"
        if join_request.owner_notified_at is not None:
            return "already sent"
        owner = join_request.room.owner
        if not owner.email:
            return "owner has no e-mail"
        room_path = reverse("chat:room", kwargs={"room_id": join_request.room_id})
        send_mail(
            subject=f"{join_request.user.get_username()} asks to join {join_request.room.title}",
            message=(
                f"{join_request.user.get_username()} would like to join your room "
                f'"{join_request.room.title}".\n\n'
                f"Admit or deny the request on the room page: {room_path}\n"
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[owner.email],
        )
        join_request.owner_notified_at = timezone.now()
        join_request.save(update_fields=["owner_notified_at"])
    return "sent"


@shared_task(
    bind=True,
    autoretry_for=(PurgeFailed,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    **TASK_OPTIONS,
)
def purge_room_urls(self, room_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Send an HTTP PURGE for each of the room's public URLs to every Varnish host."""
    try:
        _broker().delete(_purge_pending_key(room_id))
    except (redis.RedisError, OSError) as exc:
        logger.warning("could not clear the purge mark of room %s: %s", room_id, exc)
    room = ChatRoom.objects.filter(pk=room_id).first()
    if room is None or not room.is_public:
        return []
    failures: list[str] = []
    done: list[str] = []
    for host in settings.VARNISH_PURGE_HOSTS:
        hostname, _, port = host.rpartition(":") if ":" in host else (host, "", "80")
        for path in room.public_urls():
            try:
                conn = http.client.HTTPConnection(
                    hostname, int(port), timeout=settings.VARNISH_PURGE_TIMEOUT
                )
                conn.request("PURGE", path, headers={"Host": settings.VARNISH_PURGE_HOST_HEADER})
                status = conn.getresponse().status
                conn.close()
            except OSError as exc:
                failures.append(f"{host}{path}: {exc}")
                continue
            if status >= 500:
                failures.append(f"{host}{path}: HTTP {status}")
            else:
                done.append(f"{host}{path}")
    if failures:
        # PURGE is idempotent, so retrying every host is harmless.
        raise PurgeFailed("; ".join(failures))
    return done


@shared_task(**TASK_OPTIONS)
def make_room_thumbnail(room_id: int) -> str:
    """Make the room image's thumbnail (named after the image, so a rerun is a no-op)."""
    room = ChatRoom.objects.filter(pk=room_id).first()
    if room is None or not room.image:
        return "no image"
    stem = PurePosixPath(room.image.name).stem
    thumb_name = f"thumbs/{stem}.png"
    if room.thumbnail and room.thumbnail.name == thumb_name:
        return "exists"
    with room.image.open("rb") as source, Image.open(source) as image:
        image.thumbnail(settings.CHAT_THUMBNAIL_SIZE)
        out = io.BytesIO()
        image.convert("RGBA").save(out, format="PNG", optimize=True)
    storage = room.thumbnail.storage
    if not storage.exists(thumb_name):
        storage.save(thumb_name, ContentFile(out.getvalue(), name=thumb_name))
    with transaction.atomic():
        current = ChatRoom.objects.select_for_update().get(pk=room_id)
        if current.image.name != room.image.name:
            return "image changed"  # a newer upload has its own task
        current.thumbnail.name = thumb_name
        current.save(update_fields=["thumbnail", "updated"])
        ChatRoom.objects.filter(pk=room_id).update(version=F("version") + 1)
    return thumb_name


@shared_task(**TASK_OPTIONS)
def cleanup_denied_requests() -> int:
    """Delete denied join requests older than the retention period."""
    cutoff = timezone.now() - timedelta(days=settings.CHAT_DENIED_REQUEST_RETENTION_DAYS)
    deleted, _ = ChatRoomJoinRequest.objects.filter(
        status=ChatRoomJoinRequest.Status.DENIED, updated__lt=cutoff
    ).delete()
    return deleted


@shared_task(**TASK_OPTIONS)
def trim_event_streams() -> int:
    """Trim the real-time event streams to the retention period."""
    older_than_ms = int((time.time() - settings.CHAT_STREAM_RETENTION_SECONDS) * 1000)
    return events.trim_streams(older_than_ms)
