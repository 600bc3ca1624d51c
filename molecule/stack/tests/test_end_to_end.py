"""The whole stack as its users and operators see it: two people chat through the
balancer, a worker mails the owner, and the monitoring host shows metrics, the error and
the logs of what they did."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from hpdtest import PROJECT_DIR, host, wait_for
from monitor import Monitoring, wait_for_values
from stack import (
    ADMIN_PATH,
    APP_CURRENT,
    CACHE,
    DB,
    LB,
    MONITORING,
    REPLICA,
    SITE,
    VARNISH,
    WEB_SERVERS,
    WORKER,
    chatclient,
    curl,
)

ARTIFACTS = PROJECT_DIR / ".cache" / "artifacts" / "stack"


@pytest.fixture(scope="module")
def monitoring() -> Monitoring:
    return Monitoring(MONITORING, MONITORING)


@pytest.fixture(scope="module")
def journey(client) -> dict:
    """Sign up two users, create a public room, ask to join, admit, chat (chatclient.py)."""
    # Hex: a urlsafe token may start with "-", which the client's arguments parser takes for
    # an option (a CI run failed 15 tests on it).
    password = secrets.token_hex(16)
    result = chatclient(client, "journey", secrets.token_hex(4), password, timeout=120)
    result["password"] = password
    return result


def test_join_request_reaches_the_owner_within_two_seconds(journey) -> None:
    assert journey["join_request_seconds"] < 2, journey


def test_message_reaches_the_other_member_within_two_seconds(journey) -> None:
    assert journey["message_seconds"] < 2, journey


def purges_done() -> int:
    stats = json.loads(host(VARNISH).check_output("varnishstat -j -f MAIN.n_purges"))
    counters = stats.get("counters", stats)
    return int(counters["MAIN.n_purges"]["value"])


def test_new_message_purges_the_cached_transcript(client, journey) -> None:
    path = f"/rooms/{journey['room']}/transcript/"
    curl(client, path)
    status, headers, body = curl(client, path)
    assert (status, headers["x-cache"]) == (200, "HIT")
    assert journey["message"] in body
    purges_before = purges_done()
    text = f"second-message-{secrets.token_hex(4)}"
    sent = chatclient(
        client, "ws-roundtrip", journey["guest"], journey["password"], str(journey["room"]), text
    )
    assert sent["received"], sent
    # The purge is a Celery task on the worker: it reaches Varnish within moments.
    assert wait_for(lambda: purges_done() > purges_before, timeout=10)
    status, headers, body = curl(client, path)
    assert status == 200
    assert text in body
    assert headers["x-cache"] == "MISS"


def test_join_request_mail_sent_by_the_worker_is_in_the_mailbox(monitoring, journey) -> None:
    # The request still pending: one the owner admitted before the worker got to it is
    # (rightly) not mailed, so the admitted guest's mail depends on timing.
    subject = f"Subject: {journey['pending_guest']} asks to join {journey['title']}"
    assert wait_for(lambda: monitoring.mails(subject), timeout=60), f"no mail: {subject!r}"
    message = monitoring.mails(subject)[0]
    assert f"To: {journey['owner']}@example.test" in message
    # Relayed by the worker host's own MTA: Celery sends it, not the web servers.
    assert WORKER in message


def test_mail_the_app_sends_from_a_web_server_is_in_the_mailbox(monitoring) -> None:
    # Django's own test mail, sent by the release on the web server (as a view would send
    # one): relayed by that host's MTA to the site's relay.
    recipient = f"web-{secrets.token_hex(4)}@example.test"
    host(WEB_SERVERS[0]).run_expect([0], f"{APP_CURRENT}/manage sendtestemail {recipient}")
    assert wait_for(lambda: monitoring.mails(f"To: {recipient}"), timeout=60), recipient
    assert WEB_SERVERS[0] in monitoring.mails(f"To: {recipient}")[0]


def test_admin_path_is_refused_to_the_client(client) -> None:
    assert curl(client, ADMIN_PATH)[0] == 403


def test_browsers_see_each_others_messages_without_a_reload(client, demo) -> None:
    script = (PROJECT_DIR / "molecule" / "shared" / "browser_chat.mjs").read_text()
    client.run_expect([0], f"cat > /opt/browser/browser_chat.mjs <<'JS'\n{script}JS")
    client.run_expect([0], "rm -rf /tmp/shots && mkdir -p /tmp/shots")
    text = f"from one browser to another {secrets.token_hex(4)}"
    result = client.run(
        "cd /opt/browser && timeout 120 node browser_chat.mjs "
        f"{SITE} {demo['room']} {demo['owner']} {demo['password']} "
        f"{demo['member']} {demo['password']} '{text}' /tmp/shots"
    )
    report = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in ("sender", "receiver"):
        shot = client.run(f"base64 -w0 /tmp/shots/{name}.png")
        if shot.rc == 0:
            (ARTIFACTS / f"browser-{name}.png").write_bytes(base64.b64decode(shot.stdout))
    assert result.rc == 0, (report, result.stderr[-2000:])
    assert report["received"] and report["receiver_reloads"] == 0, report
    assert (ARTIFACTS / "browser-receiver.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Series that prove each tier reports to Graphite (roles/collectd/README.md names the
# collectd ones; the app's statsd names come from ops.metrics).
TIER_SERIES = {
    "haproxy": f"collectd.{LB}.haproxy.*.total_requests",
    "varnish": f"collectd.{VARNISH}.varnish.total_requests.client",
    "uwsgi": f"collectd.{WEB_SERVERS[0]}.uwsgi.chat.total_requests",
    "django-views": "stats.timers.chat.view.*.*.mean",
    "celery": "stats.timers.chat.celery.chat.tasks.*.duration_ms.count",
    "postgresql": f"collectd.{DB}.postgresql.*.pg_numbackends",
    "memcached": f"collectd.{CACHE}.memcached.*.memcached_command.get",
    "redis": f"collectd.{CACHE}.redis.*.uptime",
    "host-cpu": f"collectd.{WEB_SERVERS[1]}.cpu.percent.user",
    "host-memory": f"collectd.{WORKER}.memory.memory.used",
    "host-disk": f"collectd.{REPLICA}.df.root.percent_bytes.used",
}


@pytest.mark.parametrize("tier", sorted(TIER_SERIES))
def test_graphite_has_recent_datapoints_for_each_tier(monitoring, journey, tier: str) -> None:
    assert wait_for_values(monitoring, TIER_SERIES[tier], timeout=90), TIER_SERIES[tier]


@pytest.fixture(scope="module")
def staff(demo) -> tuple[str, str]:
    """A staff user, made with the release's manage command (as an operator would)."""
    name, password = f"ops{secrets.token_hex(3)}", secrets.token_hex(16)
    host(WEB_SERVERS[0]).run_expect(
        [0],
        f"DJANGO_SUPERUSER_PASSWORD={password} {APP_CURRENT}/manage createsuperuser "
        f"--noinput --username {name} --email {name}@example.test",
    )
    return name, password


