from __future__ import annotations

import secrets
import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models
from django.urls import reverse

JOIN_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
JOIN_CODE_LENGTH = 8
TITLE_MAX_LENGTH = 50
MESSAGE_MAX_LENGTH = 200


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


def room_image_path(instance: ChatRoom, filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return f"rooms/{uuid.uuid4().hex}{suffix}"


class ChatRoom(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="owned_rooms", on_delete=models.PROTECT
    )
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="joined_rooms", blank=True
    )
    is_public = models.BooleanField(
        default=False, help_text="Anyone may read the transcript without logging in."
    )
    join_code = models.CharField(max_length=16, unique=True, default=new_join_code)
    image = models.ImageField(upload_to=room_image_path, blank=True)
    thumbnail = models.ImageField(upload_to="thumbs/", blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    # Incremented (atomically, with F()) on every change that alters the rendered room:
    # a message, the image, the member list. Cache keys include it, so fragments and
    # cached queries expire by key rather than by delete.
    version = models.PositiveBigIntegerField(default=1)

    class Meta:
        ordering = ("title", "id")
        indexes = [models.Index(fields=["is_public", "-updated"], name="room_public_updated")]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("chat:room", kwargs={"room_id": self.pk})

    def get_transcript_url(self) -> str:
        return reverse("chat:transcript", kwargs={"room_id": self.pk})

    @property
    def cache_version(self) -> str:
        return f"{self.pk}.{self.version}"

    def public_urls(self) -> list[str]:
        """Every cacheable URL whose content changes when this room changes; purged on
        each Varnish node by ``chat.tasks.purge_room_urls``."""
        return [self.get_transcript_url(), reverse("chat:index")]


class ChatMessage(models.Model):
    room = models.ForeignKey(ChatRoom, related_name="messages", on_delete=models.CASCADE)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="chat_messages", on_delete=models.PROTECT
    )
    posted = models.DateTimeField(auto_now_add=True, db_index=True)
    message = models.CharField(max_length=MESSAGE_MAX_LENGTH)

    class Meta:
        ordering = ("posted", "id")
        indexes = [models.Index(fields=["room", "-posted", "-id"], name="message_room_recent")]

    def __str__(self) -> str:
        return f"{self.sender_id}@{self.room_id}: {self.message[:30]}"

    def as_event(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "sender": self.sender.get_username(),
            "posted": self.posted.isoformat(),
            "message": self.message,
        }


class ChatRoomJoinRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ADMITTED = "admitted", "Admitted"
        DENIED = "denied", "Denied"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="join_requests", on_delete=models.CASCADE
    )
    room = models.ForeignKey(ChatRoom, related_name="join_requests", on_delete=models.CASCADE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    # Set by the e-mail task: makes it idempotent across retries and redeliveries.
    owner_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "room"], name="one_request_per_user_room")
        ]
        indexes = [
            models.Index(fields=["room", "status"], name="joinreq_room_status"),
            models.Index(fields=["status", "updated"], name="joinreq_status_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} -> {self.room_id} ({self.status})"

    def as_event(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "status": self.status,
            "user": {"id": self.user_id, "username": self.user.get_username()},
            "room": {"id": self.room_id, "title": self.room.title},
        }
