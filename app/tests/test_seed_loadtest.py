import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from chat import services
from chat.models import ChatRoom, ChatRoomJoinRequest

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-load-test-password"


def seed(members: int = 3, newcomers: int = 2, password: str = PASSWORD) -> dict:
    out = StringIO()
    call_command(
        "seed_loadtest",
        f"--members={members}",
        f"--newcomers={newcomers}",
        f"--password={password}",
        stdout=out,
    )
    return json.loads(out.getvalue())


def with_session(key: str) -> Client:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = key
    return client


def test_seed_loadtest_creates_the_accounts_and_a_public_room_once(client) -> None:
    first = seed()
    second = seed(password="another-long-password")
    assert first.pop("created") is True
    assert second.pop("created") is False
    assert first.pop("session") != second.pop("session")
    assert first == second
    room = ChatRoom.objects.get(pk=first["room"])
    assert room.is_public
    assert room.title == "Load test"
    assert room.owner.username == "loadtest-member-1"
    assert first["members"] == ["loadtest-member-1", "loadtest-member-2", "loadtest-member-3"]
    assert first["newcomers"] == ["loadtest-newcomer-1", "loadtest-newcomer-2"]
    assert set(room.members.values_list("username", flat=True)) == set(first["members"])
    assert first["room_path"] == f"/rooms/{room.pk}/"
    assert first["transcript"] == room.get_transcript_url()
    assert first["join_code"] == room.join_code
    # The password of the second run is the one that works, for every account.
    assert not client.login(username="loadtest-newcomer-2", password=PASSWORD)
    assert client.login(username="loadtest-newcomer-2", password="another-long-password")
    assert Client().get(first["transcript"]).status_code == 200


def test_the_session_is_the_owner_logged_in() -> None:
    first = seed()
    page = with_session(first["session"]).get(first["room_path"])
    assert page.status_code == 200
    assert page.context["user"].username == "loadtest-member-1"
    # Only the owner's page shows the join code.
    assert f'<code id="join-code">{first["join_code"]}</code>' in page.content.decode()
    # A new run resets the passwords, which logs out the sessions of earlier runs.
    second = seed()
    assert with_session(first["session"]).get(first["room_path"]).status_code == 302
    assert with_session(second["session"]).get(first["room_path"]).status_code == 200


def test_newcomers_join_by_code_and_a_new_run_resets_the_room() -> None:
    first = seed(members=2, newcomers=2)
    newcomer = Client()
    assert newcomer.login(username="loadtest-newcomer-1", password=PASSWORD)
    # The code goes into the join-by-code form as it is printed.
    response = newcomer.post("/join/", {"code": first["join_code"]})
    assert response.status_code == 302
    join_request = ChatRoomJoinRequest.objects.get(
        room_id=first["room"], user__username="loadtest-newcomer-1"
    )
    assert join_request.status == "pending"
    assert services.decide_join_request(join_request, admit=True)
    owner_page = with_session(first["session"]).get(first["room_path"])
    assert "loadtest-newcomer-1" in owner_page.context["members"]

    # More members, and the newcomer out of the room with no request left: the cached
    # member list shows it at once.
    second = seed(members=3, newcomers=2)
    assert not ChatRoomJoinRequest.objects.filter(room_id=first["room"]).exists()
    owner_page = with_session(second["session"]).get(second["room_path"])
    assert owner_page.context["members"] == [
        "loadtest-member-1",
        "loadtest-member-2",
        "loadtest-member-3",
    ]
    # The password reset logged the newcomer out; back in, it is still not a member.
    assert newcomer.login(username="loadtest-newcomer-1", password=PASSWORD)
    assert newcomer.get(second["room_path"])["Location"] == second["transcript"]


def test_the_room_needs_an_owner() -> None:
    with pytest.raises(CommandError, match="at least 1"):
        seed(members=0)
