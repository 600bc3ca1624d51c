"""Abuse limits (django-ratelimit, counters in the real Memcached; conftest clears it
before every test, so no counter leaks from one test into another)."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db

OUTSIDER = "203.0.113.7"
OTHER = "198.51.100.9"
LOGIN = "/accounts/login/"


def assert_refused(response, *, period: int) -> int:
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= period
    return retry_after


def test_default_rates_are_the_documented_ones(settings) -> None:
    assert settings.RATELIMITS == {
        "login.ip": "10/5m",
        "login.account": "30/15m",
        "signup.ip": "10/h",
        "join.account": "10/h",
        "join.ip": "30/h",
        "post.account": "20/10s",
        "post.ip": "300/m",
    }


# --- log in ------------------------------------------------------------------------------------


@pytest.fixture
def password_checks() -> list[str]:
    """Usernames whose password was checked and wrong (Django's own signal)."""
    checked: list[str] = []

    def record(sender, credentials, **kwargs) -> None:
        checked.append(credentials["username"])

    user_login_failed.connect(record)
    yield checked
    user_login_failed.disconnect(record)


def test_failed_logins_per_address_are_refused_before_the_password_is_checked(
    owner, password_checks, statsd_listener, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="ops.ratelimit")
    attacker = Client(REMOTE_ADDR=OUTSIDER)
    statuses = [
        attacker.post(LOGIN, {"username": "olivia", "password": f"guess{i}"}).status_code
        for i in range(20)
    ]
    assert statuses == [200] * 10 + [429] * 10
    assert len(password_checks) == 10  # the ten refusals cost no password hashing
    response = attacker.post(LOGIN, {"username": "olivia", "password": "pw-olivia"})
    assert_refused(response, period=300)
    assert "Too many attempts, try again in" in response.text
    assert "_auth_user_id" not in attacker.session
    # The owner, from another address, logs in at once.
    owner_client = Client(REMOTE_ADDR=OTHER)
    response = owner_client.post(LOGIN, {"username": "olivia", "password": "pw-olivia"})
    assert response.status_code == 302
    assert owner_client.session["_auth_user_id"] == str(owner.pk)
    assert "chat.ratelimit.login.ip:1|c" in statsd_listener.drain()
    assert any(
        "login.ip" in record.getMessage() and OUTSIDER in record.getMessage()
        for record in caplog.records
    )


def test_successful_logins_are_not_counted(owner) -> None:
    for _ in range(12):
        client = Client(REMOTE_ADDR=OUTSIDER)
        assert (
            client.post(LOGIN, {"username": "olivia", "password": "pw-olivia"}).status_code == 302
        )


def test_failed_logins_per_account_are_refused_from_any_address(
    owner, member, password_checks
) -> None:
    for i in range(30):
        name = "Olivia" if i % 2 else "olivia"  # the account, whatever the case
        client = Client(REMOTE_ADDR=f"203.0.113.{i + 1}")
        assert client.post(LOGIN, {"username": name, "password": "wrong"}).status_code == 200
    fresh = Client(REMOTE_ADDR=OTHER)
    response = fresh.post(LOGIN, {"username": "OLIVIA", "password": "pw-olivia"})
    assert_refused(response, period=900)
    assert len(password_checks) == 30
    # Another account from that same address is not affected.
    response = fresh.post(LOGIN, {"username": "martin", "password": "pw-martin"})
    assert response.status_code == 302


def test_the_client_address_behind_the_proxies_is_the_key(owner, settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    for i in range(10):
        client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"{OUTSIDER}, 10.0.0.1")
        assert client.post(LOGIN, {"username": f"u{i}", "password": "x"}).status_code == 200
    refused = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"{OUTSIDER}, 10.0.0.1")
    assert refused.post(LOGIN, {"username": "olivia", "password": "x"}).status_code == 429
    # Another client through the same proxies is counted apart.
    other = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"{OTHER}, 10.0.0.1")
    assert other.post(LOGIN, {"username": "olivia", "password": "pw-olivia"}).status_code == 302


# --- sign up -------------------------------------------------------------------------------------


def test_sign_ups_per_address(db) -> None:
    client = Client(REMOTE_ADDR=OUTSIDER)
    url = reverse("accounts:signup")
    for _ in range(10):
        assert client.post(url, {"username": "x"}).status_code == 400  # counted all the same
    assert_refused(client.post(url, {"username": "x"}), period=3600)
    assert client.get(url).status_code == 200  # only POSTs are counted
    form = {"username": "newbie", "password1": "s3cret-Passw0rd!", "password2": "s3cret-Passw0rd!"}
    assert Client(REMOTE_ADDR=OTHER).post(url, form).status_code == 302
    assert User.objects.filter(username="newbie").exists()


