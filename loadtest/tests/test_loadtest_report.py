"""loadtest/report.py on fixture data (a results.json, real Locust 2.47 CSVs, a WebSocket
report, max-load CSVs): the targets' arithmetic, Graphite answering, refusing and
missing, and the files the report writes."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import report

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RUN = FIXTURES / "run"
REPORT_SCRIPT = Path(report.__file__)


@pytest.fixture
def results() -> dict:
    return json.loads((RUN / "results.json").read_text())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the fixture run, to report on (and change)."""
    return Path(shutil.copytree(RUN, tmp_path / "loadtest"))


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def figure(results: dict, figure_id: str) -> dict:
    return next(e for e in results["wrk"] if e["id"] == figure_id)


# ---------------------------------------------------------------------------- formatting


def test_figures_read_well():
    assert report.fmt_ratio(0.1104) == "0.11×"
    assert report.fmt_ratio(1.0) == "1.00×"
    assert report.fmt_ratio(61.2 / 12345.6) == "0.005×"
    assert report.fmt_ratio(0.0334) == "0.033×"
    assert report.fmt_rate(12345.6) == "12,346"
    assert report.fmt_rate(61.24) == "61.2"
    assert report.fmt_ms(4.2) == "4.20"
    assert report.fmt_ms(55.04) == "55.0"
    assert report.fmt_ms(1650.4) == "1,650"
    assert report.fmt_ms(None) == "n/a"


# ---------------------------------------------------------------------------- targets


def test_cached_rate_met_states_the_margin(results):
    target = report.target_cached_rate(results)
    assert target.met
    # 7,654.3 / 12,345.6 = 0.62; the target 0.5 x 12,345.6 = 6,172.8 req/s.
    assert target.detail == (
        "0.62× the limit (7,654 of 12,346 req/s, at 50 connections); needs ≥ 0.50×: "
        "0.12× (1,482 req/s) to spare"
    )


def test_cached_rate_missed_states_the_gap(results):
    figure(results, "cached")["result"]["rate"] = 3950.0
    target = report.target_cached_rate(results)
    assert not target.met
    assert target.detail.startswith("0.32× the limit (3,950 of 12,346 req/s")
    assert target.detail.endswith("short by 0.18× (2,223 req/s).")


def test_cached_p99_met_and_missed(results):
    met = report.target_cached_p99(results)
    assert met.met
    assert met.detail == "p99 9.30 ms, at 50 connections; needs ≤ 10 ms: 0.70 ms to spare"
    figure(results, "cached")["result"]["latency_ms"]["p99"] = 14.2
    missed = report.target_cached_p99(results)
    assert not missed.met
    assert "over by 4.20 ms. 50 connections at 7,654 req/s spend 6.53 ms per request" in (
        missed.detail
    )


def test_cached_figures_come_from_the_sweep_at_50_connections(results):
    for figure_id in ("limit", "cached"):
        figure(results, figure_id)["connections"] = 100
    target = report.target_cached_rate(results)
    # The sweep's 50-connection figures: 7,600 of 12,300 req/s.
    assert "0.62× the limit (7,600 of 12,300 req/s, at 50 connections)" in target.detail


def test_cached_figures_elsewhere_say_so(results):
    results["sweep"] = []
    for figure_id in ("limit", "cached"):
        figure(results, figure_id)["connections"] = 100
    target = report.target_cached_p99(results)
    assert "at 100 connections, not the target's 50" in target.detail


def test_uwsgi_missed_by_the_ratio(results):
    # 505 / 481 = 1.05; needs 1.1 x 481 = 529.1 req/s.
    target = report.target_uwsgi(results)
    assert not target.met
    assert target.detail == (
        "1.05× gunicorn with 4 workers (505 against 481 req/s); needs ≥ 1.10×: "
        "short by 0.05× (24.1 req/s); 0 errors."
    )


def test_uwsgi_met(results):
    figure(results, "uwsgi")["result"]["rate"] = 600.0
    target = report.target_uwsgi(results)
    assert target.met
    assert "1.25× gunicorn with 4 workers" in target.detail
    assert "0.15× (70.9 req/s) to spare; 0 errors" in target.detail


def test_uwsgi_errors_miss_the_target_whatever_the_rate(results):
    uwsgi = figure(results, "uwsgi")["result"]
    uwsgi["rate"] = 600.0
    uwsgi["errors"]["timeout"] = 2
    target = report.target_uwsgi(results)
    assert not target.met
    assert target.detail.endswith("; 2 errors (timeout 2), needs 0")


def account_cpu(results: dict, figure_id: str, busy: float, processes: dict) -> None:
    """What cpu-during.py would have said around the figure's wrk run."""
    figure(results, figure_id)["cpu"] = {
        "seconds": 10.0,
        "cores": 2,
        "machine_busy_seconds": busy,
        "processes": processes,
    }


