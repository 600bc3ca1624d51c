"""Celery tasks run eagerly here (the worker test runs them in a real worker), against
the real database, Redis and local HTTP servers standing in for Varnish."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from celery.exceptions import Retry
from django.core.files.base import ContentFile
from django.utils import timezone

from chat import events, services, tasks
from chat.models import ChatRoomJoinRequest
from filestore.models import StoredFile
from filestore.storage import DatabaseStorage
from tests.conftest import free_port, png_bytes

pytestmark = pytest.mark.django_db


def test_join_request_emails_the_owner_once(
    room, owner, stranger, mailoutbox, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        join_request = services.request_to_join(stranger, room)
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == [owner.email]
    assert "sam asks to join Private talk" in mail.subject
    assert f"/rooms/{room.pk}/" in mail.body
    # Redelivery (acks_late) or a duplicate enqueue sends nothing more.
    assert tasks.notify_owner_of_join_request(join_request.pk) == "already sent"
    assert len(mailoutbox) == 1
    join_request.refresh_from_db()
    assert join_request.owner_notified_at is not None


def test_join_request_email_edge_cases(room, owner, stranger, mailoutbox) -> None:
    assert tasks.notify_owner_of_join_request(987654) == "gone"
    join_request = ChatRoomJoinRequest.objects.create(user=stranger, room=room)
    owner.email = ""
    owner.save()
    assert tasks.notify_owner_of_join_request(join_request.pk) == "owner has no e-mail"
    join_request.status = ChatRoomJoinRequest.Status.DENIED
    join_request.save()
    assert tasks.notify_owner_of_join_request(join_request.pk) == "not pending"
    assert mailoutbox == []


def test_message_in_a_public_room_purges_its_urls_on_every_varnish_host(
    public_room, member, settings, purge_servers, django_capture_on_commit_callbacks
) -> None:
    settings.VARNISH_PURGE_HOSTS = [f"127.0.0.1:{s.server_port}" for s in purge_servers]
    settings.VARNISH_PURGE_HOST_HEADER = "chat.example.org"
    with django_capture_on_commit_callbacks(execute=True):
        services.post_message(public_room, member, "news")
    expected = [("PURGE", url, "chat.example.org") for url in public_room.public_urls()]
    for server in purge_servers:
        assert server.requests == expected
    assert f"/rooms/{public_room.pk}/transcript/" in public_room.public_urls()


def test_private_rooms_are_never_purged(
    room, member, settings, purge_servers, django_capture_on_commit_callbacks
) -> None:
    settings.VARNISH_PURGE_HOSTS = [f"127.0.0.1:{s.server_port}" for s in purge_servers]
    with django_capture_on_commit_callbacks(execute=True):
        services.post_message(room, member, "quiet")
    assert all(server.requests == [] for server in purge_servers)
    assert tasks.purge_room_urls(room.pk) == []


def test_posts_queue_one_purge_per_room_until_it_runs(
    public_room, member, settings, purge_servers, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    settings.VARNISH_PURGE_HOSTS = [f"127.0.0.1:{purge_servers[0].server_port}"]
    queued: list[int] = []
    monkeypatch.setattr(tasks.purge_room_urls, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        for text in ("one", "two", "three"):
            services.post_message(public_room, member, text)
    assert queued == [public_room.pk]
    # The queued purge clears the room's mark before it reads anything: the next post
    # queues the next purge.
    tasks.purge_room_urls.apply(args=[public_room.pk], throw=True)
    with django_capture_on_commit_callbacks(execute=True):
        services.post_message(public_room, member, "four")
    assert queued == [public_room.pk, public_room.pk]
    tasks.purge_room_urls.apply(args=[public_room.pk], throw=True)


def test_a_purge_is_queued_when_the_broker_cannot_be_asked(public_room, monkeypatch) -> None:
    queued: list[int] = []
    monkeypatch.setattr(tasks.purge_room_urls, "delay", queued.append)
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=1)
    monkeypatch.setattr(tasks, "_broker", lambda: unreachable)
    assert tasks.schedule_room_purge(public_room.pk)
    assert tasks.schedule_room_purge(public_room.pk)
    assert queued == [public_room.pk, public_room.pk]


def test_failed_purge_is_retried(public_room, settings, purge_servers) -> None:
    purge_servers[1].status = 503
    settings.VARNISH_PURGE_HOSTS = [
        f"127.0.0.1:{purge_servers[0].server_port}",
        f"127.0.0.1:{purge_servers[1].server_port}",
        f"127.0.0.1:{free_port()}",  # nothing listening
    ]
    # autoretry_for turns the failure into a scheduled retry (eagerly: a Retry error).
    with pytest.raises(Retry) as retry:
        tasks.purge_room_urls.apply(args=[public_room.pk], throw=True)
    assert isinstance(retry.value.exc, tasks.PurgeFailed)
    assert "HTTP 503" in str(retry.value)
    assert "Connection refused" in str(retry.value)
    # The healthy host was purged all the same; the retry purges it again (idempotent).
    assert len(purge_servers[0].requests) == len(public_room.public_urls())


def test_thumbnail_task_is_idempotent(public_room) -> None:
    assert tasks.make_room_thumbnail(public_room.pk) == "no image"
    assert tasks.make_room_thumbnail(987654) == "no image"
    public_room.image.save("photo.jpg", ContentFile(png_bytes((640, 480), fmt="JPEG")))
    name = tasks.make_room_thumbnail(public_room.pk)
    assert name.startswith("thumbs/")
    assert name.endswith(".png")
    assert tasks.make_room_thumbnail(public_room.pk) == "exists"
    assert StoredFile.objects.filter(name=name).count() == 1
    public_room.refresh_from_db()
    assert public_room.thumbnail.name == name


def test_cleanup_removes_only_old_denied_requests(room, make_user, settings) -> None:
    old_denied, new_denied, old_pending = (
        ChatRoomJoinRequest.objects.create(user=make_user(), room=room, status=status)
        for status in ("denied", "denied", "pending")
    )
    long_ago = timezone.now() - timedelta(days=settings.CHAT_DENIED_REQUEST_RETENTION_DAYS + 1)
    ChatRoomJoinRequest.objects.filter(pk__in=[old_denied.pk, old_pending.pk]).update(
        updated=long_ago
    )
    assert tasks.cleanup_denied_requests() == 1
    remaining = set(ChatRoomJoinRequest.objects.values_list("pk", flat=True))
    assert remaining == {new_denied.pk, old_pending.pk}


def test_stream_trimming_keeps_recent_entries_and_the_newest(settings) -> None:
    client = events.redis_client()
    stream = events.room_stream(1)
    client.xadd(stream, {"type": "x"}, id="1000-0")
    client.xadd(stream, {"type": "x"}, id="2000-0")
    now_ms = int(time.time() * 1000)
    client.xadd(stream, {"type": "x"}, id=f"{now_ms}-0")
    lonely = events.user_stream(1)
    client.xadd(lonely, {"type": "x"}, id="1500-0")
    assert tasks.trim_event_streams() == 2
    assert [entry_id for entry_id, _ in client.xrange(stream)] == [f"{now_ms}-0"]
    assert [entry_id for entry_id, _ in client.xrange(lonely)] == ["1500-0"]  # newest kept


def test_beat_schedule_and_routes(settings) -> None:
    from chat_site.celery import app

    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {"chat.tasks.cleanup_denied_requests", "chat.tasks.trim_event_streams"}
    for name in scheduled:
        assert name in app.tasks
    assert settings.CELERY_TASK_ROUTES["chat.tasks.purge_room_urls"]["queue"] == "high"
    for name in (
        "notify_owner_of_join_request",
        "purge_room_urls",
        "make_room_thumbnail",
        "cleanup_denied_requests",
        "trim_event_streams",
    ):
        task = app.tasks[f"chat.tasks.{name}"]
        assert task.acks_late is True


def test_publish_survives_a_redis_outage(settings, room, caplog) -> None:
    settings.CHAT_EVENTS_REDIS_URL = "redis://127.0.0.1:1/0"
    events.redis_client.cache_clear()
    try:
        assert events.publish("s", "g", "message.created", {}, "members") is None
    finally:
        events.redis_client.cache_clear()
    assert "could not publish" in caplog.text


def test_database_storage() -> None:
    storage = DatabaseStorage()
    name = storage.save("docs/readme.txt", ContentFile(b"hello", name="readme.txt"))
    assert name == "docs/readme.txt"
    second = storage.save("docs/readme.txt", ContentFile(b"again"))
    assert second != name
    assert second.startswith("docs/readme")
    assert storage.exists(name)
    assert storage.size(name) == 5
    with storage.open(name) as handle:
        assert handle.read() == b"hello"
    assert storage.url(name) == "/files/docs/readme.txt"
    assert storage.listdir("docs") == ([], sorted([name[5:], second[5:]]))
    assert storage.listdir("") == (["docs"], [])
    assert storage.get_modified_time(name) <= timezone.now()
    assert StoredFile.objects.get(name=name).content_type == "text/plain"
    with pytest.raises(ValueError, match="read-only"):
        storage.open(name, "wb")
    storage.delete(name)
    assert not storage.exists(name)
    for call in (storage.open, storage.size, storage.get_created_time):
        with pytest.raises(FileNotFoundError):
            call(name)
