"""Shared fixtures. The services are real (run-tests starts them); nothing is mocked."""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from PIL import Image

from chat import events, services
from chat.models import ChatRoom
from ops.cache import FailSafePyLibMCCache


@pytest.fixture(autouse=True)
def _clean_shared_state() -> Iterator[None]:
    """Each test starts with empty Memcached and Redis (sessions, streams, layer)."""
    FailSafePyLibMCCache.reset_breakers()
    cache.clear()
    events.redis_client().flushdb()
    yield
    FailSafePyLibMCCache.reset_breakers()


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    counter = iter(range(1, 10_000))

    def make(username: str | None = None, email: str = "") -> User:
        name = username or f"user{next(counter)}"
        return User.objects.create_user(name, email=email, password="pw-" + name)

    return make


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user("olivia", email="olivia@example.test")


@pytest.fixture
def member(make_user: Callable[..., User]) -> User:
    return make_user("martin")


@pytest.fixture
def stranger(make_user: Callable[..., User]) -> User:
    return make_user("sam")


@pytest.fixture
def room(owner: User, member: User) -> ChatRoom:
    room = services.create_room(owner, "Private talk", is_public=False)
    room.members.add(member)
    return room


@pytest.fixture
def public_room(owner: User, member: User) -> ChatRoom:
    room = services.create_room(owner, "Town square", is_public=True)
    room.members.add(member)
    return room


@pytest.fixture
def login() -> Callable[[User], Client]:
    def make(user: User, **kwargs: Any) -> Client:
        client = Client(**kwargs)
        client.force_login(user)
        return client

    return make


def png_bytes(size: tuple[int, int] = (400, 300), fmt: str = "PNG", noise: bool = False) -> bytes:
    buffer = io.BytesIO()
    if noise:  # incompressible, so the file is as large as the pixels
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, (200, 30, 60))
    image.save(buffer, format=fmt)
    return buffer.getvalue()


class RecordingHandler(BaseHTTPRequestHandler):
    """Stands in for a Varnish node: records PURGE requests."""

    status = 200

    def do_PURGE(self) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Host")))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def purge_servers() -> Iterator[list[ThreadingHTTPServer]]:
    """Two local HTTP servers that accept PURGE (the Varnish hosts of a test)."""
    servers = []
    for _ in range(2):
        server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
        server.requests = []  # type: ignore[attr-defined]
        server.status = 200  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StatsdListener:
    """Receives the statsd UDP packets the app sends (the real statsd client)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.05)

    def drain(self) -> list[str]:
        lines: list[str] = []
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return lines
            lines.extend(data.decode().splitlines())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd_listener() -> Iterator[StatsdListener]:
    port = int(os.environ.get("STATSD_PORT", "8125"))
    listener = StatsdListener(port)
    listener.drain()
    yield listener
    listener.close()


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Worker threads (sync_to_async, the ASGI app) keep database connections; end them
    before pytest-django drops the test database."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
