#!/usr/bin/env python3
"""A chat user, as a browser would be one: runs inside a test container.

Logs in through the real login form (CSRF token and session cookie), posts over HTTPS and
listens on the WebSocket with the session cookie and the site's Origin. Standard library
plus Debian's python3-websockets, so the client container needs nothing else.

    chatclient.py --base https://web-lb --ca ca.crt ws-roundtrip USER PASSWORD ROOM_ID TEXT
prints a JSON line: {"received": true, "event": {...}, "seconds": 0.12};
    chatclient.py ... ws-listen USER PASSWORD ROOM_ID SECONDS OUTFILE
connects within SECONDS (retrying, as the page's script does), then keeps the socket open
for SECONDS, appending every event to OUTFILE;
    chatclient.py ... journey TOKEN PASSWORD
plays two new users end to end (sign up, create a room, ask to join, admit, chat) and
prints what each step saw, with timings;
    chatclient.py ... get USER PASSWORD PATH
prints the status and X-Request-ID of a page fetched as that user;
    chatclient.py ... login-attempts USER PASSWORD COUNT
submits the login form COUNT times in a row and prints each answer's status, with the
first refusal's Retry-After and page;
    chatclient.py ... flood USER PASSWORD ROOM_ID COUNT
logs in and posts COUNT messages as fast as the site answers; prints each status, with
the first refusal's Retry-After and body;
    chatclient.py ... load USER PASSWORD ROOM_ID STOPFILE [--cached N --pages N
                      --posters N --listeners N --max-seconds S and think times]
runs visitors until STOPFILE exists: anonymous readers of the cached landing page and
transcript, members reloading the room page, members posting messages, and members whose
sockets listen to the room and, when a socket closes, reconnect from their last timepoint
as the browser does. Prints what each kind saw: requests, failures (an error, a timeout,
or a status outside 2xx/3xx), latencies, the messages posted and the ones each listener
received.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from websockets.sync.client import connect


class Session:
    def __init__(self, base: str, ca: str, context: ssl.SSLContext | None = None) -> None:
        self.base = base.rstrip("/")
        self.context = context or ssl.create_default_context(cafile=ca)
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.context),
            urllib.request.HTTPCookieProcessor(self.cookies),
        )

    def share_login(self) -> Session:
        """A new session (its own connections) logged in as this one: many visitors of one
        account without a password hash computed for each of them."""
        other = Session(self.base, "", context=self.context)
        for cookie in self.cookies:
            other.cookies.set_cookie(cookie)
        return other

    def cookie(self, name: str) -> str:
        return next((c.value for c in self.cookies if c.name == name), "")

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=15) as response:
            return response.read().decode()

    def post(self, path: str, fields: dict[str, str], json_reply: bool = False) -> str:
        data = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST")
        request.add_header("Referer", self.base + path)
        request.add_header("X-CSRFToken", self.cookie("csrftoken"))
        if json_reply:
            request.add_header("Accept", "application/json")
        with self.opener.open(request, timeout=15) as response:
            return response.read().decode()

    def login(self, username: str, password: str) -> None:
        page = self.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        self.post(
            "/accounts/login/",
            {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
        )
        assert self.cookie("sessionid"), "login did not set a session cookie"

    def signup(self, username: str, email: str, password: str) -> None:
        page = self.get("/accounts/signup/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "no CSRF token on the sign-up page"
        fields = {"username": username, "email": email, "password1": password}
        fields |= {"password2": password, "csrfmiddlewaretoken": token.group(1)}
        self.post("/accounts/signup/", fields)
        assert self.cookie("sessionid"), "sign-up did not log the new user in"

    def post_form(self, path: str, fields: dict[str, str]) -> tuple[str, str]:
        """POST a form from its page (with the page's CSRF token); returns the final URL
        after redirects, and the page there."""
        page = self.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, f"no CSRF token on {path}"
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token.group(1)}).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST")
        request.add_header("Referer", self.base + path)
        with self.opener.open(request, timeout=15) as response:
            return response.geturl(), response.read().decode()

    def attempt(self, path: str, fields: dict[str, str], json_reply: bool = False) -> dict:
        """POST where a refusal is an expected answer: its status, Retry-After and body."""
        try:
            body = self.post(path, fields, json_reply=json_reply)
            return {"status": 200, "retry_after": None, "body": body}
        except urllib.error.HTTPError as error:
            return {
                "status": error.code,
                "retry_after": error.headers.get("Retry-After"),
                "body": error.read().decode(errors="replace"),
            }

    def websocket(self, path: str, attempts: int = 3):
        """The room's socket; a handshake that times out is tried again, as the page's
        script reconnects."""
        ws_base = self.base.replace("https://", "wss://", 1)
        for attempt in range(1, attempts + 1):
            try:
                return connect(
                    ws_base + path,
                    ssl=self.context,
                    origin=self.base,
                    additional_headers={"Cookie": f"sessionid={self.cookie('sessionid')}"},
                    open_timeout=10,
                )
            except TimeoutError:
                if attempt == attempts:
                    raise
                print(f"websocket {path}: handshake timed out, retrying", file=sys.stderr)
        raise AssertionError("unreachable")


def latest_timepoint(current: str | None, new: str | None) -> str | None:
    """The later of two stream timepoints ("<ms>-<seq>"); either may be missing."""
    if not new or not current:
        return new or current
    return max(current, new, key=lambda timepoint: tuple(map(int, timepoint.split("-"))))


def ws_roundtrip(args: argparse.Namespace) -> dict:
    """Listen on a room's socket, post over HTTPS, report whether the event arrived."""
    session = Session(args.base, args.ca)
    session.login(args.user, args.password)
    found: dict = {}
    with session.websocket(f"/ws/room/{args.room}") as socket:
        started = time.monotonic()

        def listen() -> None:
            while time.monotonic() - started < args.timeout:
                try:
                    event = json.loads(socket.recv(timeout=args.timeout))
                except TimeoutError:
                    return
                if args.text in json.dumps(event):
                    found["event"] = event
                    found["seconds"] = round(time.monotonic() - started, 3)
                    return

        listener = threading.Thread(target=listen)
        listener.start()
        session.post(f"/rooms/{args.room}/messages/", {"message": args.text}, json_reply=True)
        listener.join(args.timeout + 1)
    return {"received": "event" in found, **found}


def ws_listen(args: argparse.Namespace) -> dict:
    """Hold a room's socket open for a while, writing each event to a file as it comes."""
    session = Session(args.base, args.ca)
    session.login(args.user, args.password)
    events = 0
    deadline = time.monotonic() + args.seconds
    # A handshake refused or timed out is retried, as the browser's script does.
    errors: list[str] = []
    while True:
        try:
            socket = session.websocket(f"/ws/room/{args.room}")
            break
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}"[:200])
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    with socket, open(args.out, "a") as out:
        out.write(json.dumps({"connected": True, "failed_attempts": errors}) + "\n")
        out.flush()
        deadline = time.monotonic() + args.seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = socket.recv(timeout=left)
            except TimeoutError:
                break
            out.write(message + "\n")
            out.flush()
            events += 1
    return {"events": events}