def test_a_missed_target_says_where_the_cpu_went(results):
    # The cached path answered 39,500 requests in 10 s on saturated cores: 19.8 s of CPU,
    # 501 µs each, so at most 2 cores / 501 µs = 3,990 req/s; 0.5 x 12,346 = 6,173 req/s
    # would need at most 2e6 / 6,173 = 324 µs.
    account_cpu(results, "limit", 19.5, {"nginx": 12.0, "wrk": 6.0})
    account_cpu(results, "cached", 19.8, {"haproxy": 9.0, "varnishd": 6.0, "wrk": 3.0})
    cached = figure(results, "cached")["result"]
    cached["rate"], cached["requests"] = 3950.0, 39500
    detail = report.target_cached_rate(results).detail
    assert detail.endswith(
        "Cause: the cores were 99% busy, so the CPU per request sets the rate: cached 501 µs "
        "(haproxy 228, varnishd 152, wrk 76, elsewhere 46), at most 3,990 req/s on these 2 "
        "cores; 6,173 req/s needs at most 324 µs. limit: 158 µs (nginx 97, wrk 49, "
        "elsewhere 12)."
    )


def test_idle_cores_are_not_blamed(results):
    account_cpu(results, "uwsgi", 8.0, {"uwsgi": 6.0})
    account_cpu(results, "gunicorn_workers", 7.0, {"gunicorn": 5.0})
    detail = report.target_uwsgi(results).detail
    assert detail.endswith(
        "Cause: not the CPU, the cores were 40% busy during uwsgi: its requests waited on "
        "something else."
    )


def test_the_interpreter_figures_say_how_fast_python_itself_runs(results):
    account_cpu(results, "uwsgi", 19.9, {"uwsgi": 16.0})
    account_cpu(results, "gunicorn_workers", 19.9, {"gunicorn": 14.0})
    for figure_id, requests in (("python_uwsgi", 2500), ("python_gunicorn", 3200)):
        entry = {**figure(results, "uwsgi"), "id": figure_id}
        entry["result"] = {**entry["result"], "requests": requests}
        results["wrk"].append(entry)
        account_cpu(results, figure_id, 20.0, {"python": 19.0})
    detail = report.target_uwsgi(results).detail
    # 20 s / 2,500 = 8,000 µs against 20 s / 3,200 = 6,250 µs: 0.78x.
    assert detail.endswith(
        "Python alone (a CPU-only WSGI app, same run) costs 8,000 µs per request in uWSGI "
        "against 6,250 in gunicorn: 0.78× the speed before Django does anything."
    )


def test_without_cpu_accounting_no_cause_is_given(results):
    figure(results, "cached")["result"]["rate"] = 3950.0
    assert "Cause" not in report.target_cached_rate(results).detail


def test_the_report_shows_where_the_cpu_went(folder):
    results = json.loads((folder / "results.json").read_text())
    account_cpu(results, "limit", 19.5, {"nginx": 12.0, "wrk": 6.0})
    (folder / "results.json").write_text(json.dumps(results))
    report.build(folder, graphite_url=None)
    text = (folder / "report.md").read_text()
    assert "### Where the CPU went (µs of CPU per request)" in text
    assert "| **limit** | hpd-edge | 98% | 158 | nginx 97, wrk 49 | 12 |" in text


def test_missing_figure_misses_its_target(results):
    results["wrk"] = [e for e in results["wrk"] if e["id"] != "gunicorn_workers"]
    target = report.target_uwsgi(results)
    assert not target.met
    assert target.detail == "no 'gunicorn_workers' figure in results.json"


@pytest.mark.parametrize(
    ("noop", "met", "detail"),
    [
        (None, False, "not measured in this run (no site-noop.json)"),
        ({"seconds": 71.8, "changed": 0}, True, "72 s with 0 changed; needs ≤ 90 s: 18 s to spare"),
        ({"seconds": 95.2, "changed": 0}, False, "95 s with 0 changed; needs ≤ 90 s: over by 5 s."),
        (
            {"seconds": 120.0, "changed": 0, "tasks": 480, "task_runs": 1900},
            False,
            "over by 30 s. Cause: 480 tasks (1,900 runs on hosts, ok or skipped) at 250 ms each "
            "on average; at that cost 90 s allows 360 tasks.",
        ),
        ({"seconds": 60, "changed": 2}, False, "not a no-change run (2 tasks changed)"),
    ],
)
def test_noop_run(tmp_path, noop, met, detail):
    if noop is not None:
        (tmp_path / "site-noop.json").write_text(json.dumps(noop))
    target = report.target_noop(tmp_path)
    assert target.met is met
    assert target.detail.endswith(detail)


