"""Operations: health, request ids, statsd, error pages, Sentry, settings."""

from __future__ import annotations

import gzip
import io
import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, connections
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client

from chat_site import env
from ops import metrics
from ops.logging import RequestIdFilter

APP_DIR = Path(__file__).resolve().parent.parent


# --- liveness and health -----------------------------------------------------------------


def test_alive_is_plain_text_and_needs_no_valid_host() -> None:
    response = Client().get("/-/alive/", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_health_reports_every_check() -> None:
    response = Client().get("/-/health/", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "migrations", "cache", "redis"}
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db(transaction=True)
def test_health_is_503_naming_the_database_when_it_is_unreachable() -> None:
    from tests.conftest import free_port

    conn = connections["default"]
    real_port = conn.settings_dict["PORT"]
    conn.close()
    conn.settings_dict["PORT"] = str(free_port())  # nothing listens there
    try:
        response = Client().get("/-/health/")
    finally:
        conn.close()
        conn.settings_dict["PORT"] = real_port
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert "database" in body["failing"]
    assert "database" in body["failing_critical"]
    assert "migrations" in body["failing"]
    assert body["checks"]["database"]["ok"] is False
    assert "detail" in body["checks"]["database"]
    assert body["checks"]["redis"]["ok"] is True
    assert Client().get("/-/health/").status_code == 200  # and it recovers


@pytest.mark.django_db
def test_health_is_503_when_a_migration_is_not_applied() -> None:
    MigrationRecorder(connection).migration_qs.filter(app="chat", name="0001_initial").delete()
    response = Client().get("/-/health/")
    assert response.status_code == 503
    assert response.json()["failing"] == ["migrations"]
    assert "chat.0001_initial" in response.json()["checks"]["migrations"]["detail"]


def test_health_is_503_when_redis_is_unreachable(settings, db) -> None:
    from chat import events

    settings.CHAT_EVENTS_REDIS_URL = "redis://127.0.0.1:1/0"
    events.redis_client.cache_clear()
    try:
        response = Client().get("/-/health/")
    finally:
        events.redis_client.cache_clear()
    assert response.status_code == 503
    assert response.json()["failing"] == ["redis"]


# --- request ids, logging, metrics -----------------------------------------------------------


@contextmanager
def captured_log(settings, name: str) -> Iterator[io.StringIO]:
    """The handler, filter and format of the real LOGGING setting, on logger `name`,
    writing to a buffer."""
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"]))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler.stream
    finally:
        logger.removeHandler(handler)


@pytest.mark.django_db
def test_request_id_is_echoed_and_logged(settings) -> None:
    with captured_log(settings, "django.request") as log:
        response = Client().get("/rooms/424242/transcript/", HTTP_X_REQUEST_ID="lb-4f2a-77")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "lb-4f2a-77"
    line = log.getvalue()
    assert "[req:lb-4f2a-77]" in line
    assert "Not Found: /rooms/424242/transcript/" in line
    assert settings.LOGGING["handlers"]["stderr"]["stream"] == "ext://sys.stderr"


@pytest.mark.django_db
def test_every_request_is_logged_once_at_info_with_its_request_id(settings) -> None:
    with captured_log(settings, "ops.request") as log:
        response = Client().get("/accounts/login/", HTTP_X_REQUEST_ID="lb-91c3-05")
    assert response.status_code == 200
    lines = log.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].split()[2] == "INFO"
    assert "[req:lb-91c3-05] GET /accounts/login/ -> 200 in " in lines[0]


def test_invalid_request_id_is_replaced() -> None:
    response = Client().get("/-/alive/")
    assert response.get("X-Request-ID") is None  # health probes skip the middleware
    response = Client().get("/accounts/login/", HTTP_X_REQUEST_ID="bad id with spaces")
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_statsd_gets_view_sql_cache_timings_and_status_counters(statsd_listener) -> None:
    metrics.reset_client()
    Client().get("/")
    Client().get("/no/such/page/")
    lines = statsd_listener.drain()
    names = {line.split(":", 1)[0] for line in lines}
    assert "chat.view.chat.index.GET" in names
    assert "chat.view.unresolved.GET" in names
    assert {"chat.request.total_ms", "chat.request.sql_ms", "chat.request.cache_ms"} <= names
    assert "chat.response.200:1|c" in lines
    assert "chat.response.404:1|c" in lines
    assert any(line.startswith("chat.request.sql_ms:") and line.endswith("|ms") for line in lines)


