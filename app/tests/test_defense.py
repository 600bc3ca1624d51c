"""Defense in depth: the client address behind our proxies, the admin allowlist and who
sees the detailed health answer. Real requests through Django's test client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.test import Client, RequestFactory

from ops.clientaddr import UNKNOWN, client_address

BALANCER = "10.0.0.10"
VARNISH = "10.0.1.20"
OUTSIDER = "203.0.113.7"
OPERATOR = "192.0.2.44"


@pytest.fixture
def proxies(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24", VARNISH]
    settings.ADMIN_ALLOWLIST = ["127.0.0.1/32", "::1/128", "192.0.2.0/26"]
    settings.HEALTH_DETAIL_ALLOWLIST = ["198.51.100.3"]
    return settings


def address(forwarded: str | None, remote: str) -> str:
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client_address(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))


# --- client address ----------------------------------------------------------------------


def test_client_is_the_first_untrusted_address_from_the_right(proxies) -> None:
    # The production chain: HAProxy sets the client, Varnish appends the balancer.
    assert address(f"{OUTSIDER}, {BALANCER}", VARNISH) == OUTSIDER
    # Whatever the client wrote before HAProxy replaced it would be left of it; and a
    # chain of trusted hops stops at the first untrusted one.
    assert address(f"1.1.1.1, {OUTSIDER}, {BALANCER}", VARNISH) == OUTSIDER
    # Every hop trusted (a balancer probing directly): the leftmost one.
    assert address(None, BALANCER) == BALANCER
    assert address(BALANCER, VARNISH) == BALANCER
    # IPv6, and IPv4 written as IPv4-mapped IPv6.
    assert address("2001:db8::5", VARNISH) == "2001:db8::5"
    assert address(None, "::ffff:203.0.113.7") == OUTSIDER


def test_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(proxies) -> None:
    assert address("127.0.0.1", OUTSIDER) == OUTSIDER
    assert address(f"127.0.0.1, {BALANCER}", OUTSIDER) == OUTSIDER
    assert address(None, OUTSIDER) == OUTSIDER


def test_without_trusted_proxies_the_header_is_ignored(settings) -> None:
    settings.TRUSTED_PROXIES = []
    assert address("192.0.2.44", "127.0.0.1") == "127.0.0.1"


def test_an_entry_that_is_no_address_stops_the_walk(proxies) -> None:
    assert address(f"not-an-ip, {BALANCER}", VARNISH) == UNKNOWN
    assert address(f"{OUTSIDER}:4711, {BALANCER}", VARNISH) == UNKNOWN
    # Left of an untrusted hop nothing is read, garbage included.
    assert address(f"garbage, {OUTSIDER}, {BALANCER}", VARNISH) == OUTSIDER


def test_the_answer_is_memoized_on_the_request(proxies) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR=OUTSIDER)
    assert client_address(request) == OUTSIDER
    request.META["REMOTE_ADDR"] = BALANCER
    assert client_address(request) == OUTSIDER


def test_a_malformed_address_setting_fails_the_system_check(settings) -> None:
    assert not [e for e in run_checks() if e.id == "ops.E001"]
    settings.TRUSTED_PROXIES = ["10.0.0.0/33"]
    errors = [e for e in run_checks() if e.id == "ops.E001"]
    assert len(errors) == 1
    assert "TRUSTED_PROXIES" in errors[0].msg


# --- admin allowlist -----------------------------------------------------------------------


def admin_spellings(admin_url: str) -> list[str]:
    """Paths that Django routes into the admin site (the test client decodes %XX like a
    server does; dot segments and doubled slashes reach the admin's catch-all view)."""
    encoded = "".join(f"%{ord(c):02X}" for c in admin_url.rstrip("/"))
    return [
        f"/{admin_url}",
        f"/{admin_url}login/",
        f"/{encoded}/login/",
        f"/{admin_url}/login/",
        f"/{admin_url}./login/",
        f"/{admin_url}auth/user/",
    ]


@pytest.mark.django_db
def test_admin_refuses_an_outsider_whatever_the_spelling(proxies) -> None:
    client = Client(REMOTE_ADDR=OUTSIDER)
    for path in admin_spellings(proxies.ADMIN_URL):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "only reachable from the operators network" in response.text
    # The same outsider behind our proxies, and with a forged header sent directly.
    via_proxies = Client(REMOTE_ADDR=VARNISH, HTTP_X_FORWARDED_FOR=f"{OUTSIDER}, {BALANCER}")
    assert via_proxies.get(f"/{proxies.ADMIN_URL}login/").status_code == 403
    forged = Client(REMOTE_ADDR=OUTSIDER, HTTP_X_FORWARDED_FOR=OPERATOR)
    assert forged.get(f"/{proxies.ADMIN_URL}login/").status_code == 403
    forged_loopback = Client(REMOTE_ADDR=OUTSIDER, HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert forged_loopback.post(f"/{proxies.ADMIN_URL}login/").status_code == 403
    # The rest of the site is untouched.
    assert client.get("/accounts/login/").status_code == 200


@pytest.mark.django_db
def test_admin_answers_an_allowlisted_client_directly_and_through_the_proxies(proxies) -> None:
    login = f"/{proxies.ADMIN_URL}login/"
    direct = Client(REMOTE_ADDR=OPERATOR)
    assert direct.get(login).status_code == 200
    assert "Django administration" in direct.get(login).text
    via_proxies = Client(REMOTE_ADDR=VARNISH, HTTP_X_FORWARDED_FOR=f"{OPERATOR}, {BALANCER}")
    assert via_proxies.get(login).status_code == 200
    assert Client(REMOTE_ADDR="127.0.0.1").get(login).status_code == 200
    # Every spelling reaches the admin for an operator (login page or its redirect to it).
    for path in admin_spellings(proxies.ADMIN_URL):
        assert direct.get(path).status_code in {200, 302}, path


@pytest.mark.django_db
def test_an_allowlisted_staff_member_logs_in_to_the_admin(proxies) -> None:
    User.objects.create_superuser("root", "root@example.test", "pw-root")
    client = Client(REMOTE_ADDR=VARNISH, HTTP_X_FORWARDED_FOR=f"{OPERATOR}, {BALANCER}")
    response = client.post(
        f"/{proxies.ADMIN_URL}login/",
        {"username": "root", "password": "pw-root", "next": f"/{proxies.ADMIN_URL}"},
    )
    assert response.status_code == 302
    assert client.get(f"/{proxies.ADMIN_URL}").status_code == 200
    # The same session from outside is refused: the allowlist does not trust cookies.
    client.defaults = {"REMOTE_ADDR": OUTSIDER}
    assert client.get(f"/{proxies.ADMIN_URL}").status_code == 403


# --- health detail -----------------------------------------------------------------------------


def detailed(response) -> bool:
    return response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_health_detail_only_for_loopback_proxies_and_allowlists(proxies) -> None:
    allowed = [
        Client(),  # 127.0.0.1
        Client(REMOTE_ADDR="::1"),
        Client(REMOTE_ADDR=BALANCER),  # a balancer's probe, no X-Forwarded-For
        Client(REMOTE_ADDR=VARNISH),
        Client(REMOTE_ADDR="198.51.100.3"),  # HEALTH_DETAIL_ALLOWLIST (the deploy's gate)
        Client(REMOTE_ADDR=OPERATOR),  # ADMIN_ALLOWLIST
        Client(REMOTE_ADDR=VARNISH, HTTP_X_FORWARDED_FOR=f"{OPERATOR}, {BALANCER}"),
    ]
    for client in allowed:
        response = client.get("/-/health/")
        assert response.status_code == 200
        assert detailed(response), client.defaults
        assert response.json()["release"] == proxies.APP_RELEASE
    refused = [
        Client(REMOTE_ADDR=OUTSIDER),
        Client(REMOTE_ADDR=OUTSIDER, HTTP_X_FORWARDED_FOR="127.0.0.1"),
        Client(REMOTE_ADDR=VARNISH, HTTP_X_FORWARDED_FOR=f"{OUTSIDER}, {BALANCER}"),
        Client(REMOTE_ADDR=VARNISH, HTTP_X_FORWARDED_FOR=f"127.0.0.1, {OUTSIDER}, {BALANCER}"),
    ]
    for client in refused:
        response = client.get("/-/health/")
        assert response.status_code == 200
        assert response.content == b"ok\n", client.defaults
        assert response["Content-Type"].startswith("text/plain")
        assert "no-cache" in response["Cache-Control"]


def test_a_failing_critical_check_is_503_for_probes_and_hidden_from_others(proxies, db) -> None:
    from chat import events

    proxies.CHAT_EVENTS_REDIS_URL = "redis://127.0.0.1:1/0"
    events.redis_client.cache_clear()
    try:
        probe = Client(REMOTE_ADDR=BALANCER).get("/-/health/")
        outsider = Client(REMOTE_ADDR=OUTSIDER).get("/-/health/")
    finally:
        events.redis_client.cache_clear()
    assert probe.status_code == 503
    assert probe.json()["failing"] == ["redis"]
    assert outsider.status_code == 200
    assert outsider.content == b"ok\n"