def test_clean_run_counts_every_error(results):
    locust = report.read_locust(RUN / "locust")
    target, total = report.target_clean(results, locust)
    assert not target.met
    # gunicorn_default's 3 timeouts and Locust's 9 failed "GET room page".
    assert total == 12
    assert target.detail == (
        "12 errors: wrk gunicorn_default at 50 connections: timeout 3; "
        "Locust: 9 failures (GET room page: 9)"
    )


def test_delivery():
    assert report.target_delivery({"expected_deliveries": 10, "delivered": 10, "lost": 0}, "").met
    lost = report.target_delivery({"expected_deliveries": 10, "delivered": 9, "lost": 1}, "")
    assert not lost.met
    assert lost.detail == "9 of 10 expected deliveries, 1 lost"
    assert not report.target_delivery(None, "no WebSocket report (ws.json)").met


# ---------------------------------------------------------------------------- Graphite


def test_graphite_unreachable_is_na_with_the_reason(results):
    graphite = report.Graphite(f"http://127.0.0.1:{closed_port()}", timeout=2)
    cells = report.stack_cells(graphite, results["run"], figure(results, "cached"))
    for cell in cells.values():
        assert cell.text == "n/a"
        assert "did not answer" in cell.reason
        assert "refused" in cell.reason.lower()
    # Not asked again: the next figure gets the same reason straight away.
    assert graphite.down == cells["varnish"].reason
    later = report.stack_cells(graphite, results["run"], figure(results, "uwsgi"))
    assert later["db_connections"].reason == graphite.down


def test_no_graphite_address(results):
    cells = report.stack_cells(report.Graphite(None), results["run"], figure(results, "limit"))
    assert cells["busy_workers"].text == "n/a"
    assert cells["busy_workers"].reason == "no Graphite address in results.json"


