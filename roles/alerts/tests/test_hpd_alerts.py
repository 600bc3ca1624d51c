"""The alert evaluator against a real HTTP server playing Graphite and a real SMTP
conversation: breaches, suppression of repeats, resolution, and failures."""

from __future__ import annotations

import json
import socketserver
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "files" / "hpd-alerts"
_loader = SourceFileLoader("hpd_alerts", str(SCRIPT))
_spec = spec_from_loader("hpd_alerts", _loader)
assert _spec is not None
alerts = module_from_spec(_spec)
sys.modules["hpd_alerts"] = alerts  # dataclasses look their module up there
_loader.exec_module(alerts)

NOW = 1_700_000_000.0


def series(target: str, values: list[float | None], step: int = 10) -> dict[str, Any]:
    start = NOW - step * len(values)
    return {"target": target, "datapoints": [[v, start + i * step] for i, v in enumerate(values)]}


# --- a fake-free Graphite: an HTTP server answering /render with what a test sets -------------


class _Graphite(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        assert query["format"] == ["json"]
        self.server.queries.append(query["target"][0])  # type: ignore[attr-defined]
        body = json.dumps(self.server.answers.get(query["target"][0], [])).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough of SMTP for smtplib: keeps each message's data."""

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
            if verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk)
                self.server.messages.append(b"".join(data).decode())  # type: ignore[attr-defined]
                self.wfile.write(b"250 kept\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def graphite() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Graphite)
    server.answers = {}  # type: ignore[attr-defined]
    server.queries = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def config_for(graphite_port: int, smtp_port: int, rules: list[dict]) -> dict[str, Any]:
    return {
        "graphite_url": f"http://127.0.0.1:{graphite_port}",
        "window": "-5min",
        "timeout": 5,
        "repeat_after_seconds": 3600,
        "notify_resolved": True,
        "mail": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "from": "alerts@mon.test",
            "to": ["ops@example.test"],
            "subject_prefix": "[hpd-test]",
        },
        "rules": rules,
    }


FIVE_XX = {
    "name": "5xx-rate",
    "target": "sumSeries(x.5*.rate)",
    "kind": "above",
    "threshold": 1,
    "reduce": "avg",
}


# --- evaluation -------------------------------------------------------------------------


def test_above_uses_the_reducer_and_ignores_gaps() -> None:
    rule = dict(FIVE_XX)
    data = [series("a", [None, 0.5, 4.0, None])]
    assert [b.message for b in alerts.evaluate(rule, data, NOW)] == [
        "2.25 is above the threshold 1"
    ]
    rule["reduce"] = "last"
    assert [b.series for b in alerts.evaluate(rule, data, NOW)] == ["a"]
    rule["reduce"] = "min"
    assert alerts.evaluate(rule, data, NOW) == []


def test_below_and_series_without_data() -> None:
    rule = {
        "name": "hit-ratio",
        "target": "h.*",
        "kind": "below",
        "threshold": 0.9,
        "reduce": "avg",
    }
    data = [series("h.one", [0.5, 0.6]), series("h.two", [0.99]), series("h.empty", [None, None])]
    assert [b.series for b in alerts.evaluate(rule, data, NOW)] == ["h.one"]


def test_stale_flags_silent_and_missing_series() -> None:
    rule = {
        "name": "host-silent",
        "target": "collectd.web1.load.load.shortterm",
        "kind": "stale",
        "stale_seconds": 60,
    }
    fresh = series("fresh", [1.0, 1.0])
    silent = series("silent", [1.0, None, None, None, None, None, None, None, None, None])
    breaches = alerts.evaluate(rule, [fresh, silent, series("never", [None])], NOW)
    assert [(b.series, b.message) for b in breaches] == [
        ("silent", "last datapoint 100 s ago"),
        ("never", "last datapoint never in the window"),
    ]
    assert [b.series for b in alerts.evaluate(rule, [], NOW)] == [rule["target"]]


