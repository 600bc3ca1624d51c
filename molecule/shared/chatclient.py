#!/usr/bin/env python3
"""A chat user, as a browser would be one: runs inside a test container.

Logs in through the real login form (CSRF token and session cookie), posts over HTTPS and
listens on the WebSocket with the session cookie and the site's Origin. Standard library
plus Debian's python3-websockets, so the client container needs nothing else.

    chatclient.py --base https://web-lb --ca ca.crt ws-roundtrip USER PASSWORD ROOM_ID TEXT
prints a JSON line: {"received": true, "event": {...}, "seconds": 0.12};
    chatclient.py ... ws-listen USER PASSWORD ROOM_ID SECONDS OUTFILE
keeps the socket open for SECONDS, appending every event to OUTFILE.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request

from websockets.sync.client import connect


class Session:
    def __init__(self, base: str, ca: str) -> None:
        self.base = base.rstrip("/")
        self.context = ssl.create_default_context(cafile=ca)
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.context),
            urllib.request.HTTPCookieProcessor(self.cookies),
        )

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

    def websocket(self, path: str):
        ws_base = self.base.replace("https://", "wss://", 1)
        return connect(
            ws_base + path,
            ssl=self.context,
            origin=self.base,
            additional_headers={"Cookie": f"sessionid={self.cookie('sessionid')}"},
            open_timeout=10,
        )


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
    with session.websocket(f"/ws/room/{args.room}") as socket, open(args.out, "a") as out:
        out.write(json.dumps({"connected": True}) + "\n")
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
    args = parser.parse_args()
    command = ws_roundtrip if args.command == "ws-roundtrip" else ws_listen
    print(json.dumps(command(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