class Listener:
    """Collects a socket's events in a thread; wait() finds one and says how long it took."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.events: list[dict] = []
        self.arrived: list[float] = []
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                event = json.loads(self.socket.recv())
            except Exception:  # the socket closed (or the test ended): stop listening
                return
            with self.condition:
                self.events.append(event)
                self.arrived.append(time.monotonic())
                self.condition.notify_all()

    def wait(self, predicate, since: float, timeout: float) -> tuple[dict | None, float | None]:
        deadline = since + timeout
        with self.condition:
            while True:
                for event, at in zip(self.events, self.arrived, strict=True):
                    if predicate(event):
                        return event, round(at - since, 3)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, None
                self.condition.wait(left)


def journey(args: argparse.Namespace) -> dict:
    """Three new users: the owner signs up and creates a public room; the guest signs up
    and asks to join with the room's code; the owner's socket gets the request, the owner
    admits, and a message from the owner reaches the guest's socket. Then a latecomer asks
    to join and is left waiting: the worker mails the owner only about requests still
    pending when it runs, so the guest's (admitted at once) may or may not get a mail,
    while the latecomer's always does."""
    owner_name, guest_name = f"owner{args.token}", f"guest{args.token}"
    latecomer_name = f"late{args.token}"
    owner, guest = Session(args.base, args.ca), Session(args.base, args.ca)
    owner.signup(owner_name, f"{owner_name}@example.test", args.password)
    guest.signup(guest_name, f"{guest_name}@example.test", args.password)
    owner = Session(args.base, args.ca)
    owner.login(owner_name, args.password)  # a fresh login, through the form
    title = f"Stack check {args.token}"
    url, page = owner.post_form("/rooms/new/", {"title": title, "is_public": "on"})
    room = int(re.search(r"/rooms/(\d+)/$", url).group(1))
    code = re.search(r'<code id="join-code">([^<]+)</code>', page).group(1)
    report: dict = {"room": room, "title": title, "owner": owner_name, "guest": guest_name}
    with owner.websocket(f"/ws/room/{room}") as owner_socket:
        owner_events = Listener(owner_socket)
        asked = time.monotonic()
        guest.post_form("/join/", {"code": code})
        event, seconds = owner_events.wait(
            lambda e: (
                e.get("type") == "join_request.created"
                and e["payload"]["user"]["username"] == guest_name
            ),
            asked,
            args.timeout,
        )
        report["join_request_seconds"] = seconds
        assert event is not None, f"no join request event; saw {owner_events.events}"
        request_id = event["payload"]["id"]
        owner.post(f"/rooms/{room}/requests/{request_id}/admit/", {}, json_reply=True)
        with guest.websocket(f"/ws/room/{room}") as guest_socket:
            guest_events = Listener(guest_socket)
            text = f"hello from the owner {args.token}"
            sent = time.monotonic()
            owner.post(f"/rooms/{room}/messages/", {"message": text}, json_reply=True)
            event, seconds = guest_events.wait(lambda e: text in json.dumps(e), sent, args.timeout)
            report["message_seconds"] = seconds
            report["message"] = text
            assert event is not None, f"the guest saw no message; saw {guest_events.events}"
    latecomer = Session(args.base, args.ca)
    latecomer.signup(latecomer_name, f"{latecomer_name}@example.test", args.password)
    latecomer.post_form("/join/", {"code": code})
    report["pending_guest"] = latecomer_name
    return report