# --- suppression ---------------------------------------------------------------------------


def test_a_lasting_breach_is_mailed_once_then_repeated_then_resolved() -> None:
    breach = alerts.Breach("load", "collectd.web1.load", "3 is above the threshold 2")
    mails, state = alerts.plan_mail([breach], {}, NOW, 3600, True)
    assert [label for label, _ in mails] == ["ALERT"]
    for minutes in (1, 30, 59):
        mails, state = alerts.plan_mail([breach], state, NOW + 60 * minutes, 3600, True)
        assert mails == []
    mails, state = alerts.plan_mail([breach], state, NOW + 3600, 3600, True)
    assert [label for label, _ in mails] == ["REPEAT"]
    mails, state = alerts.plan_mail([], state, NOW + 3700, 3600, True)
    assert [(label, b.series) for label, b in mails] == [("RESOLVED", "collectd.web1.load")]
    assert state == {}
    assert (
        alerts.plan_mail(
            [],
            {breach.key: {"since": NOW, "last_sent": NOW, "rule": "load", "series": breach.series}},
            NOW,
            3600,
            False,
        )[0]
        == []
    )


# --- whole runs against the servers ------------------------------------------------------------


def test_forced_breach_mails_exactly_one_alert_over_three_runs_then_resolves(
    graphite, smtp, tmp_path: Path
) -> None:
    config = config_for(graphite.server_port, smtp.server_address[1], [FIVE_XX])
    state = tmp_path / "state.json"
    graphite.answers[FIVE_XX["target"]] = [series("sumSeries(x.5*.rate)", [0.0, 30.0, 12.0])]
    for run in range(3):
        assert alerts.run(config, state, NOW + run * 60, "mon1") == 0
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert "Subject: [hpd-test] [ALERT] 5xx-rate: sumSeries(x.5*.rate)" in message
    assert "To: ops@example.test" in message
    assert "14 is above the threshold 1" in message
    graphite.answers[FIVE_XX["target"]] = [series("sumSeries(x.5*.rate)", [0.0, 0.0, 0.1])]
    assert alerts.run(config, state, NOW + 300, "mon1") == 0
    assert len(smtp.messages) == 2
    assert "[RESOLVED] 5xx-rate" in smtp.messages[1]
    assert json.loads(state.read_text()) == {}


def test_graphite_down_is_itself_one_alert(smtp, tmp_path: Path) -> None:
    unused = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    port = unused.server_address[1]
    unused.server_close()
    config = config_for(port, smtp.server_address[1], [FIVE_XX, dict(FIVE_XX, name="other")])
    state = tmp_path / "state.json"
    assert alerts.run(config, state, NOW, "mon1") == 0
    assert alerts.run(config, state, NOW + 60, "mon1") == 0
    assert len(smtp.messages) == 1
    assert "[ALERT] graphite-unreachable" in smtp.messages[0]


def test_unsent_alert_is_sent_by_the_next_run(graphite, smtp, tmp_path: Path) -> None:
    closed = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    dead_port = closed.server_address[1]
    closed.server_close()
    config = config_for(graphite.server_port, dead_port, [FIVE_XX])
    graphite.answers[FIVE_XX["target"]] = [series("s", [50.0])]
    state = tmp_path / "state.json"
    assert alerts.run(config, state, NOW, "mon1") == 1
    assert json.loads(state.read_text()) == {}
    config["mail"]["port"] = smtp.server_address[1]
    assert alerts.run(config, state, NOW + 60, "mon1") == 0
    assert len(smtp.messages) == 1
    assert "[ALERT] 5xx-rate: s" in smtp.messages[0]


def test_refuses_urls_that_are_not_http(tmp_path: Path) -> None:
    with pytest.raises(alerts.GraphiteError, match="only http and https"):
        alerts.fetch_series("file:///etc", "x", "-5min", 1)