# --- join requests -----------------------------------------------------------------------------


def test_join_requests_per_account(room, stranger, make_user, login) -> None:
    url = reverse("chat:join")
    client = login(stranger, REMOTE_ADDR=OUTSIDER)
    for _ in range(10):
        assert client.post(url, {"code": "NOPE-NOPE"}).status_code == 400
    assert_refused(client.post(url, {"code": room.join_code}), period=3600)
    assert not room.join_requests.filter(user=stranger).exists()
    other = login(make_user(), REMOTE_ADDR=OUTSIDER)
    assert other.post(url, {"code": room.join_code}).status_code == 302


def test_join_requests_per_address(room, make_user, login) -> None:
    url = reverse("chat:join")
    for _ in range(3):
        client = login(make_user(), REMOTE_ADDR=OUTSIDER)
        for _ in range(10):
            assert client.post(url, {"code": "NOPE-NOPE"}).status_code == 400
    newcomer = make_user()
    assert_refused(
        login(newcomer, REMOTE_ADDR=OUTSIDER).post(url, {"code": room.join_code}), period=3600
    )
    assert login(newcomer, REMOTE_ADDR=OTHER).post(url, {"code": room.join_code}).status_code == 302


# --- messages and images ---------------------------------------------------------------------


def test_messages_per_account_json_and_html(room, owner, member, login, settings) -> None:
    # The default count (20) over a 5-minute window: a 10 s window could end mid-test.
    settings.RATELIMITS = {**settings.RATELIMITS, "post.account": "20/5m"}
    url = reverse("chat:post_message", kwargs={"room_id": room.pk})
    client = login(member)
    for i in range(20):
        response = client.post(url, {"message": f"m{i}"}, HTTP_ACCEPT="application/json")
        assert response.status_code == 201
    response = client.post(url, {"message": "one more"}, HTTP_ACCEPT="application/json")
    retry_after = assert_refused(response, period=300)
    assert response.json() == {
        "error": f"Too many attempts, try again in {retry_after} seconds.",
        "retry_after": retry_after,
    }
    response = client.post(url, {"message": "one more"})
    assert_refused(response, period=300)
    assert "Too many attempts, try again in" in response.text
    assert "private" in response["Cache-Control"]
    assert room.messages.filter(sender=member).count() == 20
    # Another member of the room, same address, posts as usual.
    assert (
        login(owner).post(url, {"message": "hi"}, HTTP_ACCEPT="application/json").status_code == 201
    )


def test_image_uploads_share_the_message_limit(room, owner, login, settings) -> None:
    settings.RATELIMITS = {**settings.RATELIMITS, "post.account": "3/5m"}
    client = login(owner)
    for i in range(3):
        response = client.post(
            reverse("chat:post_message", kwargs={"room_id": room.pk}), {"message": f"m{i}"}
        )
        assert response.status_code == 303
    response = client.post(
        reverse("chat:upload_image", kwargs={"room_id": room.pk}),
        {"image": SimpleUploadedFile("a.png", png_bytes())},
    )
    assert_refused(response, period=300)
    room.refresh_from_db()
    assert not room.image


def test_messages_per_address(room, make_user, login, settings) -> None:
    # The default count (300) over an hour instead of a minute, so the window cannot end
    # mid-test. Posts of non-members are refused by the view (403) but still counted.
    settings.RATELIMITS = {**settings.RATELIMITS, "post.ip": "300/h"}
    url = reverse("chat:post_message", kwargs={"room_id": room.pk})
    sent = 0
    while sent < 300:
        client = login(make_user(), REMOTE_ADDR=OUTSIDER)
        for _ in range(min(20, 300 - sent)):
            assert client.post(url, {"message": "x"}).status_code == 403
            sent += 1
    member = room.members.exclude(pk=room.owner_id).get()
    assert_refused(login(member, REMOTE_ADDR=OUTSIDER).post(url, {"message": "x"}), period=3600)
    assert login(member, REMOTE_ADDR=OTHER).post(url, {"message": "x"}).status_code == 303


def test_limits_can_be_switched_off(owner, settings) -> None:
    settings.RATELIMIT_ENABLE = False
    client = Client(REMOTE_ADDR=OUTSIDER)
    for _ in range(12):
        assert client.post(LOGIN, {"username": "olivia", "password": "x"}).status_code == 200