@pytest.mark.django_db
def test_celery_task_counters(statsd_listener) -> None:
    from chat.tasks import cleanup_denied_requests

    cleanup_denied_requests.delay()
    names = {line.split(":", 1)[0] for line in statsd_listener.drain()}
    prefix = "chat.celery.chat.tasks.cleanup_denied_requests"
    assert {f"{prefix}.started", f"{prefix}.succeeded", f"{prefix}.duration_ms"} <= names


# --- error pages ------------------------------------------------------------------------------


def test_export_error_pages_writes_flat_self_contained_files(tmp_path: Path) -> None:
    call_command("export_error_pages", str(tmp_path / "errors"))
    for code in ("404", "500", "503"):
        html = (tmp_path / "errors" / f"{code}.html").read_text()
        assert html.startswith("<!DOCTYPE html>")
        assert f"ERROR {code}" in html
        assert "<link" not in html
        assert "<script" not in html
        assert "{%" not in html
        raw = (tmp_path / "errors" / f"{code}.http").read_bytes()
        head, body = raw.split(b"\r\n\r\n", 1)
        assert head.startswith(f"HTTP/1.0 {code} ".encode())
        assert f"Content-Length: {len(body)}".encode() in head
        assert body.decode() == html


@pytest.mark.urls("tests.urls_errors")
def test_server_error_uses_the_flat_500_template(db) -> None:
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.text


def test_error_probe_is_for_staff_only_and_raises_with_release_and_request_id(
    settings, make_user, login
) -> None:
    from ops.views import ErrorProbe

    settings.APP_RELEASE = "rel-probe-1"
    anonymous = Client().get("/-/error-probe/")
    assert anonymous.status_code == 302
    assert login(make_user("plainuser")).get("/-/error-probe/").status_code == 302
    staff = make_user("opsstaff")
    staff.is_staff = True
    staff.save()
    with pytest.raises(ErrorProbe, match="release rel-probe-1, request lb-probe-9"):
        login(staff).get("/-/error-probe/", HTTP_X_REQUEST_ID="lb-probe-9")


# --- Sentry ---------------------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_sentry_is_initialised_only_with_a_dsn(settings) -> None:
    import sentry_sdk

    from ops.sentry import init_sentry

    settings.SENTRY_DSN = ""
    assert init_sentry() is False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.SENTRY_DSN = f"http://publickey@127.0.0.1:{server.server_port}/7"
    settings.APP_RELEASE = "rel-2024.1"
    settings.APP_ENVIRONMENT = "testing"
    try:
        assert init_sentry() is True
        sentry_sdk.capture_message("hello from the tests")
        sentry_sdk.flush(timeout=5)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init(dsn=None)
        server.shutdown()
        server.server_close()
    assert server.received, "no event reached the collector"
    path, body = server.received[0]
    assert path.startswith("/api/7/")
    assert b"hello from the tests" in body
    assert b"rel-2024.1" in body
    assert b"testing" in body


# --- settings -------------------------------------------------------------------------------------


def _deploy_env(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environ.update(
        DJANGO_SETTINGS_MODULE="chat_site.settings.deploy",
        ENV_FILE="",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="chat.example.org",
        CSRF_TRUSTED_ORIGINS="https://chat.example.org",
        ADMIN_URL="ops-console/",
        APP_RELEASE="20240101-abcdef",
        APP_ENVIRONMENT="production",
    )
    environ.update(extra)
    return environ


def _manage(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=APP_DIR,
        env=_deploy_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_prints_no_warnings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output
    assert "?:" not in output
    assert "System check identified no issues" in output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 50"),
        ({"ALLOWED_HOSTS": ""}, "Set ALLOWED_HOSTS"),
        ({"ADMIN_URL": "admin/"}, "ADMIN_URL must not be"),
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
    ],
)
def test_deploy_settings_refuse_bad_configuration(override: dict[str, str], message: str) -> None:
    result = _manage("check", **override)
    assert result.returncode != 0
    assert message in result.stderr