def get_page(args: argparse.Namespace) -> dict:
    """GET a page as a logged-in user; report the status and the request id."""
    session = Session(args.base, args.ca)
    session.login(args.user, args.password)
    try:
        with session.opener.open(session.base + args.path, timeout=15) as response:
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as error:
        status, headers = error.code, error.headers
    return {"status": status, "request_id": headers.get("X-Request-ID", "")}


class LoadRun:
    """Shared by the load command's threads: what they did, under one lock."""

    def __init__(self, stopfile: str, max_seconds: float) -> None:
        self.stopfile = stopfile
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.latencies: dict[str, list[float]] = {}
        self.failures: list[dict] = []
        self.posted: list[str] = []
        # Set once the visitors have stopped: listeners then stay a few seconds more, for
        # the events of the last posts.
        self.listen_until: float | None = None

    def running(self) -> bool:
        return time.monotonic() < self.deadline and not os.path.exists(self.stopfile)

    def listening(self) -> bool:
        return self.listen_until is None or time.monotonic() < self.listen_until

    def timed(self, kind: str, call) -> object:
        """Run one request; count it, and record it as failed unless it answered 2xx/3xx."""
        started = time.monotonic()
        result, failure = None, None
        try:
            result = call()
        except urllib.error.HTTPError as error:
            # Where it came from: Varnish stamps X-Varnish on what it answers or passes on.
            tier = "varnish or behind" if "X-Varnish" in error.headers else "the balancer"
            failure = f"HTTP {error.code} from {tier}"
        except Exception as error:  # a refused or reset connection, a timeout
            failure = f"{type(error).__name__}: {error}"
        seconds = time.monotonic() - started
        with self.lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            self.latencies.setdefault(kind, []).append(seconds)
            if failure:
                self.failures.append({"kind": kind, "error": failure, "at": time.time()})
        return result

    def summary(self) -> dict:
        def percentiles(values: list[float]) -> dict:
            ordered = sorted(values)
            pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)  # noqa: E731
            return {"p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1], 3)}

        return {
            "requests": self.requests,
            "failed": len(self.failures),
            "failures": self.failures[:20],
            "latency": {kind: percentiles(v) for kind, v in self.latencies.items() if v},
            "posted": self.posted,
        }


def load(args: argparse.Namespace) -> dict:
    run = LoadRun(args.stopfile, args.max_seconds)
    room_path = f"/rooms/{args.room}/"

    account = Session(args.base, args.ca)
    account.login(args.user, args.password)
    member = account.share_login
    # The posters take turns between the accounts, so no account posts faster than a
    # person would and meets the site's message limit.
    posting_accounts = [account]
    if args.second_user:
        second = Session(args.base, args.ca)
        second.login(args.second_user, args.password)
        posting_accounts.append(second)

    def reader() -> None:
        session = Session(args.base, args.ca)
        transcript = re.search(r'href="(/rooms/[^"]*transcript[^"]*)"', session.get("/"))
        paths = ["/"] + ([transcript.group(1)] if transcript else [])
        while run.running():
            for path in paths:
                run.timed("cached", lambda path=path: session.get(path))
                time.sleep(args.cached_think)

    def page_reader() -> None:
        session = member()
        while run.running():
            run.timed("page", lambda: session.get(room_path))
            time.sleep(args.page_think)

    def poster(number: int) -> None:
        session = posting_accounts[number % len(posting_accounts)].share_login()
        sent = 0
        while run.running():
            text = f"load {args.token} poster {number} message {sent}"
            reply = run.timed(
                "post",
                lambda text=text: session.post(
                    f"{room_path}messages/", {"message": text}, json_reply=True
                ),
            )
            if reply is not None:
                with run.lock:
                    run.posted.append(text)
            sent += 1
            time.sleep(args.post_interval)

    listeners: list[dict] = []
    connected = threading.Semaphore(0)

    def listener() -> None:
        session = member()
        seen: dict = {"received": [], "connects": 0, "resyncs": 0, "errors": []}
        listeners.append(seen)
        # As the room page's script does: from the timepoint the page was rendered at, so
        # nothing posted between the page and the socket's first handshake is missed.
        config = re.search(
            r'<script id="page-config" type="application/json">(.*?)</script>',
            session.get(room_path),
        )
        since = json.loads(config.group(1))["timepoint"] if config else None
        while run.listening():
            query = f"?since={since}" if since else ""
            try:
                with session.websocket(f"/ws/room/{args.room}{query}") as socket:
                    seen["connects"] += 1
                    if seen["connects"] == 1:
                        connected.release()
                    while run.listening():
                        try:
                            event = json.loads(socket.recv(timeout=1))
                        except TimeoutError:
                            continue
                        # The latest timepoint seen, as the page's script keeps it: two web
                        # servers' live events can arrive out of stream order, and resuming
                        # from an earlier one would replay what was already received.
                        since = latest_timepoint(since, event.get("timepoint"))
                        if event.get("type") == "resync":
                            seen["resyncs"] += 1
                        elif event.get("type") == "message.created":
                            seen["received"].append(event["payload"]["message"])
            except Exception as error:  # closed by a restarting server: reconnect
                seen["errors"].append(f"{type(error).__name__}: {error}"[:200])
                time.sleep(0.2)

    threads = [threading.Thread(target=listener) for _ in range(args.listeners)]
    for thread in threads:
        thread.start()
    # Every listener is connected before the first post (a socket opened later is not
    # sent what came before it), unless a minute goes by.
    deadline = time.monotonic() + 60
    for _ in threads:
        connected.acquire(timeout=max(0.0, deadline - time.monotonic()))
    with open(args.stopfile + ".ready", "w") as ready:
        ready.write("started\n")
    threads += [threading.Thread(target=reader) for _ in range(args.cached)]
    threads += [threading.Thread(target=page_reader) for _ in range(args.pages)]
    threads += [threading.Thread(target=poster, args=(n,)) for n in range(args.posters)]
    for thread in threads[args.listeners :]:
        thread.start()
    for thread in threads[args.listeners :]:
        thread.join()
    run.listen_until = time.monotonic() + 5
    for thread in threads[: args.listeners]:
        thread.join()
    return {**run.summary(), "listeners": listeners}


def refusals_summary(answers: list[dict]) -> dict:
    refused = [a for a in answers if a["status"] != 200]
    first = refused[0] if refused else {"retry_after": None, "body": ""}
    return {
        "statuses": [a["status"] for a in answers],
        "retry_after": first["retry_after"],
        "refusal": first["body"][:2000],
    }


def login_attempts(args: argparse.Namespace) -> dict:
    session = Session(args.base, args.ca)
    answers = []
    for _ in range(args.count):
        page = session.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        fields = {"username": args.user, "password": args.password}
        answers.append(
            session.attempt("/accounts/login/", fields | {"csrfmiddlewaretoken": token.group(1)})
        )
    return {**refusals_summary(answers), "logged_in": bool(session.cookie("sessionid"))}


def flood(args: argparse.Namespace) -> dict:
    session = Session(args.base, args.ca)
    session.login(args.user, args.password)
    path = f"/rooms/{args.room}/messages/"
    answers = [
        session.attempt(path, {"message": f"flood {number}"}, json_reply=True)
        for number in range(args.count)
    ]
    return refusals_summary(answers)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    commands = parser.add_subparsers(dest="command", required=True)
    roundtrip = commands.add_parser("ws-roundtrip")
    for name in ("user", "password", "room", "text"):
        roundtrip.add_argument(name)
    listen = commands.add_parser("ws-listen")
    for name in ("user", "password", "room"):
        listen.add_argument(name)
    listen.add_argument("seconds", type=float)
    listen.add_argument("out")
    play = commands.add_parser("journey")
    play.add_argument("token")
    play.add_argument("password")
    page = commands.add_parser("get")
    for name in ("user", "password", "path"):
        page.add_argument(name)
    attempts = commands.add_parser("login-attempts")
    for name in ("user", "password"):
        attempts.add_argument(name)
    attempts.add_argument("count", type=int)
    flooding = commands.add_parser("flood")
    for name in ("user", "password", "room"):
        flooding.add_argument(name)
    flooding.add_argument("count", type=int)
    run = commands.add_parser("load")
    for name in ("user", "password", "room", "stopfile"):
        run.add_argument(name)
    run.add_argument("--token", default="run")
    # Another account (same password) the posters take turns with.
    run.add_argument("--second-user", default="")
    run.add_argument("--cached", type=int, default=20)
    run.add_argument("--pages", type=int, default=20)
    run.add_argument("--posters", type=int, default=5)
    run.add_argument("--listeners", type=int, default=5)
    # Seconds each visitor waits between its requests (0: as fast as the site answers).
    run.add_argument("--cached-think", type=float, default=0.5)
    run.add_argument("--page-think", type=float, default=1.0)
    run.add_argument("--post-interval", type=float, default=1.0)
    run.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    command = {
        "ws-roundtrip": ws_roundtrip,
        "ws-listen": ws_listen,
        "journey": journey,
        "get": get_page,
        "load": load,
        "login-attempts": login_attempts,
        "flood": flood,
    }[args.command]
    print(json.dumps(command(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
