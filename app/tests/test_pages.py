"""Pages and permissions, through Django's test client against real services."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from chat import services
from chat.models import ChatMessage, ChatRoom, ChatRoomJoinRequest
from filestore.models import StoredFile
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


# --- accounts ------------------------------------------------------------------------


def test_sign_up_logs_in_and_lands_on_home() -> None:
    client = Client()
    response = client.post(
        reverse("accounts:signup"),
        {
            "username": "newbie",
            "email": "newbie@example.test",
            "password1": "a long passphrase 42",
            "password2": "a long passphrase 42",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("chat:home")
    assert client.get(reverse("chat:home")).status_code == 200
    assert User.objects.get(username="newbie").email == "newbie@example.test"


def test_sign_up_with_mismatched_passwords_is_a_400() -> None:
    response = Client().post(
        reverse("accounts:signup"),
        {"username": "x", "password1": "a long passphrase 42", "password2": "other"},
    )
    assert response.status_code == 400
    assert b"didn" in response.content  # "The two password fields didn't match."


def test_signed_in_user_visiting_sign_up_goes_home(owner, login) -> None:
    assert login(owner).get(reverse("accounts:signup"))["Location"] == reverse("chat:home")


def test_log_in_and_log_out(owner) -> None:
    client = Client()
    assert client.get(reverse("accounts:login")).status_code == 200
    response = client.post(
        reverse("accounts:login"), {"username": "olivia", "password": "pw-olivia"}
    )
    assert response.status_code == 302
    assert client.get(reverse("chat:home")).status_code == 200
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert client.get(reverse("chat:home")).status_code == 302  # back to login


def test_anonymous_user_is_sent_to_log_in() -> None:
    response = Client().get(reverse("chat:home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


# --- rooms -----------------------------------------------------------------------------


def test_create_room_makes_the_creator_owner_and_member(owner, login) -> None:
    client = login(owner)
    assert client.get(reverse("chat:create_room")).status_code == 200
    response = client.post(reverse("chat:create_room"), {"title": "Book club", "is_public": "on"})
    room = ChatRoom.objects.get(title="Book club")
    assert response.status_code == 302
    assert response["Location"] == room.get_absolute_url()
    assert room.owner == owner
    assert room.is_public
    assert list(room.members.all()) == [owner]
    assert re.fullmatch(r"[A-Z2-9]{8}", room.join_code)


def test_title_of_51_characters_is_refused_with_a_clear_400(owner, login) -> None:
    response = login(owner).post(reverse("chat:create_room"), {"title": "t" * 51})
    assert response.status_code == 400
    assert "A room title can be at most 50 characters (this one has 51)." in response.text
    assert not ChatRoom.objects.filter(owner=owner).exists()
    ok = login(owner).post(reverse("chat:create_room"), {"title": "t" * 50})
    assert ok.status_code == 302


def test_join_by_code_then_owner_admits(room, owner, stranger, login) -> None:
    guest = login(stranger)
    assert guest.get(reverse("chat:join")).status_code == 200
    response = guest.post(reverse("chat:join"), {"code": room.join_code.lower()})
    assert response.status_code == 302
    join_request = ChatRoomJoinRequest.objects.get(user=stranger, room=room)
    assert join_request.status == "pending"
    # Pending: the room shows on the guest's home page as waiting, but stays closed.
    home = guest.get(reverse("chat:home"))
    assert "waiting to be admitted" in home.text
    assert guest.get(room.get_absolute_url()).status_code == 403
    # Asking twice does not make a second request.
    guest.post(reverse("chat:join"), {"code": room.join_code})
    assert ChatRoomJoinRequest.objects.filter(user=stranger, room=room).count() == 1
    # The owner sees it on the room page and admits.
    owner_client = login(owner)
    page = owner_client.get(room.get_absolute_url())
    assert "sam" in page.text
    assert "Admit" in page.text
    admit_url = reverse(
        "chat:decide_request",
        kwargs={"room_id": room.pk, "request_id": join_request.pk, "decision": "admit"},
    )
    assert owner_client.post(admit_url).status_code == 303
    join_request.refresh_from_db()
    assert join_request.status == "admitted"
    assert room.members.filter(pk=stranger.pk).exists()
    assert guest.get(room.get_absolute_url()).status_code == 200
    # Deciding again changes nothing.
    response = owner_client.post(admit_url, HTTP_ACCEPT="application/json")
    assert response.json() == {"id": join_request.pk, "status": "admitted", "changed": False}
    # A member using the code goes straight to the room.
    assert guest.post(reverse("chat:join"), {"code": room.join_code})["Location"] == (
        room.get_absolute_url()
    )


def test_owner_denies_and_user_may_ask_again(room, owner, stranger, login) -> None:
    join_request = services.request_to_join(stranger, room)
    deny_url = reverse(
        "chat:decide_request",
        kwargs={"room_id": room.pk, "request_id": join_request.pk, "decision": "deny"},
    )
    response = login(owner).post(deny_url, HTTP_ACCEPT="application/json")
    assert response.json()["status"] == "denied"
    assert not room.members.filter(pk=stranger.pk).exists()
    assert "Private talk" not in login(stranger).get(reverse("chat:home")).text
    again = services.request_to_join(stranger, room)
    assert again.pk == join_request.pk
    assert again.status == "pending"


def test_only_the_owner_admits(room, member, stranger, login) -> None:
    join_request = services.request_to_join(stranger, room)
    for user in (member, stranger):
        url = reverse(
            "chat:decide_request",
            kwargs={"room_id": room.pk, "request_id": join_request.pk, "decision": "admit"},
        )
        assert login(user).post(url).status_code == 403
    join_request.refresh_from_db()
    assert join_request.status == "pending"


def test_unknown_join_code_is_a_400_with_a_message(stranger, login) -> None:
    response = login(stranger).post(reverse("chat:join"), {"code": "ZZZZZZZZ"})
    assert response.status_code == 400
    assert "No room has that join code" in response.text
    response = login(stranger).post(reverse("chat:join"), {"code": "abc"})
    assert response.status_code == 400
    assert "A join code has 8 letters and digits." in response.text


def test_home_lists_joined_and_pending_rooms_sorted_by_title_then_id(
    owner, stranger, make_user, login
) -> None:
    other_owner = make_user("zed")
    services.create_room(stranger, "beta", is_public=False)
    second_b = services.create_room(other_owner, "beta", is_public=False)
    services.request_to_join(stranger, second_b)
    alpha = services.create_room(other_owner, "alpha", is_public=True)
    services.request_to_join(stranger, alpha)
    services.create_room(owner, "not mine", is_public=False)
    page = login(stranger).get(reverse("chat:home"))
    rows = re.findall(r'data-room-id="(\d+)"', page.text)
    expected = sorted(
        [(r.title, r.pk) for r in ChatRoom.objects.exclude(title="not mine")],
    )
    assert [int(r) for r in rows] == [pk for _title, pk in expected]
    assert page.text.count("waiting to be admitted") == 2


# --- reading and posting -------------------------------------------------------------


def test_non_member_cannot_read_a_private_room(room, stranger, login) -> None:
    services.post_message(room, room.owner, "secret plans")
    response = login(stranger).get(room.get_absolute_url())
    assert response.status_code == 403
    assert "secret plans" not in response.text
    assert Client().get(room.get_transcript_url()).status_code == 404
    assert login(stranger).get(room.get_transcript_url()).status_code == 404


def test_non_member_of_a_public_room_is_sent_to_the_transcript(public_room, stranger, login):
    response = login(stranger).get(public_room.get_absolute_url())
    assert response.status_code == 302
    assert response["Location"] == public_room.get_transcript_url()


def test_missing_room_is_a_404(owner, login) -> None:
    response = login(owner).get(reverse("chat:room", kwargs={"room_id": 999999}))
    assert response.status_code == 404
    assert "This page does not exist" in response.text


def test_member_posts_and_reads(room, member, login) -> None:
    client = login(member)
    response = client.post(
        reverse("chat:post_message", kwargs={"room_id": room.pk}), {"message": "hello all"}
    )
    assert response.status_code == 303
    page = client.get(room.get_absolute_url())
    assert "hello all" in page.text
    response = client.post(
        reverse("chat:post_message", kwargs={"room_id": room.pk}),
        {"message": "json please"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201
    assert response.json()["message"]["message"] == "json please"


def test_non_member_cannot_post(room, stranger, login) -> None:
    response = login(stranger).post(
        reverse("chat:post_message", kwargs={"room_id": room.pk}), {"message": "let me in"}
    )
    assert response.status_code == 403
    assert not ChatMessage.objects.filter(room=room).exists()


def test_message_of_201_characters_is_refused_with_a_clear_400(room, member, login) -> None:
    url = reverse("chat:post_message", kwargs={"room_id": room.pk})
    client = login(member)
    response = client.post(url, {"message": "m" * 201})
    assert response.status_code == 400
    assert "A message can be at most 200 characters (this one has 201)." in response.text
    response = client.post(url, {"message": "m" * 201}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["errors"]["message"][0]["message"] == (
        "A message can be at most 200 characters (this one has 201)."
    )
    assert not ChatMessage.objects.filter(room=room).exists()
    assert client.post(url, {"message": "m" * 200}).status_code == 303
    assert client.post(url, {"message": "   "}).status_code == 400


def test_script_tag_in_a_message_is_escaped_everywhere(public_room, member, login) -> None:
    payload = "<script>alert('x')</script>"
    login(member).post(
        reverse("chat:post_message", kwargs={"room_id": public_room.pk}), {"message": payload}
    )
    assert ChatMessage.objects.get(room=public_room).message == payload
    for response in (
        login(member).get(public_room.get_absolute_url()),
        Client().get(public_room.get_transcript_url()),
    ):
        assert response.status_code == 200
        assert payload not in response.text
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in response.text


def test_post_without_csrf_token_is_refused(room, member) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    url = reverse("chat:post_message", kwargs={"room_id": room.pk})
    response = client.post(url, {"message": "forged"})
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert not ChatMessage.objects.exists()
    # With the token from the page it goes through.
    page = client.get(room.get_absolute_url())
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    assert client.post(url, {"message": "real", "csrfmiddlewaretoken": token}).status_code == 303


# --- cache headers ------------------------------------------------------------------------


def test_anonymous_transcript_is_publicly_cacheable_and_sets_no_cookie(
    public_room, member, login, settings
) -> None:
    services.post_message(public_room, member, "hi there")
    for client in (Client(), login(member)):
        response = client.get(public_room.get_transcript_url())
        assert response.status_code == 200
        assert "hi there" in response.text
        assert "Set-Cookie" not in response.headers
        assert not response.cookies
        assert "csrfmiddlewaretoken" not in response.text
        cache_control = response["Cache-Control"]
        assert "public" in cache_control
        assert f"max-age={settings.CHAT_TRANSCRIPT_MAX_AGE}" in cache_control
        assert "Cookie" not in response.get("Vary", "")
    index = Client().get(reverse("chat:index"))
    assert "public" in index["Cache-Control"]
    assert "Set-Cookie" not in index.headers
    assert "Town square" in index.text


def test_logged_in_room_page_is_private(room, member, login) -> None:
    response = login(member).get(room.get_absolute_url())
    assert response.status_code == 200
    cache_control = response["Cache-Control"]
    assert "private" in cache_control
    assert "no-cache" in cache_control
    assert "public" not in cache_control
    assert "Cookie" in response["Vary"]
    assert "private" in login(member).get(reverse("chat:home"))["Cache-Control"]


# --- room image -------------------------------------------------------------------------


def test_owner_uploads_an_image_and_gets_a_thumbnail(
    public_room, owner, login, django_capture_on_commit_callbacks
) -> None:
    client = login(owner)
    upload = SimpleUploadedFile("Cat.PNG", png_bytes((800, 600)), content_type="image/png")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            reverse("chat:upload_image", kwargs={"room_id": public_room.pk}), {"image": upload}
        )
    assert len(callbacks) == 2  # thumbnail + Varnish purge, both after commit
    assert response.status_code == 303
    public_room.refresh_from_db()
    # CELERY_TASK_ALWAYS_EAGER in test settings: the thumbnail task ran on commit.
    with Image.open(public_room.thumbnail.open("rb")) as thumb:
        assert max(thumb.size) <= 160
        assert thumb.format == "PNG"
    assert public_room.image.name.startswith("rooms/")
    assert public_room.image.name.endswith(".png")
    assert public_room.thumbnail.name.startswith("thumbs/")
    page = client.get(public_room.get_absolute_url())
    assert public_room.thumbnail.url in page.text
    served = Client().get(public_room.thumbnail.url)
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert "immutable" in served["Cache-Control"]
    assert "public" in served["Cache-Control"]
    assert served.content.startswith(b"\x89PNG")
    assert Client().get(public_room.get_transcript_url()).text.count(public_room.thumbnail.url)
    # A second upload replaces both files.
    old = {public_room.image.name, public_room.thumbnail.name}
    client.post(
        reverse("chat:upload_image", kwargs={"room_id": public_room.pk}),
        {"image": SimpleUploadedFile("b.jpg", png_bytes(fmt="JPEG"), content_type="image/jpeg")},
    )
    assert not StoredFile.objects.filter(name__in=old).exists()


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"just text, not an image", "notes.png", "not an image we can read"),
        (png_bytes(fmt="BMP"), "old.bmp", "must be JPEG, PNG, GIF or WebP (this one is BMP)"),
    ],
)
def test_bad_images_are_refused(room, owner, login, content, name, message) -> None:
    response = login(owner).post(
        reverse("chat:upload_image", kwargs={"room_id": room.pk}),
        {"image": SimpleUploadedFile(name, content)},
    )
    assert response.status_code == 400
    assert message in response.text
    assert not StoredFile.objects.exists()


def test_too_large_image_is_refused(room, owner, login, settings) -> None:
    settings.CHAT_IMAGE_MAX_BYTES = 1000
    response = login(owner).post(
        reverse("chat:upload_image", kwargs={"room_id": room.pk}),
        {"image": SimpleUploadedFile("big.png", png_bytes((300, 300), noise=True))},
    )
    assert response.status_code == 400
    assert "The image is too large" in response.text


def test_only_the_owner_uploads_images(room, member, login) -> None:
    response = login(member).post(
        reverse("chat:upload_image", kwargs={"room_id": room.pk}),
        {"image": SimpleUploadedFile("a.png", png_bytes())},
    )
    assert response.status_code == 403


def test_missing_stored_file_is_a_404_and_etag_gives_304(db) -> None:
    assert Client().get("/files/rooms/nothing.png").status_code == 404
    StoredFile.objects.create(name="rooms/x.txt", content=b"abc", size=3, content_type="text/plain")
    first = Client().get("/files/rooms/x.txt")
    assert first.content == b"abc"
    again = Client().get("/files/rooms/x.txt", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304


# --- admin ---------------------------------------------------------------------------------


def test_admin_lives_at_the_configured_path_not_admin(settings, make_user) -> None:
    assert settings.ADMIN_URL != "admin/"
    assert Client().get("/admin/").status_code == 404
    staff = User.objects.create_superuser("root", "root@example.test", "pw")
    client = Client()
    client.force_login(staff)
    assert client.get("/" + settings.ADMIN_URL).status_code == 200
    for model in ("chatroom", "chatmessage", "chatroomjoinrequest"):
        assert client.get(f"/{settings.ADMIN_URL}chat/{model}/").status_code == 200
    assert client.get(f"/{settings.ADMIN_URL}filestore/storedfile/").status_code == 200


def test_admin_actions_admit_and_deny_through_the_service(room, make_user, settings) -> None:
    staff = User.objects.create_superuser("root", "root@example.test", "pw")
    client = Client()
    client.force_login(staff)
    first, second = (services.request_to_join(make_user(), room) for _ in range(2))
    url = f"/{settings.ADMIN_URL}chat/chatroomjoinrequest/"
    for action, join_request in (("admit", first), ("deny", second)):
        response = client.post(
            url, {"action": action, "_selected_action": [join_request.pk]}, follow=True
        )
        assert response.status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("admitted", "denied")
    assert room.members.filter(pk=first.user_id).exists()
    assert not room.members.filter(pk=second.user_id).exists()