def test_database_config_from_url_and_parts(monkeypatch) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgres://app:p%40ss@db.internal:6432/chatdb?sslmode=require"
    )
    config = env.database_config()
    assert (config["USER"], config["PASSWORD"], config["HOST"], config["PORT"], config["NAME"]) == (
        "app",
        "p@ss",
        "db.internal",
        "6432",
        "chatdb",
    )
    assert config["OPTIONS"]["sslmode"] == "require"
    assert config["CONN_HEALTH_CHECKS"] is True
    monkeypatch.setenv("DATABASE_PASSWORD", "from-parts")
    monkeypatch.setenv("DATABASE_CONN_MAX_AGE", "0")
    monkeypatch.setenv("DATABASE_SSLMODE", "verify-full")
    config = env.database_config()
    assert config["PASSWORD"] == "from-parts"
    assert config["CONN_MAX_AGE"] == 0
    assert config["OPTIONS"]["sslmode"] == "verify-full"
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(ImproperlyConfigured):
        env.database_config()


def test_env_helpers(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("X_LIST", "a, b c,,d")
    assert env.env_list("X_LIST") == ["a", "b", "c", "d"]
    assert env.env_list("X_UNSET", ["z"]) == ["z"]
    monkeypatch.setenv("X_INT", "12")
    assert env.env_int("X_INT", 1) == 12
    monkeypatch.setenv("X_INT", "twelve")
    with pytest.raises(ImproperlyConfigured, match="integer"):
        env.env_int("X_INT", 1)
    monkeypatch.setenv("X_BOOL", "Yes")
    assert env.env_bool("X_BOOL", False) is True
    with pytest.raises(ImproperlyConfigured, match="Set the X_REQUIRED"):
        env.env_str("X_REQUIRED")
    dotenv = tmp_path / ".env"
    dotenv.write_text("X_FROM_FILE=file\nX_BOTH=file\n")
    monkeypatch.setenv("X_BOTH", "process")
    monkeypatch.delenv("X_FROM_FILE", raising=False)
    monkeypatch.setenv("ENV_FILE", str(dotenv))
    assert env.load_dotenv_file(tmp_path / "unused") == dotenv
    assert os.environ["X_FROM_FILE"] == "file"
    assert os.environ["X_BOTH"] == "process"  # the real environment wins
    monkeypatch.delenv("X_FROM_FILE")
    monkeypatch.setenv("ENV_FILE", "")
    assert env.load_dotenv_file(dotenv) is None


def test_env_file_is_read_literally_and_overrides_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "# the release's environment\n"
        "HPD_TEST_RELEASE=new\n"
        "HPD_TEST_URL=redis://:p#ss=word@10.0.0.2:6379/0\n"
        "HPD_TEST_QUOTED='kept'\n"
    )
    monkeypatch.setenv("HPD_TEST_RELEASE", "old")
    for name in ("HPD_TEST_URL", "HPD_TEST_QUOTED"):
        monkeypatch.delenv(name, raising=False)
    env.apply_env_file(env_file, override=False)
    assert os.environ["HPD_TEST_RELEASE"] == "old"  # the caller's value wins
    assert os.environ["HPD_TEST_URL"] == "redis://:p#ss=word@10.0.0.2:6379/0"
    assert os.environ["HPD_TEST_QUOTED"] == "'kept'"  # literally, as uWSGI reads it
    env.apply_env_file(env_file, override=True)
    assert os.environ["HPD_TEST_RELEASE"] == "new"  # what a reloaded uWSGI worker does
