import json
from io import StringIO

import pytest
from django.core.management import call_command

from chat.models import ChatMessage, ChatRoom


def seed(password: str = "a-long-demo-password") -> dict:  # noqa: S107 (a test fixture)
    out = StringIO()
    call_command("seed_demo", "--password", password, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db(transaction=True)
def test_seed_demo_creates_a_public_room_once(client) -> None:
    first = seed()
    second = seed("another-long-password")
    assert first.pop("created") is True
    assert second.pop("created") is False
    assert first == second
    room = ChatRoom.objects.get(pk=first["room"])
    assert room.is_public
    assert set(room.members.values_list("username", flat=True)) == {"demo", "guest"}
    assert ChatMessage.objects.filter(room=room).count() == 2
    # The password of the second run is the one that works.
    assert client.login(username="guest", password="another-long-password")
    assert client.get(first["transcript"]).status_code == 200
