"""The web tier end to end, driven by real clients from a container on no allowlist."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import pytest
from hpdtest import host, inventory_variable, role_setting, run_playbook, wait_for
from stack import (
    ADMIN_PATH,
    APP_CURRENT,
    ASGI_UNIT,
    CA,
    CACHE,
    LB,
    LB_SOCKET,
    SITE,
    SITE_NAME,
    TRANSCRIPT_TTL,
    VARNISH,
    WEB_SERVERS,
    chatclient,
    curl,
    health_url,
    releases_served_by,
    room_purges_pending,
    try_chatclient,
    varnish_backends,
)


def test_https_serves_the_app_and_http_redirects(client) -> None:
    status, headers, body = curl(client, "/")
    assert status == 200
    assert "<html" in body.lower()
    assert headers["strict-transport-security"].startswith("max-age=")
    redirect = client.check_output(
        f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{SITE_NAME}/"
    )
    assert redirect == f"301 https://{SITE_NAME}/"


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_fail(client, version: str) -> None:
    result = client.run(
        f"echo | openssl s_client -connect {SITE_NAME}:443 {version} -cipher 'DEFAULT:@SECLEVEL=0'"
    )
    assert result.rc != 0


def test_second_anonymous_transcript_get_is_a_varnish_hit(client, demo) -> None:
    path = demo["transcript"]
    # Up to three pairs: a purge of this room queued by an earlier test's posts (Celery)
    # may land between the two requests of a pair.
    for _ in range(3):
        status, first, _ = curl(client, path)
        assert status == 200
        assert "set-cookie" not in first
        assert "public" in first["cache-control"]
        status, second, body = curl(client, path)
        assert status == 200
        if second["x-cache"] == "HIT":
            break
        time.sleep(2)
    assert second["x-cache"] == "HIT", second
    assert "<h1>Welcome</h1>" in body  # the room's transcript, not an error page


def test_admin_path_refused_outside_allowlist(client) -> None:
    status, _, _ = curl(client, ADMIN_PATH)
    assert status == 403


def test_websocket_through_balancer_receives_message_posted_over_http(client, demo) -> None:
    text = f"hello-{secrets.token_hex(4)}"
    result = chatclient(
        client, "ws-roundtrip", demo["member"], demo["password"], str(demo["room"]), text
    )
    assert result["received"], result
    assert result["seconds"] < 2


APP_ENV = f"{APP_CURRENT}/app.env"


def chain_reload_running(name: str) -> bool:
    """Whether the vassal's master has started a chain reload it has not finished: its
    last chain line in the journal is the start, not "chain reloading complete"."""
    web = host(name)
    master = json.loads(web.check_output("curl -s http://127.0.0.1:1717/"))["pid"]
    last = web.run(
        f"journalctl -u uwsgi-emperor _PID={master} -o cat -n 1 "
        "-g 'chain reload !!!|chain reloading complete'"
    ).stdout
    return "chain reload !!!" in last


def chain_reload(name: str) -> None:
    """Touch the chain-reload file once the previous chain reload is over: uWSGI ignores
    a touch that comes while one is running ("chain reload is already running")."""
    assert wait_for(lambda: not chain_reload_running(name), timeout=120), name
    host(name).run_expect([0], "touch /run/uwsgi/chat.chain-reload")


def test_graceful_reload_under_load_fails_no_request(client) -> None:
    # The reload must also bring the release's environment into every new worker, as a
    # deploy relies on: the release id in app.env is changed first, and restored after.
    release = f"reload-{secrets.token_hex(4)}"
    for name in WEB_SERVERS:
        host(name).run_expect(
            [0],
            f"cp -p {APP_ENV} /tmp/app.env.orig && "
            f"sed -i 's/^APP_RELEASE=.*/APP_RELEASE={release}/' {APP_ENV}",
        )
    try:
        client.run_expect([0], "rm -f /tmp/ab.out")
        client.run_expect(
            [0],
            f"nohup ab -q -n 2000 -c 20 -s 20 {SITE}/-/alive/ > /tmp/ab.out 2>&1 & echo started",
        )
        time.sleep(2)
        for name in WEB_SERVERS:
            chain_reload(name)
        assert wait_for(
            lambda: (
                "Requests per second" in client.run("cat /tmp/ab.out").stdout
                or "apr_" in client.run("cat /tmp/ab.out").stdout
            ),
            timeout=240,
        )
        report = client.check_output("cat /tmp/ab.out")
        assert "Complete requests:      2000" in report, report
        assert re.search(r"Failed requests:\s+0\b", report), report
        assert "Non-2xx responses" not in report, report
        for name in WEB_SERVERS:
            assert wait_for(lambda name=name: releases_served_by(name) == {release}, timeout=60)
    finally:
        for name in WEB_SERVERS:
            host(name).run_expect([0], f"cp -p /tmp/app.env.orig {APP_ENV}")
            chain_reload(name)
    for name in WEB_SERVERS:
        assert wait_for(lambda name=name: release not in releases_served_by(name), timeout=60)


def static_path(client) -> str:
    _, _, body = curl(client, "/")
    match = re.search(r'(/static/[^"\']+\.(?:css|js))', body)
    assert match, "the landing page links no static file"
    return match.group(1)


def test_vcl_change_keeps_cached_objects(client) -> None:
    path = static_path(client)
    curl(client, path)
    assert curl(client, path)[1]["x-cache"] == "HIT"
    loaded_before = host(VARNISH).check_output("varnishadm vcl.list | wc -l")
    # As an operator would: site.yml on the accelerators alone (the web servers' addresses
    # come from the fact cache), and only Varnish's tasks.
    only_varnish = ("--tags", "varnish", "--limit", "accelerators")
    result = run_playbook("playbooks/site.yml", *only_varnish, "-e", "varnish_retry_after=7")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    try:
        assert host(VARNISH).check_output("varnishadm vcl.list | wc -l") != loaded_before
        assert curl(client, path)[1]["x-cache"] == "HIT"
    finally:
        restored = run_playbook("playbooks/site.yml", *only_varnish)
        assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]


def haproxy_status(server: str) -> str:
    rows = host(LB).check_output(f"echo 'show stat' | {LB_SOCKET}").splitlines()
    header = rows[0].lstrip("# ").split(",")
    for row in rows[1:]:
        fields = dict(zip(header, row.split(","), strict=False))
        if fields["pxname"] == "asgi" and fields["svname"] == server:
            return fields["status"]
    raise AssertionError(f"asgi/{server} not in HAProxy's stats")


def requests_seen_by(name: str, token: str) -> int:
    out = host(name).run(f"journalctl -u uwsgi-emperor --no-pager | grep -c {token}")
    return int(out.stdout.strip() or 0)


def test_unhealthy_web_server_gets_no_requests(client, demo) -> None:
    app1 = host(WEB_SERVERS[0])
    data = host(CACHE).check_output("hostname -I").split()[0]
    # Cut the first web server off from Redis: its /-/health/ fails while the process stays up.
    app1.run_expect(
        [0],
        "nft add table inet hpdtest && nft add chain inet hpdtest out "
        "'{ type filter hook output priority 0; }' && "
        f"nft add rule inet hpdtest out ip daddr {data} tcp dport 6379 drop",
    )
    try:
        assert wait_for(lambda: haproxy_status(WEB_SERVERS[0]) == "DOWN", timeout=60)
        assert wait_for(lambda: WEB_SERVERS[0] in varnish_backends("sick"), timeout=60)
        token = secrets.token_hex(6)
        for i in range(10):
            curl(client, f"/-/alive/?t={token}{i}")
        time.sleep(1)
        assert requests_seen_by(WEB_SERVERS[0], token) == 0
        assert requests_seen_by(WEB_SERVERS[1], token) == 10
    finally:
        app1.run("nft delete table inet hpdtest")
    assert wait_for(lambda: haproxy_status(WEB_SERVERS[0]) == "UP", timeout=60)
    # Its WebSockets work again too: the channel layer replaces the connections the cut
    # left hanging (new sockets go to the first web server while the second is drained). A handshake
    # refused while it does so is what a browser sees too; it reconnects, and so do we.
    lb = host(LB)
    lb.run_expect([0], f"echo 'set server asgi/{WEB_SERVERS[1]} state drain' | {LB_SOCKET}")
    failures: list[str] = []
    try:
        text = f"after-the-cut-{secrets.token_hex(4)}"

        def roundtrip() -> bool:
            result, error = try_chatclient(
                client, "ws-roundtrip", demo["owner"], demo["password"], str(demo["room"]), text
            )
            if result is None:
                failures.append(error)
                return False
            return result["received"]

        recovered = wait_for(roundtrip, timeout=60, interval=2)
        asgi_log = (
            "" if recovered else app1.run(f"journalctl -u {ASGI_UNIT} -n 60 --no-pager").stdout
        )
        assert recovered, f"{failures}\n{asgi_log}"
        print(f"WebSocket attempts refused before recovery: {len(failures)} {failures}")
    finally:
        lb.run_expect([0], f"echo 'set server asgi/{WEB_SERVERS[1]} state ready' | {LB_SOCKET}")


def test_drained_server_keeps_its_sockets_and_gets_no_new_ones(client, demo) -> None:
    lb = host(LB)
    client.run_expect([0], "rm -f /tmp/listen.out")
    client.run_expect(
        [0],
        f"nohup python3 /usr/local/bin/chatclient --base {SITE} --ca {CA} ws-listen "
        f"{demo['member']} {demo['password']} {demo['room']} 20 /tmp/listen.out "
        "> /dev/null 2> /tmp/listen.err & echo started",
    )
    assert wait_for(lambda: "connected" in client.run("cat /tmp/listen.out").stdout, timeout=40), (
        client.run("tail -5 /tmp/listen.err").stdout
    )

    def current_sessions() -> dict[str, int]:
        rows = lb.check_output(f"echo 'show stat' | {LB_SOCKET}").splitlines()
        header = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            fields = dict(zip(header, row.split(","), strict=False))
            if fields["pxname"] == "asgi" and fields["svname"] in WEB_SERVERS:
                out[fields["svname"]] = int(fields["scur"])
        return out

    holder = max(current_sessions().items(), key=lambda item: item[1])[0]
    lb.run_expect([0], f"echo 'set server asgi/{holder} state drain' | {LB_SOCKET}")
    try:
        text = f"after-drain-{secrets.token_hex(4)}"
        total_before = stat_total(lb, holder)
        for _ in range(4):
            assert chatclient(
                client, "ws-roundtrip", demo["owner"], demo["password"], str(demo["room"]), text
            )["received"]
        # New connections all went to the other server ...
        assert stat_total(lb, holder) == total_before
        assert current_sessions()[holder] >= 1
        # ... while the socket held on the drained one kept receiving.
        assert wait_for(lambda: text in client.run("cat /tmp/listen.out").stdout, timeout=10)
    finally:
        lb.run_expect([0], f"echo 'set server asgi/{holder} state ready' | {LB_SOCKET}")


def stat_total(lb, server: str) -> int:
    rows = lb.check_output(f"echo 'show stat' | {LB_SOCKET}").splitlines()
    header = rows[0].lstrip("# ").split(",")
    for row in rows[1:]:
        fields = dict(zip(header, row.split(","), strict=False))
        if fields["pxname"] == "asgi" and fields["svname"] == server:
            return int(fields["stot"])
    raise AssertionError(server)


def test_grace_serves_stale_pages_when_every_web_server_is_down(client) -> None:
    # A room of its own: nobody posts there, so no purge queued by an earlier test's posts
    # (Celery) can drop the cached copy while the web servers are down.
    token = secrets.token_hex(3)
    room = json.loads(
        host(WEB_SERVERS[0])
        .check_output(
            f"{APP_CURRENT}/manage seed_demo --owner grace-{token}-a --member grace-{token}-b "
            f"--password={secrets.token_hex(16)}"
        )
        .splitlines()[-1]
    )
    path = room["transcript"]
    # The room's own purge (its seeded messages) comes through Celery; the copy cached after
    # it is the one grace serves. Other tasks earlier tests left queued do not matter.
    assert wait_for(lambda: room_purges_pending(room["room"]) == 0, timeout=180)
    assert curl(client, path)[0] == 200
    # Both at once: each stop waits for uWSGI's workers to finish (a few seconds; 90 when
    # a worker outlived its master, docs/pitfalls.md). The status shows what they were doing.
    for name in WEB_SERVERS:
        host(name).run_expect([0], "systemctl stop --no-block uwsgi-emperor")
    try:
        assert wait_for(
            lambda: all(
                host(name).run("systemctl is-active uwsgi-emperor").stdout.strip()
                in ("inactive", "failed")
                for name in WEB_SERVERS
            ),
            timeout=60,
        ), {
            name: host(name).run("systemctl status --no-pager uwsgi-emperor").stdout[-1500:]
            for name in WEB_SERVERS
        }
        assert wait_for(lambda: varnish_backends("sick") == set(WEB_SERVERS), timeout=90)
        time.sleep(TRANSCRIPT_TTL + 1)
        status, headers, body = curl(client, path)
        assert status == 200
        assert int(headers["age"]) > TRANSCRIPT_TTL
        assert "<h1>Welcome</h1>" in body  # the room's transcript, not an error page
        # A page that was never cached gets the custom error page.
        status, _, body = curl(client, f"/?never-cached={secrets.token_hex(4)}")
        assert status == 503
        # The release's own 503 page, as site.yml exported it for the balancers and Varnish.
        page = (Path(inventory_variable("site_error_pages_dir", LB)) / "503.html").read_text()
        title = re.search(r"<title>(.*?)</title>", page, re.S)
        assert title and title.group(1).strip() in body
    finally:
        for name in WEB_SERVERS:
            host(name).run_expect([0], "systemctl start uwsgi-emperor")
    assert wait_for(lambda: all(app_answers(name) for name in WEB_SERVERS), timeout=90)
    # From the moment the app answers, Varnish needs `threshold` good probes, one per
    # interval, to call a server healthy; the next request then refreshes the stale copy.
    back = time.monotonic()
    assert wait_for(lambda: int(curl(client, path)[1]["age"]) <= TRANSCRIPT_TTL, timeout=60)
    recovery = time.monotonic() - back
    assert recovery <= probe_recovery_seconds() + 2, recovery
    # One healthy server is enough for a fresh page; the other follows on its own probes.
    assert wait_for(lambda: not varnish_backends("sick"), timeout=90)


def app_answers(name: str) -> bool:
    """Whether the web server's uWSGI answers its health URL (as Varnish's probe asks)."""
    web = host(name)
    return web.run(f"curl -sf -m 2 -o /dev/null {health_url(web)}").rc == 0


def probe_recovery_seconds() -> float:
    """How long Varnish takes at most to call a recovered server healthy: `threshold`
    probes of the window, one per interval, plus a probe's timeout."""
    scenario = Path(__file__).resolve().parents[1]
    interval = float(str(role_setting("varnish", "varnish_probe_interval", scenario)).rstrip("s"))
    timeout = float(str(role_setting("varnish", "varnish_probe_timeout", scenario)).rstrip("s"))
    threshold = int(role_setting("varnish", "varnish_probe_threshold", scenario))
    return threshold * interval + timeout
