"""Database clamps: every page runs a small, bounded number of queries, however much
data there is (cold caches: the worst case)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import ChatMessage
from filestore.models import StoredFile

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_room(public_room, owner, member, make_user):
    """A public room with 60 messages from 12 senders and 8 pending join requests."""
    senders = [make_user() for _ in range(12)]
    public_room.members.add(*senders)
    ChatMessage.objects.bulk_create(
        ChatMessage(room=public_room, sender=senders[i % 12], message=f"message {i}")
        for i in range(60)
    )
    for _ in range(8):
        services.request_to_join(make_user(), public_room)
    for i in range(6):
        services.create_room(member, f"room {i}", is_public=i % 2 == 0)
    return public_room


# (client kind, url name or callable, clamp)
PAGES = [
    ("anonymous", lambda room: reverse("chat:index"), 1),
    ("anonymous", lambda room: room.get_transcript_url(), 2),
    ("anonymous", lambda room: reverse("accounts:login"), 0),
    ("anonymous", lambda room: reverse("accounts:signup"), 0),
    ("member", lambda room: reverse("chat:home"), 3),
    ("member", lambda room: reverse("chat:create_room"), 1),
    ("member", lambda room: reverse("chat:join"), 1),
    ("member", lambda room: room.get_absolute_url(), 5),
    ("owner", lambda room: room.get_absolute_url(), 6),
    ("anonymous", lambda room: "/-/alive/", 0),
]


@pytest.mark.parametrize(("who", "url_for", "clamp"), PAGES)
def test_page_query_clamp(
    busy_room, owner, member, login, who, url_for, clamp, django_assert_max_num_queries
) -> None:
    client = {"anonymous": Client(), "member": login(member), "owner": login(owner)}[who]
    url = url_for(busy_room)
    cache.clear()
    with django_assert_max_num_queries(clamp):
        response = client.get(url)
    assert response.status_code == 200


def test_health_and_file_query_clamps(busy_room, django_assert_max_num_queries) -> None:
    StoredFile.objects.create(name="rooms/a.png", content=b"x", size=1, content_type="image/png")
    with django_assert_max_num_queries(1):
        assert Client().get("/files/rooms/a.png").status_code == 200
    with django_assert_max_num_queries(3):
        assert Client().get("/-/health/").status_code == 200


def test_admit_and_post_are_bounded(busy_room, owner, member, login, django_assert_max_num_queries):
    join_request = busy_room.join_requests.first()
    url = reverse(
        "chat:decide_request",
        kwargs={"room_id": busy_room.pk, "request_id": join_request.pk, "decision": "admit"},
    )
    client = login(owner)
    with django_assert_max_num_queries(12):
        assert client.post(url).status_code == 303
    client = login(member)
    with django_assert_max_num_queries(8):
        response = client.post(
            reverse("chat:post_message", kwargs={"room_id": busy_room.pk}), {"message": "hi"}
        )
    assert response.status_code == 303
