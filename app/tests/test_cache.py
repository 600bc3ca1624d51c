"""Memcached: Russian-doll fragments, key-based expiry, jitter, and an outage that is
only a cache miss (the real memcached process is frozen with SIGSTOP)."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache, caches
from django.core.cache.utils import make_template_fragment_key
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat import services
from chat.context_processors import jitter, templates_version
from ops.cache import FailSafePyLibMCCache

pytestmark = pytest.mark.django_db


def message_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if '"chat_chatmessage"' in q["sql"]]


def test_room_fragments_are_cached_and_expire_by_key(public_room, member, login) -> None:
    first = services.post_message(public_room, member, "first")
    client = Client()
    url = public_room.get_transcript_url()
    with CaptureQueriesContext(connection) as cold:
        assert "first" in client.get(url).text
    assert len(message_queries(cold)) == 1
    with CaptureQueriesContext(connection) as warm:
        assert "first" in client.get(url).text
    assert message_queries(warm) == []  # the outer doll was a hit
    fragment = make_template_fragment_key("chat_message", [first.pk, templates_version()])
    assert cache.get(fragment) is not None
    # A new message bumps the room's version: a new outer key, so the page is fresh
    # at once, while the inner fragment of the old message is reused.
    services.post_message(public_room, member, "second")
    with CaptureQueriesContext(connection) as after:
        text = client.get(url).text
    assert "first" in text
    assert "second" in text
    assert len(message_queries(after)) == 1
    # The logged-in room page shares the same fragments.
    with CaptureQueriesContext(connection) as room_page:
        assert "second" in login(member).get(public_room.get_absolute_url()).text
    assert message_queries(room_page) == []


def test_fragments_rendered_by_other_templates_are_not_reused(
    public_room, member, monkeypatch
) -> None:
    # What a release with changed templates sees: the fragments the previous release
    # cached are keyed by the previous templates' version, so its pages render afresh.
    services.post_message(public_room, member, "hello")
    url = public_room.get_transcript_url()
    Client().get(url)
    monkeypatch.setattr("chat.context_processors.templates_version", lambda: "next-release")
    with CaptureQueriesContext(connection) as changed:
        assert "hello" in Client().get(url).text
    assert len(message_queries(changed)) == 1


def test_templates_version_follows_the_templates(settings, tmp_path) -> None:
    (tmp_path / "extra.html").write_text("one")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    templates_version.cache_clear()
    try:
        before = templates_version()
        (tmp_path / "extra.html").write_text("two")
        templates_version.cache_clear()
        assert templates_version() != before
    finally:
        templates_version.cache_clear()


def test_public_room_directory_is_a_cached_query(public_room) -> None:
    client = Client()
    client.get(reverse("chat:index"))
    with CaptureQueriesContext(connection) as warm:
        assert "Town square" in client.get(reverse("chat:index")).text
    assert len(warm.captured_queries) == 0


def test_jitter_spreads_timeouts_within_twenty_percent() -> None:
    values = {jitter(1000) for _ in range(200)}
    assert min(values) >= 800
    assert max(values) <= 1200
    assert len(values) > 20
    assert jitter(1) >= 1


def test_cache_wrapper_behaves_like_a_cache() -> None:
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False
    assert cache.incr("k") == 2
    assert cache.decr("k") == 1
    assert cache.touch("k", 30) is True
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b", "zz"]) == {"a": 1, "b": 2}
    cache.delete_many(["a", "b"])
    assert cache.get("a") is None
    assert cache.delete("k") is True
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")


@pytest.fixture
def frozen_memcached() -> Iterator[None]:
    """Freeze the Memcached process run-tests started (SIGSTOP), thaw it afterwards."""
    pid = int(os.environ["TEST_MEMCACHED_PID"])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        # Forget libmemcached's view of the dead server: a fresh client per thread.
        for backend in caches.all(initialized_only=True):
            backend.__dict__.pop("_cache", None)
        FailSafePyLibMCCache.reset_breakers()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                caches["default"].ping()
                break
            except Exception:
                time.sleep(0.1)


def test_memcached_outage_is_a_logged_counted_miss_and_every_page_answers(
    public_room, owner, member, stranger, login, frozen_memcached, statsd_listener, caplog
) -> None:
    message = services.post_message(public_room, member, "still here")
    join_request = services.request_to_join(stranger, public_room)
    member_client = login(member)
    owner_client = login(owner)
    pages = [
        (Client(), reverse("chat:index")),
        (Client(), public_room.get_transcript_url()),
        (Client(), reverse("accounts:login")),
        (Client(), reverse("accounts:signup")),
        (member_client, reverse("chat:home")),
        (member_client, public_room.get_absolute_url()),
        (owner_client, public_room.get_absolute_url()),
        (member_client, reverse("chat:create_room")),
        (member_client, reverse("chat:join")),
    ]
    caplog.set_level(logging.WARNING, logger="ops.cache")
    started = time.monotonic()
    for client, url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
    assert "still here" in owner_client.get(public_room.get_absolute_url()).text
    assert join_request.user.username in owner_client.get(public_room.get_absolute_url()).text
    response = member_client.post(
        reverse("chat:post_message", kwargs={"room_id": public_room.pk}), {"message": "more"}
    )
    assert response.status_code == 303
    assert time.monotonic() - started < 10  # the breaker avoids a time-out per call
    assert any("Memcached" in r.getMessage() for r in caplog.records)
    sent = statsd_listener.drain()
    assert any(line.startswith("chat.cache.errors:") for line in sent), sent
    assert any(line.startswith("chat.cache.skipped:") for line in sent), sent
    # The health endpoint reports the cache but stays 200 (the cache is not critical).
    health = Client().get("/-/health/")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded"
    assert body["failing"] == ["cache"]
    assert message.pk
