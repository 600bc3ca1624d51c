"""Locust user journeys of the load test (issue 15): anonymous readers, members who chat in
the load-test room, and newcomers who ask to join it.

    LOADTEST_SITE_URL=https://localhost:8443 LOADTEST_SEED=reports/loadtest/seed.json \\
    LOADTEST_PASSWORD=... LOADTEST_WS_REPORT=reports/loadtest/ws.json \\
    locust -f loadtest/locustfile.py --headless -u 30 -r 30 -t 60s \\
        --csv reports/loadtest/locust --csv-full-history [Reader Member Newcomer]

playbooks/loadtest.yml runs it after `manage seed_loadtest` (which prints the seed JSON:
room, paths, join code, account names). Environment:

    LOADTEST_SITE_URL   the site's public URL: the Host header, Origin and Referer
    LOADTEST_CONNECT    optional address to connect to instead of resolving the URL's host
                        (https://<address>:<port>, Host: the URL's host); TLS is then not
                        verified, there being no name to check
    LOADTEST_CONNECT_PORT  the port at that address (default: the URL's): the balancer's own
                        HTTPS port where the URL's is a forwarded one
    LOADTEST_CA         optional CA bundle to verify TLS with when LOADTEST_CONNECT is empty
    LOADTEST_SEED       path of the JSON printed by `manage seed_loadtest`
    LOADTEST_PASSWORD   the load-test accounts' password
    LOADTEST_WS_REPORT  where the WebSocket delivery summary is written at test stop
    LOADTEST_USERS      optional class weights, e.g. "Reader=20,Member=8,Newcomer=2": with
                        `-u` their sum, Locust runs exactly that many of each
    LOADTEST_FAILURES_FILE  optional: where the run's timeline is written at test stop (every
                        failure with its time, name and status or exception; requests per
                        second and name; every accepted post's token), for the fault drills
                        (loadtest/timeline.py says its format)
    LOADTEST_MARKER     optional text added to every post after its token, so a run's
                        messages can be counted in the database (the drills name their run)
    LOADTEST_STOP_FILE  optional: the run ends as at its --run-time once this file appears
                        (the drills end their load a set time after the stack recovers)

Journeys, and the names of their requests in Locust's statistics:
    Reader    anonymous; "GET /" and "GET transcript" (the cached public pages), 1-3 s apart.
    Member    logs in as loadtest-member-K (round robin) through the login form ("GET login
              page", "POST login"), loads the room ("GET room page") and opens its WebSocket
              ("WS connect"; after a close "WS reconnect", from the last timepoint seen, as the
              page's script does; after a "resync" frame, from the timepoint of the room page it
              reads, whose messages count as delivered); then reloads the room page every 1-3 s
              and posts a message every 10-15 s ("POST message"). Each message carries a
              unique token; every socket that receives it records its delivery latency, from
              the moment the post was sent, as "message delivered" (type WS).
    Newcomer  logs in as loadtest-newcomer-K, loads "GET home" and now and then asks to join
              the room with its code ("POST join").
A 429 answer (the site's rate limits; the whole load comes from one address) to a post or a
join is the site working as designed: it is counted as a success under "POST message (429
rate limited)" or "POST join (429 rate limited)", and the user waits for its Retry-After.
Any other unexpected status, a timeout or a connection error is a failure.

Nothing lost: a post the site accepted must reach every socket that was connected when the
answer came and had started from a room page loaded before the post was sent (live, or
replayed after a reconnect). Each Member waits up to 3 s for its pending tokens when it
stops; LOADTEST_WS_REPORT then says how many deliveries were expected, made and lost, with
the latency percentiles:
    {"posted", "rate_limited", "listeners", "expected_deliveries", "delivered", "lost",
     "reconnects", "duplicates", "resyncs", "latency_ms": {"p50", "p95", "p99", "max"},
     "lost_examples": [{"token", "listener"}, ...]}
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import math
import os
import random
import re
import socket
import ssl
import struct
import sys
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
import websocket
from locust import HttpUser, between, events, task
from locust.clients import ResponseContextManager

# Locust puts the locustfile's folder on sys.path: the timeline is a module of its own,
# unit-tested without Locust.
from timeline import Timeline
from timeline import message_text as marked_text

# After locust, which monkey-patches ssl for gevent: urllib3 imports names from ssl.
from urllib3 import disable_warnings
from urllib3.exceptions import InsecureRequestWarning

logger = logging.getLogger("loadtest")

SESSION_COOKIE = "sessionid"
CSRF_COOKIE = "csrftoken"
# Seconds before a request or a socket handshake counts as failed.
REQUEST_TIMEOUT = 30
# Members post about every POST_INTERVAL seconds (a person chatting, well under the
# per-account limit); the first post comes within the first interval.
POST_INTERVAL = (10.0, 15.0)
# Seconds a stopping Member waits for the tokens its socket has yet to receive.
DRAIN_SECONDS = 3.0
# Close codes after which the page's script does not reconnect (app/chat/consumers.py).
FINAL_CLOSE_CODES = frozenset({4400, 4401, 4403, 4404})
# What a 429 costs when its Retry-After is missing or unreadable.
DEFAULT_RETRY_AFTER = 10.0

CSRF_FIELD_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
PAGE_CONFIG_RE = re.compile(
    r'<script id="page-config" type="application/json">(.*?)</script>', re.DOTALL
)
TOKEN_RE = re.compile(r"\bload test ([0-9a-f]{16})\b")

OK, LIMITED, FAILED = "ok", "limited", "failed"


# --- configuration ------------------------------------------------------------------------


class ConfigError(Exception):
    """The environment does not say what to test."""


@dataclass(frozen=True)
class Site:
    """Where requests go and what they name."""

    url: str  # the public origin, e.g. https://localhost:8443 (Origin and Referer)
    base: str  # the origin requests are sent to (the URL's, or the connect address's)
    host_header: str | None  # sent as Host when connecting by address
    ca: str = ""  # a CA bundle to verify with ("" for the system's store)

    @property
    def verify(self) -> bool | str:
        """requests' ``verify``: no name to check when connecting by address."""
        if self.host_header is not None:
            return False
        return self.ca or True

    def ws_url(self, path: str) -> str:
        return self.base.replace("http", "ws", 1) + path

    @cached_property
    def tls_context(self) -> ssl.SSLContext | None:
        if not self.base.startswith("https:"):
            return None
        context = ssl.create_default_context(cafile=self.ca or None)
        if self.host_header is not None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def open_socket(self, timeout: float) -> socket.socket:
        """A TCP (and TLS) connection to the site for a WebSocket: made here rather than by
        websocket-client, which would follow proxy variables in the environment (requests
        does not: Locust turns trust_env off)."""
        parts = urlsplit(self.base)
        hostname = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock = socket.create_connection((hostname, port), timeout=timeout)
        if self.tls_context is None:
            return sock
        # SNI as urllib3 sends it: the name connected to, none for an address.
        server_hostname = None if is_ip_address(hostname) else hostname
        try:
            return self.tls_context.wrap_socket(sock, server_hostname=server_hostname)
        except BaseException:
            sock.close()
            raise


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def site_from(url: str, connect: str = "", ca: str = "", connect_port: str = "") -> Site:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"LOADTEST_SITE_URL must be an http(s) URL, not {url!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    connect = connect.strip()
    if not connect:
        return Site(url=origin, base=origin, host_header=None, ca=ca.strip())
    port = connect_port.strip() or parts.port or (443 if parts.scheme == "https" else 80)
    address = f"[{connect}]" if ":" in connect else connect
    return Site(
        url=origin, base=f"{parts.scheme}://{address}:{port}", host_header=parts.netloc, ca=""
    )


