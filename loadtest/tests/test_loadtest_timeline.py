"""The Locust run's timeline the fault drills read (loadtest/timeline.py)."""

from __future__ import annotations

import json
import re

import timeline


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CatchResponseError(Exception):
    pass


def test_failures_keep_time_name_status_and_error():
    clock = Clock(1000.25)
    tl = timeline.Timeline(clock=clock)
    tl.start()
    tl.request("GET", "GET /", 12.0, 200)
    clock.now = 1001.5
    tl.request("GET", "GET transcript", 30.0, 503, CatchResponseError("HTTP 503"))
    clock.now = 1002.0
    tl.request("GET", "GET room page", None, 0, ConnectionRefusedError("[Errno 111] refused"))
    data = tl.as_dict()
    assert data["started"] == 1000.25
    assert data["failures"] == [
        {
            "t": 1001.5,
            "type": "GET",
            "name": "GET transcript",
            "status": 503,
            "error": "CatchResponseError: HTTP 503",
        },
        {
            "t": 1002.0,
            "type": "GET",
            "name": "GET room page",
            "status": None,
            "error": "ConnectionRefusedError: [Errno 111] refused",
        },
    ]


def test_seconds_count_answers_per_name_and_second():
    clock = Clock(50.1)
    tl = timeline.Timeline(clock=clock)
    tl.start()
    tl.request("GET", "GET /", 10.0, 200)
    clock.now = 50.9
    tl.request("GET", "GET /", 30.0, 200)
    tl.request("GET", "GET /", 5.0, 503, CatchResponseError("HTTP 503"))
    clock.now = 51.0
    tl.request("GET", "GET /", 7.0, 200)
    seconds = tl.as_dict()["seconds"]
    assert seconds == [
        {"t": 50, "name": "GET /", "ok": 2, "failed": 1, "ms_sum": 45.0, "ms_max": 30.0},
        {"t": 51, "name": "GET /", "ok": 1, "failed": 0, "ms_sum": 7.0, "ms_max": 7.0},
    ]


def test_accepted_posts_and_a_new_start_clears_all():
    clock = Clock(10.0)
    tl = timeline.Timeline(clock=clock)
    tl.start()
    tl.post_accepted("0123456789abcdef")
    assert tl.as_dict()["accepted"] == [{"t": 10.0, "token": "0123456789abcdef"}]
    tl.request("GET", "x", 1.0, 500, RuntimeError("boom"))
    tl.start()
    data = tl.as_dict()
    assert data["accepted"] == data["failures"] == data["seconds"] == []


def test_written_as_json(tmp_path):
    tl = timeline.Timeline(clock=Clock(5.0))
    tl.start()
    tl.request("WS", "WS connect", 3.0, None, Exception("handshake answered HTTP 502"))
    target = tmp_path / "sub" / "timeline.json"
    tl.write(str(target))
    data = json.loads(target.read_text())
    assert data["failures"][0]["error"] == "Exception: handshake answered HTTP 502"
    assert data["finished"] == 5.0


def test_error_text_is_one_short_line():
    long = "HTTP 503\n" + "x" * 500
    assert timeline.describe_error(RuntimeError(long)) == "RuntimeError: HTTP 503"
    assert len(timeline.describe_error(RuntimeError("y" * 500))) == timeline.ERROR_CHARS
    assert timeline.describe_error("plain text") == "plain text"
    assert timeline.describe_error(KeyError()) == "KeyError"


def test_message_text_carries_the_marker_after_the_token():
    assert timeline.message_text("0123456789abcdef") == "load test 0123456789abcdef"
    text = timeline.message_text("0123456789abcdef", "drill-pg-1")
    assert text == "load test 0123456789abcdef drill-pg-1"
    # The locustfile finds the token with this pattern (TOKEN_RE), marker or not.
    assert re.search(r"\bload test ([0-9a-f]{16})\b", text).group(1) == "0123456789abcdef"