class FakeGraphite(BaseHTTPRequestHandler):
    """Graphite's /render?format=json for the stack's series."""

    series: dict[str, list] = {}
    asked: list[dict[str, list[str]]] = []

    def do_GET(self):  # noqa: N802 (the handler's API)
        query = parse_qs(urlsplit(self.path).query)
        self.asked.append(query)
        target = query["target"][0]
        if target not in self.series:
            self.send_error(400, "unknown target")
            return
        body = json.dumps(self.series[target]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_graphite() -> Iterator[str]:
    t = 1796400015
    points = lambda *values: [  # noqa: E731
        {"target": "sum", "datapoints": [[v, t + 10 * i] for i, v in enumerate(values)]}
    ]
    FakeGraphite.series = {
        "sumSeries(collectd.*.varnish.cache_result.hit)": points(90.0, None, 110.0),
        "sumSeries(collectd.*.varnish.cache_result.miss)": points(10.0, None, 10.0),
        "sumSeries(collectd.*.memcached.*.memcached_ops.hits)": points(0.0, 0.0),
        "sumSeries(collectd.*.memcached.*.memcached_ops.misses)": points(0.0, 0.0),
        "sumSeries(collectd.*.uwsgi.chat.count.busy_workers)": points(3.0, 4.0, 2.0),
        # No such series: Graphite answers an empty list.
        "sumSeries(collectd.*.postgresql.app.pg_numbackends)": [],
    }
    FakeGraphite.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGraphite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_stack_figures_from_graphite(results, fake_graphite):
    cached = figure(results, "cached")
    cells = report.stack_cells(report.Graphite(fake_graphite), results["run"], cached)
    # (90 + 110) / (90 + 110 + 10 + 10)
    assert cells["varnish"].text == "90.9 %"
    assert cells["memcached"].text == "n/a"
    assert cells["memcached"].reason == "no Memcached lookups in the window"
    assert cells["busy_workers"].text == "4"
    assert cells["db_connections"].text == "n/a"
    assert cells["db_connections"].reason == (
        "no series sumSeries(collectd.*.postgresql.app.pg_numbackends)"
    )
    for query in FakeGraphite.asked:
        assert query["format"] == ["json"]
        assert query["from"] == [str(int(cached["started"]))]
        assert query["until"] == [str(int(cached["finished"]) + 10)]


def test_graphite_refusing_a_target_is_na_for_that_figure_only(results, fake_graphite):
    run = dict(results["run"], app_name="other")
    graphite = report.Graphite(fake_graphite)
    cells = report.stack_cells(graphite, run, figure(results, "uwsgi"))
    assert cells["busy_workers"].reason == "Graphite answered 400 unknown target"
    assert cells["varnish"].text == "90.9 %"
    assert graphite.down is None


# ---------------------------------------------------------------------------- the files


def test_locust_csvs_are_read():
    locust = report.read_locust(RUN / "locust")
    names = [f"{r.kind} {r.name}" for r in locust.stats]
    assert "WS message delivered" in names
    assert "POST POST message (429 rate limited)" in names
    assert locust.total.count == 144
    assert locust.total_failures == 9
    home = next(r for r in locust.stats if r.name == "GET home")
    assert (home.count, home.p50, home.p95, home.p99) == (48, 9, 36, 67)
    assert home.max == pytest.approx(66.642, abs=0.001)
    assert locust.history[0]["50%"] == "N/A"
    assert all(row["Name"] == "Aggregated" for row in locust.history)
    assert locust.failures[0]["Occurrences"] == "9"


def test_report_writes_its_files(folder):
    port = closed_port()
    assert report.main([str(folder), "--graphite", f"http://127.0.0.1:{port}"]) == 0
    for png in ("latency-over-time.png", "rate-vs-concurrency.png", "maxload.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["finished"] == "2026-12-04T16:25:40Z"
    assert summary["target_met"] is False
    assert summary["errors"] == 12
    met = {t["name"]: t["met"] for t in summary["targets"]}
    assert met == {
        "Cached pages at ≥ 0.50× the limit's rate": True,
        "Cached pages' p99 ≤ 10 ms": True,
        "uWSGI at ≥ 1.10× gunicorn with as many workers, without errors": False,
        "A no-change site.yml run in ≤ 90 s": True,
        "No errors in any wrk figure or Locust journey": False,
        "Every WebSocket message delivered": True,
    }
    text = (folder / "report.md").read_text()
    assert "**2 of 6 missed.**" in text
    # Side by side: the ratio to the limit, and the stack's figures left out with why.
    assert "| 7,654 | 0.62× |" in text
    assert "| 12,346 | 1.00× |" in text
    assert "n/a [1]" in text
    assert f"1. Graphite at http://127.0.0.1:{port} did not answer" in text
    assert "| GET home | 48 | 0 | 9 | 36 | 67 | 67 | 5.4 |" in text
    assert "| WS message delivered | 4 | 0 |" in text
    assert "1,180 of 1,180 expected deliveries received, **0 lost**" in text
    assert "| Reader | GET / | 65 | 939 | 64.0 |" in text
    assert "| Newcomer | GET home | ≥ 8 |" in text
    for png in ("latency-over-time.png", "rate-vs-concurrency.png", "maxload.png"):
        assert f"]({png})" in text


def test_a_clean_run_meets_the_targets(folder):
    results = json.loads((folder / "results.json").read_text())
    figure(results, "uwsgi")["result"]["rate"] = 600.0
    figure(results, "gunicorn_default")["result"]["errors"]["timeout"] = 0
    (folder / "results.json").write_text(json.dumps(results))
    # The same Locust run without its failures.
    stats = folder / "locust_stats.csv"
    with stats.open(newline="") as source:
        rows = list(csv.DictReader(source))
    for row in rows:
        row["Failure Count"], row["Failures/s"] = "0", "0.0"
    with stats.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "locust_failures.csv").unlink()

    summary = report.build(folder, f"http://127.0.0.1:{closed_port()}", timeout=2)
    assert summary["target_met"] is True
    assert summary["errors"] == 0
    assert "**All targets met**, no errors, nothing lost." in (folder / "report.md").read_text()


def test_missing_pieces_are_reported_not_invented(folder):
    for name in ("locust_stats.csv", "ws.json", "site-noop.json"):
        (folder / name).unlink()
    for path in folder.glob("maxload-*.csv"):
        path.unlink()
    (folder / "maxload.png").write_bytes(b"from an earlier report")
    summary = report.build(folder, f"http://127.0.0.1:{closed_port()}", timeout=2)
    assert summary["target_met"] is False
    details = {t["name"]: t["detail"] for t in summary["targets"]}
    assert details["Every WebSocket message delivered"] == "no WebSocket report (ws.json)"
    assert (
        "Locust: no results (missing _stats.csv)"
        in details["No errors in any wrk figure or Locust journey"]
    )
    assert details["A no-change site.yml run in ≤ 90 s"].startswith("not measured in this run")
    text = (folder / "report.md").read_text()
    assert "No Locust results" in text
    assert "## Maximum load" not in text
    assert not (folder / "maxload.png").exists()


def test_runs_as_a_script(folder):
    """`python loadtest/report.py DIR`: maxload is imported from the script's folder."""
    done = subprocess.run(
        [
            sys.executable,
            str(REPORT_SCRIPT),
            str(folder),
            "--graphite",
            f"http://127.0.0.1:{closed_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr
    assert "target_met: false, errors: 12" in done.stdout
    assert "MISSED uWSGI" in done.stdout