@dataclass(frozen=True)
class Config:
    site: Site
    seed: dict[str, Any]
    password: str
    ws_report: str
    failures_file: str = ""
    marker: str = ""
    stop_file: str = ""

    @property
    def room_path(self) -> str:
        return str(self.seed["room_path"])


SEED_KEYS = ("room", "room_path", "transcript", "join_code", "members", "newcomers")


def load_config(environ: dict[str, str] | os._Environ[str]) -> Config:
    url = environ.get("LOADTEST_SITE_URL", "")
    seed_path = environ.get("LOADTEST_SEED", "")
    if not url or not seed_path:
        raise ConfigError("LOADTEST_SITE_URL and LOADTEST_SEED must be set (see the docstring)")
    site = site_from(
        url,
        environ.get("LOADTEST_CONNECT", ""),
        environ.get("LOADTEST_CA", ""),
        environ.get("LOADTEST_CONNECT_PORT", ""),
    )
    try:
        seed = json.loads(Path(seed_path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the seed {seed_path}: {error}") from None
    missing = [key for key in SEED_KEYS if key not in seed]
    if missing:
        raise ConfigError(f"the seed {seed_path} lacks {', '.join(missing)}")
    if not seed["members"]:
        raise ConfigError(f"the seed {seed_path} has no member accounts")
    return Config(
        site=site,
        seed=seed,
        password=environ.get("LOADTEST_PASSWORD", ""),
        ws_report=environ.get("LOADTEST_WS_REPORT", ""),
        failures_file=environ.get("LOADTEST_FAILURES_FILE", ""),
        marker=environ.get("LOADTEST_MARKER", ""),
        stop_file=environ.get("LOADTEST_STOP_FILE", ""),
    )


def parse_weights(value: str) -> dict[str, int]:
    """ "Reader=20,Member=8" -> {"Reader": 20, "Member": 8}."""
    weights: dict[str, int] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        name, _, number = item.partition("=")
        try:
            weights[name.strip()] = int(number)
        except ValueError:
            raise ConfigError(f"LOADTEST_USERS: {item!r} is not Class=count") from None
    return weights


@cache
def config() -> Config:
    """The environment's configuration, read once per process."""
    return load_config(os.environ)


# --- pure helpers -------------------------------------------------------------------------


def csrf_form_token(page: str) -> str | None:
    match = CSRF_FIELD_RE.search(page)
    return match.group(1) if match else None


def page_timepoint(page: str) -> str | None:
    """The timepoint a room page was rendered at (its page-config), as its script reads it."""
    match = PAGE_CONFIG_RE.search(page)
    if not match:
        return None
    try:
        value = json.loads(match.group(1)).get("timepoint")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and parse_timepoint(value) else None


def parse_timepoint(value: object) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    ms, dash, seq = value.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit():
        return None
    return int(ms), int(seq)


def later_timepoint(current: str | None, new: object) -> str | None:
    """The later of two stream timepoints: live events from two servers can arrive out of
    stream order, and resuming from the earlier one would replay what was received."""
    new_value = parse_timepoint(new)
    if new_value is None:
        return current
    current_value = parse_timepoint(current)
    if current_value is None or new_value > current_value:
        return str(new)
    return current


def ws_path(room: int, since: str | None) -> str:
    return f"/ws/room/{room}" + (f"?since={since}" if since else "")


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before reconnecting: exponential with full jitter, as sockets.js waits."""
    return rng() * min(30.0, 0.5 * 2**attempt)


def close_code(data: bytes) -> int | None:
    return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def message_text(token: str, marker: str = "") -> str:
    return marked_text(token, marker)


def token_of(text: str) -> str | None:
    match = TOKEN_RE.search(text)
    return match.group(1) if match else None


def retry_after_seconds(value: str | None) -> float:
    try:
        return max(1.0, float(value or ""))
    except ValueError:
        return DEFAULT_RETRY_AFTER


def outcome(status: int, expected: Collection[int], limitable: bool) -> str:
    if status in expected:
        return OK
    if limitable and status == 429:
        return LIMITED
    return FAILED


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles, in the unit of ``values``."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": rank(1.0)}


def pick(names: list[str], counter: itertools.count[int]) -> str:
    """Round robin over the seed's accounts, shared by every user of a class."""
    return names[next(counter) % len(names)]


# --- delivery bookkeeping -----------------------------------------------------------------


@dataclass
class Listener:
    """One Member's room socket, over its reconnects."""

    ident: int
    account: str
    # Posts sent from this moment on are after the timepoint the socket started from (the
    # room page was rendered before it), so the socket must receive them.
    covered_since: float
    connected: bool = False
    received: dict[str, float] = field(default_factory=dict)


@dataclass
class Post:
    sent: float
    accepted: float | None = None
    expected: frozenset[int] = frozenset()


class Deliveries:
    """Every post, every socket and what each received. Greenlets only switch on I/O, and
    none happens in here, so no lock is needed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.posts: dict[str, Post] = {}
        self.listeners: dict[int, Listener] = {}
        self.rate_limited = 0
        self.reconnects = 0
        self.duplicates = 0
        self.resyncs = 0
        self.latencies_ms: list[float] = []

    def add_listener(self, account: str, covered_since: float) -> Listener:
        listener = Listener(len(self.listeners) + 1, account, covered_since)
        self.listeners[listener.ident] = listener
        return listener

    def sending(self, token: str) -> None:
        self.posts[token] = Post(sent=self.clock())

    def accepted(self, token: str) -> None:
        """The site answered 2xx: the sockets connected now must all get the token."""
        post = self.posts[token]
        post.accepted = self.clock()
        post.expected = frozenset(
            listener.ident
            for listener in self.listeners.values()
            if listener.covered_since <= post.sent
            and (listener.connected or token in listener.received)
        )

    def refused(self, token: str, *, limited: bool) -> None:
        self.posts.pop(token, None)
        if limited:
            self.rate_limited += 1

    def received(self, listener: Listener, token: str) -> float | None:
        """Record a token's arrival; its latency in ms, or None (not ours, or a repeat)."""
        post = self.posts.get(token)
        if post is None:
            return None
        if token in listener.received:
            self.duplicates += 1
            return None
        now = self.clock()
        listener.received[token] = now
        latency = (now - post.sent) * 1000
        self.latencies_ms.append(latency)
        return latency

    def pending(self, listener: Listener) -> list[str]:
        return [
            token
            for token, post in self.posts.items()
            if listener.ident in post.expected and token not in listener.received
        ]

    def summary(self) -> dict[str, Any]:
        accepted = {t: p for t, p in self.posts.items() if p.accepted is not None}
        expected = sum(len(post.expected) for post in accepted.values())
        lost = [
            {"token": token, "listener": self.listeners[ident].account}
            for token, post in accepted.items()
            for ident in sorted(post.expected)
            if token not in self.listeners[ident].received
        ]
        return {
            "posted": len(accepted),
            "rate_limited": self.rate_limited,
            "listeners": len(self.listeners),
            "expected_deliveries": expected,
            "delivered": expected - len(lost),
            "lost": len(lost),
            "reconnects": self.reconnects,
            "duplicates": self.duplicates,
            "resyncs": self.resyncs,
            "latency_ms": percentiles(self.latencies_ms),
            "lost_examples": lost[:10],
        }


DELIVERIES = Deliveries()
TIMELINE = Timeline()
OPEN_SOCKETS: set[RoomSocket] = set()


def fire(request_type: str, name: str, response_time: float, length: int = 0, error=None) -> None:
    events.request.fire(
        request_type=request_type,
        name=name,
        response_time=response_time,
        response_length=length,
        exception=error,
        context={},
    )


def judge(
    response: ResponseContextManager, expected: Collection[int], limited_name: str | None = None
) -> str:
    """Mark a response caught with catch_response: expected status, a 429 (counted under its
    own name when the action has one), or a failure."""
    result = outcome(response.status_code, expected, limitable=limited_name is not None)
    if result == LIMITED and limited_name is not None:
        response.request_meta["name"] = limited_name  # type: ignore[index]
    if result == FAILED:
        response.failure(describe(response))
    else:
        response.success()
    return result


def ws_error(error: Exception) -> Exception:
    """A handshake's failure, worded the same each time (Locust groups failures by their
    text; websocket-client's include the answer's date and body)."""
    status = getattr(error, "status_code", None)
    if isinstance(error, websocket.WebSocketBadStatusException) and status:
        return Exception(f"handshake answered HTTP {status}")
    return Exception(f"{type(error).__name__}: {error}"[:200])


def describe(response: ResponseContextManager) -> str:
    if response.error is not None:
        return f"{type(response.error).__name__}: {response.error}"
    location = response.headers.get("Location")
    where = f" to {urlsplit(location).path}" if location else ""
    return f"HTTP {response.status_code}{where}"


# --- the room's WebSocket -------------------------------------------------------------------


class RoomSocket:
    """A Member's socket on the room, as app/chat/static/chat/sockets.js keeps it: reconnects
    with backoff from the last timepoint seen; a final close code ends it."""

    def __init__(self, user: Member, listener: Listener, since: str | None) -> None:
        self.user = user
        self.listener = listener
        self.since = since
        self.ws: websocket.WebSocket | None = None
        self.opened = 0
        self.attempt = 0
        self.stopped = False
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.open()
        self.greenlet = gevent.spawn(self.run)
        OPEN_SOCKETS.add(self)

    def open(self) -> bool:
        name = "WS reconnect" if self.opened else "WS connect"
        site = self.user.site
        cookie = self.user.client.cookies.get(SESSION_COOKIE, "")
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(
                site.ws_url(ws_path(self.user.room, self.since)),
                timeout=REQUEST_TIMEOUT,
                socket=site.open_socket(REQUEST_TIMEOUT),
                host=site.host_header,
                origin=site.url,
                cookie=f"{SESSION_COOKIE}={cookie}",
                redirect_limit=0,
            )
        except (websocket.WebSocketException, OSError) as error:
            fire("WS", name, (time.perf_counter() - started) * 1000, error=ws_error(error))
            return False
        fire("WS", name, (time.perf_counter() - started) * 1000)
        ws.settimeout(None)  # events come when people post: wait for them
        self.ws = ws
        self.opened += 1
        self.attempt = 0
        if self.opened > 1:
            DELIVERIES.reconnects += 1
        self.listener.connected = True
        return True

    def run(self) -> None:
        while not self.stopped:
            if self.ws is None:
                gevent.sleep(backoff_delay(self.attempt))
                self.attempt += 1
                if not self.stopped:
                    self.open()
                continue
            try:
                opcode, data = self.ws.recv_data()
            except (websocket.WebSocketException, OSError):
                self.drop()
                continue
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.drop()
                code = close_code(data)
                if code in FINAL_CLOSE_CODES:
                    # Closed for good (logged out, no access): the page's script gives up.
                    fire("WS", "WS connect", 0, error=Exception(f"closed with code {code}"))
                    self.stopped = True
            elif opcode == websocket.ABNF.OPCODE_TEXT:
                self.handle(data)

    def handle(self, data: bytes | str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        self.since = later_timepoint(self.since, event.get("timepoint"))
        if event.get("type") == "resync":
            DELIVERIES.resyncs += 1
            self.reload()
        elif event.get("type") == "message.created":
            payload = event.get("payload")
            text = payload.get("message", "") if isinstance(payload, dict) else ""
            token = token_of(str(text))
            latency = DELIVERIES.received(self.listener, token) if token else None
            if latency is not None:
                fire("WS", "message delivered", latency, length=len(data))

    def reload(self) -> None:
        """What the page's script does on ``resync``: reload the room page (the messages it
        shows count as delivered, late) and reconnect from that page's timepoint."""
        self.drop()
        page = self.user.page(self.user.room_path, "GET room page")
        if page is None:
            return  # reconnects from the last timepoint seen, and is told to resync again
        for token in TOKEN_RE.findall(page):
            latency = DELIVERIES.received(self.listener, token)
            if latency is not None:
                fire("WS", "message delivered", latency)
        self.since = page_timepoint(page) or self.since

    def drop(self) -> None:
        self.listener.connected = False
        if self.ws is not None:
            self.ws.shutdown()
            self.ws = None

    def drain(self, seconds: float) -> None:
        """Wait (up to ``seconds``) for the tokens this socket has yet to receive."""
        deadline = time.monotonic() + seconds
        while DELIVERIES.pending(self.listener) and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def stop(self) -> None:
        self.stopped = True
        self.listener.connected = False
        if self.greenlet is not None:
            self.greenlet.kill(block=True)
        if self.ws is not None:
            try:
                self.ws.close(timeout=1)
            except (websocket.WebSocketException, OSError):
                self.ws.shutdown()
            self.ws = None
        OPEN_SOCKETS.discard(self)


# --- the journeys -------------------------------------------------------------------------


class SiteUser(HttpUser):
    """What every journey shares: the site, its Host header and TLS check, and the login."""

    abstract = True
    accounts_key = ""  # the seed's list of accounts this journey logs in with
    turns: itertools.count[int] = itertools.count()

    def on_start(self) -> None:
        cfg = config()
        self.site = cfg.site
        self.seed = cfg.seed
        self.room = int(cfg.seed["room"])
        self.room_path = cfg.room_path
        self.password = cfg.password
        self.client.verify = cfg.site.verify
        if cfg.site.host_header is not None:
            self.client.headers["Host"] = cfg.site.host_header
        self.account = pick(cfg.seed[self.accounts_key], self.turns) if self.accounts_key else ""
        self.logged_in = False

    def page(self, path: str, name: str) -> str | None:
        """GET a page that must answer 200 (a redirect is a failure: to the login page, it
        means the session was lost); its text, or None."""
        with self.client.get(
            path, name=name, catch_response=True, allow_redirects=False, timeout=REQUEST_TIMEOUT
        ) as response:
            result = judge(response, (200,))
        if result != OK and response.status_code == 302:
            self.logged_in = False
        return response.text if result == OK else None

    def log_in(self) -> bool:
        """Through the login form, as a person would: its CSRF token, then the POST."""
        self.client.cookies.clear()
        page = self.page("/accounts/login/", "GET login page")
        token = csrf_form_token(page) if page is not None else None
        if token is None:
            return False
        fields = {"username": self.account, "password": self.password}
        with self.client.post(
            "/accounts/login/",
            data={**fields, "csrfmiddlewaretoken": token},
            headers={"Referer": self.site.url + "/accounts/login/"},
            name="POST login",
            catch_response=True,
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        ) as response:
            # A wrong password answers 200 (the form again); a success redirects.
            if response.status_code == 302 and self.client.cookies.get(SESSION_COOKIE):
                response.success()
                self.logged_in = True
            else:
                response.failure(describe(response))
        return self.logged_in

    def form_headers(self, referer_path: str, **extra: str) -> dict[str, str]:
        return {
            "Referer": self.site.url + referer_path,
            "X-CSRFToken": self.client.cookies.get(CSRF_COOKIE, ""),
            **extra,
        }


class Reader(SiteUser):
    """An anonymous visitor of the cached public pages."""

    weight = 20
    wait_time = between(1, 3)

    @task
    def index(self) -> None:
        self.page("/", "GET /")

    @task
    def transcript(self) -> None:
        self.page(str(self.seed["transcript"]), "GET transcript")


class Member(SiteUser):
    """A member of the room: reads it, listens to it, and posts now and then."""

    weight = 8
    wait_time = between(1, 3)
    accounts_key = "members"
    turns = itertools.count()

    def on_start(self) -> None:
        super().on_start()
        self.socket: RoomSocket | None = None
        self.next_post = time.monotonic() + random.uniform(0, POST_INTERVAL[1])  # noqa: S311
        self.ready()

    def ready(self) -> bool:
        """Logged in, with the room's socket open (or reconnecting): what the journey needs
        before it reads and posts. Tried again on the next task after a failure."""
        if not self.logged_in and not self.log_in():
            return False
        if self.socket is not None and self.socket.stopped:
            self.socket.stop()  # closed for good (e.g. logged out): start again, as a reload
            self.socket = None
        if self.socket is None:
            page = self.page(self.room_path, "GET room page")
            if page is None:
                return False
            # The page's timepoint was taken before this moment: anything posted from now
            # on must reach the socket, live or replayed.
            listener = DELIVERIES.add_listener(self.account, covered_since=time.monotonic())
            self.socket = RoomSocket(self, listener, page_timepoint(page))
            self.socket.start()
        return True

    @task
    def chat(self) -> None:
        if not self.ready():
            return
        if time.monotonic() < self.next_post:
            self.page(self.room_path, "GET room page")
            return
        token = new_token()
        DELIVERIES.sending(token)
        with self.client.post(
            self.room_path + "messages/",
            data={"message": message_text(token, config().marker)},
            headers=self.form_headers(self.room_path, Accept="application/json"),
            name="POST message",
            catch_response=True,
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        ) as response:
            result = judge(response, (201,), limited_name="POST message (429 rate limited)")
            # Before any other greenlet runs: which sockets were connected at acceptance.
            if result == OK:
                DELIVERIES.accepted(token)
                TIMELINE.post_accepted(token)
            else:
                DELIVERIES.refused(token, limited=result == LIMITED)
        wait = random.uniform(*POST_INTERVAL)  # noqa: S311 - think times, not secrets
        if result == LIMITED:
            wait = max(wait, retry_after_seconds(response.headers.get("Retry-After")))
        elif response.status_code == 302:
            self.logged_in = False
        self.next_post = time.monotonic() + wait

    def on_stop(self) -> None:
        if self.socket is not None:
            self.socket.drain(DRAIN_SECONDS)
            self.socket.stop()


class Newcomer(SiteUser):
    """Someone with an account who is not in the room: looks at their home page and asks
    to join the room with its code now and then."""

    weight = 2
    wait_time = between(2, 5)
    accounts_key = "newcomers"
    turns = itertools.count()

    def on_start(self) -> None:
        super().on_start()
        if not self.seed["newcomers"]:
            raise ConfigError("the seed has no newcomer accounts (seed_loadtest --newcomers)")
        self.join_after = 0.0
        self.log_in()

    @task(9)
    def home(self) -> None:
        if self.logged_in or self.log_in():
            self.page("/home/", "GET home")

    @task(1)
    def join(self) -> None:
        if time.monotonic() < self.join_after:  # told to come back later: do so
            self.home()
            return
        if not self.logged_in and not self.log_in():
            return
        with self.client.post(
            "/join/",
            data={
                "code": self.seed["join_code"],
                "csrfmiddlewaretoken": self.client.cookies.get(CSRF_COOKIE, ""),
            },
            headers=self.form_headers("/home/"),
            name="POST join",
            catch_response=True,
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        ) as response:
            # A request made (or already pending) redirects home; a member goes to the room.
            result = judge(response, (302,), limited_name="POST join (429 rate limited)")
            if result == OK and urlsplit(response.headers.get("Location", "")).path.startswith(
                "/accounts/login/"
            ):
                response.failure("HTTP 302 to /accounts/login/")
                self.logged_in = False
        if result == LIMITED:
            self.join_after = time.monotonic() + retry_after_seconds(
                response.headers.get("Retry-After")
            )


# --- test lifecycle ------------------------------------------------------------------------


@events.init.add_listener
def on_init(environment: Any, **_: Any) -> None:
    """Check the configuration before any user starts, and apply LOADTEST_USERS."""
    try:
        cfg = config()
        weights = parse_weights(os.environ.get("LOADTEST_USERS", ""))
    except ConfigError as error:
        logger.error("loadtest: %s", error)
        sys.exit(2)
    for user_class in (Reader, Member, Newcomer):
        user_class.host = cfg.site.base
        if weights.get(user_class.__name__, 0) > 0:
            user_class.weight = weights[user_class.__name__]
    if cfg.site.host_header is not None:
        # Connecting by address: the certificate cannot be checked, say it once, not per request.
        disable_warnings(InsecureRequestWarning)


@events.test_start.add_listener
def on_test_start(environment: Any, **_: Any) -> None:
    DELIVERIES.reset()
    TIMELINE.start()
    if config().stop_file:
        gevent.spawn(quit_when_present, environment, Path(config().stop_file))


def quit_when_present(environment: Any, stop_file: Path) -> None:
    """End the run the way --run-time does once ``stop_file`` exists."""
    while not stop_file.exists():
        gevent.sleep(0.5)
    logger.info("loadtest: %s appeared, ending the run", stop_file)
    environment.runner.quit()


@events.request.add_listener
def on_request(
    request_type: str,
    name: str,
    response_time: float | None,
    exception: object = None,
    response: Any = None,
    **_: Any,
) -> None:
    """Every request into the timeline, when the drills asked for it."""
    if config().failures_file:
        status = getattr(response, "status_code", None)
        TIMELINE.request(request_type, name, response_time, status, exception)


@events.test_stop.add_listener
def on_test_stop(**_: Any) -> None:
    """Members have stopped (each waited for its pending tokens): close what is left, then
    write the delivery summary."""
    for room_socket in list(OPEN_SOCKETS):
        room_socket.stop()
    summary = DELIVERIES.summary()
    logger.info(
        "WebSocket deliveries: %d posted, %d expected, %d delivered, %d lost; latency %s ms",
        summary["posted"],
        summary["expected_deliveries"],
        summary["delivered"],
        summary["lost"],
        summary["latency_ms"],
    )
    report = config().ws_report
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(summary, indent=2) + "\n")
    if config().failures_file:
        TIMELINE.write(config().failures_file)
