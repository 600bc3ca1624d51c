"""Real servers: uWSGI and Daphne started with the exact commands in README.md, spoken to
with a real HTTP client (http.client) and a real WebSocket client (websockets)."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from django.contrib.auth.hashers import make_password
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.conftest import free_port
from tests.servers import APP_DIR, deploy_environment, readme_command, start, stop, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOST = "chat.example.org"


class Browser:
    """Just enough of a browser: cookies, the proxy headers HAProxy adds, CSRF."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, str] | None = None,
        https: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        all_headers = {"Host": HOST, **(headers or {})}
        if https:
            all_headers["X-Forwarded-Proto"] = "https"
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        payload = None
        if body is not None:
            from urllib.parse import urlencode

            payload = urlencode(body)
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
            all_headers["Referer"] = f"https://{HOST}{path}"
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie(value)
            for key, morsel in cookie.items():
                self.cookies[key] = morsel.value
        result = (response.status, {k.lower(): v for k, v in response.getheaders()}, text)
        conn.close()
        return result

    def csrf_token(self, html: str) -> str:
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert match, "no CSRF token in the page"
        return match.group(1)


def test_uwsgi_and_daphne_serve_the_app_with_the_documented_commands(
    tmp_path: Path, public_room, member
) -> None:
    # The servers run deploy settings, whose hashers do not include the tests' fast MD5.
    member.password = make_password("pw-martin", hasher="pbkdf2_sha256")
    member.save(update_fields=["password"])
    http_port, asgi_port, stats_port = free_port(), free_port(), free_port()
    environ = deploy_environment(
        STATIC_ROOT=str(tmp_path / "static"),
        UWSGI_BIND=f"127.0.0.1:{http_port}",
        UWSGI_PROCESSES="2",
        UWSGI_STATS=f"127.0.0.1:{stats_port}",
        ASGI_PORT=str(asgi_port),
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=APP_DIR,
        env=environ,
        check=True,
        timeout=120,
    )
    uwsgi_log, daphne_log = tmp_path / "uwsgi.log", tmp_path / "daphne.log"
    uwsgi = start(readme_command("uwsgi"), environ, uwsgi_log)
    daphne = start(readme_command("asgi"), environ, daphne_log)
    try:
        wait_for_port(http_port, uwsgi, uwsgi_log)
        wait_for_port(asgi_port, daphne, daphne_log)
        browser = Browser(http_port)

        # Balancer probes: plain HTTP, by address.
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=20)
        conn.request("GET", "/-/alive/")
        alive = conn.getresponse()
        assert (alive.status, alive.read()) == (200, b"ok\n")
        conn.request("GET", "/-/health/")
        health = conn.getresponse()
        assert health.status == 200, health.read()
        assert json.loads(health.read())["status"] == "ok"
        conn.close()

        # HTTPS is enforced (HAProxy terminates TLS and says so in X-Forwarded-Proto).
        status, headers, _ = browser.request("GET", "/", https=False)
        assert status == 301
        assert headers["location"] == f"https://{HOST}/"

        # The public front page, its hashed static file (served by uWSGI) and the request id.
        status, headers, html = browser.request("GET", "/", headers={"X-Request-ID": "smoke-1"})
        assert status == 200
        assert "Town square" in html
        assert "public" in headers["cache-control"]
        assert "set-cookie" not in headers
        assert headers["x-request-id"] == "smoke-1"
        assert "strict-transport-security" in headers
        css = re.search(r'href="(/static/chat/site\.[0-9a-f]{12}\.css)"', html)
        assert css, "ManifestStaticFilesStorage did not hash the stylesheet"
        assert browser.request("GET", css.group(1))[0] == 200

        # Log in through uWSGI.
        status, _, html = browser.request("GET", "/accounts/login/")
        assert status == 200
        assert "csrftoken" in browser.cookies
        status, headers, _ = browser.request(
            "POST",
            "/accounts/login/",
            {
                "username": "martin",
                "password": "pw-martin",
                "csrfmiddlewaretoken": browser.csrf_token(html),
            },
        )
        assert status == 302, headers
        assert "sessionid" in browser.cookies
        status, headers, room_html = browser.request("GET", f"/rooms/{public_room.pk}/")
        assert status == 200
        assert "private" in headers["cache-control"]
        config = json.loads(
            re.search(
                r'<script id="page-config" type="application/json">(.*?)</script>', room_html
            ).group(1)
        )

        # A WebSocket through Daphne with the session from uWSGI: a message posted over
        # HTTP arrives on the socket.
        ws_url = f"ws://127.0.0.1:{asgi_port}/ws/room/{public_room.pk}?since={config['timepoint']}"
        cookie = f"sessionid={browser.cookies['sessionid']}"
        with ws_connect(
            ws_url, origin=f"https://{HOST}", additional_headers={"Cookie": cookie}
        ) as ws:
            status, _, _ = browser.request(
                "POST",
                f"/rooms/{public_room.pk}/messages/",
                {"message": "over the wire", "csrfmiddlewaretoken": browser.csrf_token(room_html)},
            )
            assert status == 303
            frame = json.loads(ws.recv(timeout=10))
            assert frame["type"] == "message.created"
            assert frame["payload"]["message"] == "over the wire"
            assert frame["payload"]["sender"] == "martin"

        # Without a session the socket is closed with 4401.
        with ws_connect(ws_url, origin=f"https://{HOST}") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401
    finally:
        stop(uwsgi)
        stop(daphne)
    log = uwsgi_log.read_text(errors="replace")
    assert "spawned uWSGI worker 2" in log
    assert "WSGI app 0 (mountpoint='') ready" in log