def test_error_in_a_view_appears_in_bugsink_with_the_release(client, monitoring, staff) -> None:
    page = chatclient(client, "get", *staff, "/-/error-probe/")
    assert page["status"] == 500, page
    release = host(WEB_SERVERS[0]).check_output(f"basename $(readlink -f {APP_CURRENT})")
    event = monitoring.bugsink_event(f"request {page['request_id']}")
    assert event, "the view's error never became visible in Bugsink"
    assert event["data"]["release"] == release
    assert "ErrorProbe" in json.dumps(event["data"]["exception"])


def test_request_id_is_in_the_haproxy_and_django_lines_of_the_central_log(
    client, monitoring
) -> None:
    # The login page is never cached, so the request goes all the way to Django.
    request_id = curl(client, "/accounts/login/")[1]["x-request-id"]
    assert wait_for(lambda: len(monitoring.log_lines(request_id)) >= 2, timeout=30)
    lines = monitoring.log_lines(request_id)
    assert any(LB in line and "haproxy" in line for line in lines), lines
    assert any(f"[req:{request_id}] GET /accounts/login/" in line for line in lines), lines


def test_the_edge_replaces_the_tracing_and_client_headers_a_client_sends(
    client, monitoring
) -> None:
    forged_id, forged_address = f"forged-{secrets.token_hex(6)}", "10.0.0.5"
    # The login page is never cached: the request reaches uWSGI and Django, which log it.
    path = f"/accounts/login/?t={forged_id}"
    forged = f"-H 'X-Request-ID: {forged_id}' -H 'X-Forwarded-For: {forged_address}'"
    status, headers, _ = curl(client, path, forged)
    assert status == 200
    request_id = headers["x-request-id"]
    assert forged_id not in request_id
    # Every tier logs the edge's id: HAProxy, uWSGI (with the client's own address, not
    # the forged one) and Django.
    assert wait_for(lambda: len(monitoring.log_lines(request_id)) >= 3, timeout=30)
    lines = monitoring.log_lines(request_id)
    assert any(LB in line and "haproxy" in line for line in lines), lines
    assert any(f"[req:{request_id}] GET /accounts/login/" in line for line in lines), lines
    client_address = client.check_output("hostname -I").split()[0]
    uwsgi = [line for line in lines if f"GET {path} 200" in line]
    assert uwsgi, lines
    assert all(client_address in line and forged_address not in line for line in uwsgi), uwsgi
    mentions = "\n".join(monitoring.log_lines(forged_id))
    assert f"request_id={forged_id}" not in mentions and f"req:{forged_id}" not in mentions
    # An address on the admin allowlist, claimed in the header, opens nothing.
    status, _, _ = curl(client, ADMIN_PATH, f"-H 'X-Forwarded-For: {forged_address}'")
    assert status == 403
