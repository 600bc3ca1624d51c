#!/usr/bin/env python3
"""The load-test report: turns what playbooks/loadtest.yml measured into report.md, PNG
plots and summary.json, in the same folder.

    python loadtest/report.py reports/loadtest [--graphite URL] [--graphite-timeout 5]

Reads, from that folder:
- results.json: the run, the wrk figures and the concurrency sweep (loadtest/README.md);
- the Locust CSVs (<prefix>_stats.csv, _stats_history.csv, _failures.csv) and the
  WebSocket delivery report, where results.json says (looked up in the folder by name);
- site-noop.json ({"seconds": .., "changed": ..}) from a no-change site.yml run, if any;
- maxload-<Class>.csv from loadtest/maxload.py, if any;
and asks Graphite's render API (results.json's run.graphite, or --graphite) what the
stack did during each wrk figure. A Graphite that does not answer leaves "n/a" with the
reason: no figure in the report is made up.

summary.json is what the pre-launch checklist reads: target_met is true only when every
target is met, no figure or journey had an error and no WebSocket message was lost.
Plots are drawn with matplotlib's Agg renderer (Figure objects, no pyplot, no display).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

# maxload.py sits next to this file; running `python loadtest/report.py` puts its folder
# on sys.path.
from maxload import DEFAULT_THRESHOLD_MS, REQUESTS_OF_INTEREST, conclude, read_samples

WRK_ORDER = [
    "limit",
    "cached",
    "varnish",
    "logged_in",
    "uwsgi",
    "gunicorn_default",
    "gunicorn_workers",
    "python_uwsgi",
    "python_gunicorn",
]
# Targets of issue 15, point 4.
CACHED_MIN_RATIO = 0.5
CACHED_MAX_P99_MS = 10.0
TARGET_CONNECTIONS = 50
UWSGI_MIN_RATIO = 1.1
NOOP_MAX_SECONDS = 90.0
# A figure whose machine was at least this busy was limited by CPU.
SATURATED_SHARE = 0.9
# collectd samples every 10 s: the window's last point lands up to 10 s after it ends.
WINDOW_TAIL_SECONDS = 10

LATENCY_PLOT = "latency-over-time.png"
SWEEP_PLOT = "rate-vs-concurrency.png"
MAXLOAD_PLOT = "maxload.png"


# ---------------------------------------------------------------------------- formatting


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def fmt_ratio(value: float) -> str:
    # Two decimals, or two significant digits below 0.1 so a small ratio is not "0.00×".
    return f"{value:.2f}×" if value >= 0.095 or value == 0 else f"{value:.2g}×"


def fmt_count(value: float) -> str:
    return f"{value:,.0f}"


def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A Markdown table; `align` has one letter per column, l or r (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# ---------------------------------------------------------------------------- wrk figures


def wrk_errors(result: dict) -> int:
    return sum(int(v or 0) for v in result.get("errors", {}).values())


def error_kinds(result: dict) -> str:
    """ "timeout 3, status 2" """
    return ", ".join(f"{kind} {fmt_count(n)}" for kind, n in result.get("errors", {}).items() if n)


def wrk_error_text(result: dict) -> str:
    total = wrk_errors(result)
    return f"{fmt_count(total)} ({error_kinds(result)})" if total else "0"


def request_label(kind: str, name: str) -> str:
    """Locust's names already start with their method ("GET home"); other types
    ("WS message delivered") need theirs."""
    return name if not kind or name.startswith(kind + " ") else f"{kind} {name}"


def figure_at(results: dict, figure_id: str, connections: int) -> dict | None:
    """The wrk figure `figure_id` measured at `connections`, from the main figures or the
    sweep; None when neither has it."""
    for entry in results.get("wrk", []) + results.get("sweep", []):
        if entry.get("id") == figure_id and entry.get("connections") == connections:
            return entry
    return None


def main_figure(results: dict, figure_id: str) -> dict | None:
    for entry in results.get("wrk", []):
        if entry.get("id") == figure_id:
            return entry
    return None


# ---------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    met: bool
    detail: str


def target_cached_rate(results: dict) -> Target:
    name = f"Cached pages at ≥ {CACHED_MIN_RATIO:.2f}× the limit's rate"
    cached, limit, where = pair_at(results, "cached", "limit", TARGET_CONNECTIONS)
    if cached is None or limit is None:
        missing = "cached" if cached is None else "limit"
        return Target(name, False, f"no '{missing}' figure in results.json")
    rate, limit_rate = cached["result"]["rate"], limit["result"]["rate"]
    ratio = rate / limit_rate if limit_rate else math.inf
    needed = CACHED_MIN_RATIO * limit_rate
    head = (
        f"{fmt_ratio(ratio)} the limit ({fmt_rate(rate)} of {fmt_rate(limit_rate)} req/s"
        f"{where}); needs ≥ {fmt_ratio(CACHED_MIN_RATIO)}"
    )
    gap = abs(ratio - CACHED_MIN_RATIO)
    if rate >= needed:
        return Target(
            name, True, f"{head}: {fmt_ratio(gap)} ({fmt_rate(rate - needed)} req/s) to spare"
        )
    short = f"{head}: short by {fmt_ratio(gap)} ({fmt_rate(needed - rate)} req/s)."
    return Target(name, False, short + cpu_cause(results, "cached", "limit", CACHED_MIN_RATIO))


def target_cached_p99(results: dict) -> Target:
    name = f"Cached pages' p99 ≤ {CACHED_MAX_P99_MS:g} ms"
    cached, _, where = pair_at(results, "cached", "limit", TARGET_CONNECTIONS)
    if cached is None:
        return Target(name, False, "no 'cached' figure in results.json")
    p99 = cached["result"]["latency_ms"]["p99"]
    head = f"p99 {fmt_ms(p99)} ms{where}; needs ≤ {CACHED_MAX_P99_MS:g} ms"
    if p99 <= CACHED_MAX_P99_MS:
        return Target(name, True, f"{head}: {fmt_ms(CACHED_MAX_P99_MS - p99)} ms to spare")
    over = f"{head}: over by {fmt_ms(p99 - CACHED_MAX_P99_MS)} ms."
    rate, connections = cached["result"]["rate"], cached.get("connections")
    if rate and connections:
        # Little's law: what is queued at once, over the rate, is the mean time in the queue.
        over += (
            f" {connections} connections at {fmt_rate(rate)} req/s spend "
            f"{fmt_ms(1000 * connections / rate)} ms per request on average, so the "
            f"tail follows the rate."
        )
    return Target(name, False, over + cpu_cause(results, "cached", "limit", CACHED_MIN_RATIO))


def pair_at(results: dict, first: str, second: str, connections: int):
    """Two figures at the target's connection count when the run has them there, else the
    main figures, with a note saying at what concurrency they were taken."""
    a, b = figure_at(results, first, connections), figure_at(results, second, connections)
    if a is not None and b is not None:
        return a, b, f", at {connections} connections"
    a, b = main_figure(results, first), main_figure(results, second)
    if a is None or b is None:
        return a, b, ""
    counts = sorted({a.get("connections"), b.get("connections")}, key=str)
    shown = " and ".join(str(c) for c in counts)
    return a, b, f", at {shown} connections, not the target's {connections}"


@dataclass(frozen=True)
class CpuUse:
    """Where one wrk figure's CPU went, per request (cpu-during.py around wrk)."""

    per_request_us: float  # the whole machine's busy CPU over the requests answered
    busy_share: float  # how busy the machine's cores were, 0 to 1
    cores: int
    host_us: dict[str, float]  # the measuring host's processes, largest first
    elsewhere_us: float  # the rest of the machine: the other hosts and the kernel

    @property
    def saturated(self) -> bool:
        return self.busy_share >= SATURATED_SHARE

    def most_rate(self) -> float:
        """The most requests per second these cores could answer at this CPU per request."""
        return self.cores * 1e6 / self.per_request_us


def cpu_use(entry: dict | None) -> CpuUse | None:
    if entry is None:
        return None
    cpu, requests = entry.get("cpu"), entry["result"].get("requests")
    if not cpu or not requests or not cpu.get("seconds") or not cpu.get("cores"):
        return None
    per_request = 1e6 / requests
    host = {name: seconds * per_request for name, seconds in cpu.get("processes", {}).items()}
    total = cpu["machine_busy_seconds"] * per_request
    return CpuUse(
        per_request_us=total,
        busy_share=cpu["machine_busy_seconds"] / (cpu["cores"] * cpu["seconds"]),
        cores=cpu["cores"],
        host_us=dict(sorted(host.items(), key=lambda item: -item[1])),
        elsewhere_us=max(total - sum(host.values()), 0.0),
    )


def cpu_text(use: CpuUse, top: int = 3) -> str:
    """ "412 µs (haproxy 180, varnishd 120, wrk 60, elsewhere 52)"."""
    parts = [f"{name} {us:,.0f}" for name, us in list(use.host_us.items())[:top]]
    parts.append(f"elsewhere {use.elsewhere_us:,.0f}")
    return f"{use.per_request_us:,.0f} µs ({', '.join(parts)})"


def cpu_cause(results: dict, figure_id: str, baseline_id: str, needed_ratio: float) -> str:
    """Why a figure falls short of `needed_ratio` times its baseline's rate, from the CPU
    each spent per request; empty when the run did not account for the CPU."""
    figure, baseline = main_figure(results, figure_id), main_figure(results, baseline_id)
    a, b = cpu_use(figure), cpu_use(baseline)
    if a is None or b is None:
        return ""
    if not a.saturated:
        return (
            f" Cause: not the CPU, the cores were {a.busy_share:.0%} busy during {figure_id}: "
            f"its requests waited on something else."
        )
    needed_rate = needed_ratio * baseline["result"]["rate"]
    return (
        f" Cause: the cores were {a.busy_share:.0%} busy, so the CPU per request sets the "
        f"rate: {figure_id} {cpu_text(a)}, at most {fmt_rate(a.most_rate())} req/s on "
        f"these {a.cores} cores; {fmt_rate(needed_rate)} req/s needs at most "
        f"{a.cores * 1e6 / needed_rate:,.0f} µs. {baseline_id}: {cpu_text(b)}."
    )


def interpreter_cause(results: dict) -> str:
    """Python's own speed in each server: a CPU-only app under both, in the same run."""
    uwsgi, gunicorn = main_figure(results, "python_uwsgi"), main_figure(results, "python_gunicorn")
    a, b = cpu_use(uwsgi), cpu_use(gunicorn)
    if a is None or b is None:
        return ""
    return (
        f" Python alone (a CPU-only WSGI app, same run) costs {a.per_request_us:,.0f} µs "
        f"per request in uWSGI against {b.per_request_us:,.0f} in gunicorn: "
        f"{fmt_ratio(b.per_request_us / a.per_request_us)} the speed before Django does "
        f"anything."
    )


def target_uwsgi(results: dict) -> Target:
    name = f"uWSGI at ≥ {UWSGI_MIN_RATIO:.2f}× gunicorn with as many workers, without errors"
    uwsgi, gunicorn = main_figure(results, "uwsgi"), main_figure(results, "gunicorn_workers")
    if uwsgi is None or gunicorn is None:
        missing = "uwsgi" if uwsgi is None else "gunicorn_workers"
        return Target(name, False, f"no '{missing}' figure in results.json")
    rate, other = uwsgi["result"]["rate"], gunicorn["result"]["rate"]
    ratio = rate / other if other else math.inf
    needed = UWSGI_MIN_RATIO * other
    workers = gunicorn.get("workers")
    against = f"gunicorn with {workers} workers" if workers else "gunicorn"
    head = (
        f"{fmt_ratio(ratio)} {against} ({fmt_rate(rate)} against {fmt_rate(other)} req/s); "
        f"needs ≥ {fmt_ratio(UWSGI_MIN_RATIO)}"
    )
    gap = abs(ratio - UWSGI_MIN_RATIO)
    rate_met = rate >= needed
    if rate_met:
        head += f": {fmt_ratio(gap)} ({fmt_rate(rate - needed)} req/s) to spare"
    else:
        head += f": short by {fmt_ratio(gap)} ({fmt_rate(needed - rate)} req/s)"
    errors = wrk_errors(uwsgi["result"])
    if errors:
        kinds = error_kinds(uwsgi["result"])
        return Target(name, False, f"{head}; {fmt_count(errors)} errors ({kinds}), needs 0")
    if rate_met:
        return Target(name, True, f"{head}; 0 errors")
    cause = cpu_cause(results, "uwsgi", "gunicorn_workers", UWSGI_MIN_RATIO)
    cause += interpreter_cause(results)
    return Target(name, False, f"{head}; 0 errors." + cause)


def target_noop(folder: Path) -> Target:
    name = f"A no-change site.yml run in ≤ {NOOP_MAX_SECONDS:g} s"
    path = folder / "site-noop.json"
    if not path.exists():
        return Target(name, False, "not measured in this run (no site-noop.json)")
    noop = json.loads(path.read_text())
    seconds, changed = float(noop["seconds"]), int(noop.get("changed", 0))
    head = f"{seconds:,.0f} s with {changed} changed; needs ≤ {NOOP_MAX_SECONDS:g} s"
    if changed:
        return Target(name, False, f"{head}: not a no-change run ({changed} tasks changed)")
    if seconds <= NOOP_MAX_SECONDS:
        return Target(name, True, f"{head}: {NOOP_MAX_SECONDS - seconds:,.0f} s to spare")
    over = f"{head}: over by {seconds - NOOP_MAX_SECONDS:,.0f} s."
    tasks, runs = int(noop.get("tasks", 0)), int(noop.get("task_runs", 0))
    if tasks:
        # Every task waits for its slowest host before the next starts: the run's time is
        # the number of tasks times what one costs the controller.
        each = seconds / tasks
        over += (
            f" Cause: {tasks:,} tasks ({runs:,} runs on hosts, ok or skipped) at "
            f"{1000 * each:,.0f} ms each on average; at that cost {NOOP_MAX_SECONDS:g} s "
            f"allows {NOOP_MAX_SECONDS / each:,.0f} tasks."
        )
    return Target(name, False, over)


def target_clean(results: dict, locust: LocustResults) -> tuple[Target, int]:
    """No errors anywhere; also the total for summary.json."""
    name = "No errors in any wrk figure or Locust journey"
    parts, total = [], 0
    for label, entries in (("wrk", results.get("wrk", [])), ("sweep", results.get("sweep", []))):
        errors = sum(wrk_errors(e["result"]) for e in entries)
        total += errors
        if errors:
            parts += [
                f"{label} {e['id']} at {e.get('connections')} connections: "
                f"{error_kinds(e['result'])}"
                for e in entries
                if wrk_errors(e["result"])
            ]
    if locust.stats is None:
        parts.append("Locust: no results (missing _stats.csv)")
        met = False
    else:
        failures = locust.total_failures
        total += failures
        if failures:
            failing = ", ".join(
                f"{request_label(r.kind, r.name)}: {fmt_count(r.failures)}"
                for r in locust.stats
                if r.failures
            )
            parts.append(f"Locust: {fmt_count(failures)} failures ({failing})")
        met = total == 0
    if met:
        return Target(name, True, "0 errors in the wrk figures, the sweep and Locust"), total
    return Target(name, False, f"{fmt_count(total)} errors: " + "; ".join(parts)), total


def target_delivery(ws: dict | None, ws_problem: str) -> Target:
    name = "Every WebSocket message delivered"
    if ws is None:
        return Target(name, False, ws_problem)
    lost, expected = int(ws.get("lost", 0)), int(ws.get("expected_deliveries", 0))
    detail = (
        f"{fmt_count(ws.get('delivered', 0))} of {fmt_count(expected)} expected deliveries, "
        f"{fmt_count(lost)} lost"
    )
    if expected == 0:
        return Target(name, False, detail + ": nothing was posted, so delivery was not shown")
    return Target(name, lost == 0, detail)


# ---------------------------------------------------------------------------- Graphite


class GraphiteError(Exception):
    pass


@dataclass
class Graphite:
    """Graphite's render API. Once it fails to answer at all, it is not asked again: every
    later figure gets the same reason instead of another timeout."""

    base: str | None
    timeout: float = 5.0
    down: str | None = None

    def values(self, target: str, start: int, until: int) -> list[float]:
        """The non-null values of `target` in [start, until]; GraphiteError when there are
        none to give."""
        if not self.base:
            raise GraphiteError("no Graphite address in results.json")
        if self.down:
            raise GraphiteError(self.down)
        scheme = urlsplit(self.base).scheme
        if scheme not in ("http", "https"):
            raise GraphiteError(f"Graphite address {self.base!r} is not http(s)")
        query = urlencode(
            {"target": target, "from": str(start), "until": str(until), "format": "json"}
        )
        url = f"{self.base.rstrip('/')}/render?{query}"
        try:
            # The scheme is checked above; the address is the stack's own Graphite.
            with urllib.request.urlopen(url, timeout=self.timeout) as response:  # noqa: S310
                data = json.load(response)
        except urllib.error.HTTPError as error:
            raise GraphiteError(f"Graphite answered {error.code} {error.reason}") from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            self.down = f"Graphite at {self.base} did not answer ({reason})"
            raise GraphiteError(self.down) from error
        except ValueError as error:
            raise GraphiteError(f"Graphite's answer is not JSON ({error})") from error
        if not data:
            raise GraphiteError(f"no series {target}")
        values = [
            float(point[0])
            for series in data
            for point in series.get("datapoints", [])
            if point[0] is not None
        ]
        if not values:
            raise GraphiteError(f"no datapoints for {target} in the window")
        return values


@dataclass
class Cell:
    """A stack figure: its text, or "n/a" and why."""

    text: str = "n/a"
    reason: str = ""


def stack_series(app_name: str, database: str) -> dict[str, str]:
    return {
        "varnish_hit": "sumSeries(collectd.*.varnish.cache_result.hit)",
        "varnish_miss": "sumSeries(collectd.*.varnish.cache_result.miss)",
        "memcached_hit": "sumSeries(collectd.*.memcached.*.memcached_ops.hits)",
        "memcached_miss": "sumSeries(collectd.*.memcached.*.memcached_ops.misses)",
        "busy_workers": f"sumSeries(collectd.*.uwsgi.{app_name}.count.busy_workers)",
        "db_connections": f"sumSeries(collectd.*.postgresql.{database}.pg_numbackends)",
    }


def hit_ratio(
    graphite: Graphite, hits: str, misses: str, start: int, until: int, what: str
) -> Cell:
    try:
        hit_rates = graphite.values(hits, start, until)
        miss_rates = graphite.values(misses, start, until)
    except GraphiteError as error:
        return Cell(reason=str(error))
    # Rates per second on the same 10 s grid: their sums weigh each sample alike.
    lookups = sum(hit_rates) + sum(miss_rates)
    if lookups <= 0:
        return Cell(reason=f"no {what} lookups in the window")
    return Cell(f"{100 * sum(hit_rates) / lookups:.1f} %")


def peak(graphite: Graphite, target: str, start: int, until: int) -> Cell:
    try:
        values = graphite.values(target, start, until)
    except GraphiteError as error:
        return Cell(reason=str(error))
    return Cell(fmt_count(max(values)))


def stack_cells(graphite: Graphite, run: dict, entry: dict) -> dict[str, Cell]:
    columns = ("varnish", "memcached", "busy_workers", "db_connections")
    started, finished = entry.get("started"), entry.get("finished")
    if started is None or finished is None:
        return {c: Cell(reason="no time window in results.json") for c in columns}
    start, until = int(started), int(finished) + WINDOW_TAIL_SECONDS
    series = stack_series(run.get("app_name") or "*", run.get("database") or "*")
    return {
        "varnish": hit_ratio(
            graphite, series["varnish_hit"], series["varnish_miss"], start, until, "Varnish"
        ),
        "memcached": hit_ratio(
            graphite, series["memcached_hit"], series["memcached_miss"], start, until, "Memcached"
        ),
        "busy_workers": peak(graphite, series["busy_workers"], start, until),
        "db_connections": peak(graphite, series["db_connections"], start, until),
    }


# ---------------------------------------------------------------------------- Locust


@dataclass
class RequestStats:
    kind: str
    name: str
    count: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    rate: float


@dataclass
class LocustResults:
    stats: list[RequestStats] | None = None  # None: no _stats.csv
    total: RequestStats | None = None
    history: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    @property
    def total_failures(self) -> int:
        return self.total.failures if self.total else sum(r.failures for r in self.stats or [])


def number(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "N/A"):
        return None
    return float(text)


def read_locust(prefix: Path) -> LocustResults:
    """Locust's --csv files: <prefix>_stats.csv, _stats_history.csv, _failures.csv."""
    results = LocustResults()
    stats_file = prefix.with_name(prefix.name + "_stats.csv")
    if stats_file.exists():
        results.stats = []
        with stats_file.open(newline="") as source:
            for row in csv.DictReader(source):
                stats = RequestStats(
                    kind=row["Type"],
                    name=row["Name"],
                    count=int(row["Request Count"]),
                    failures=int(row["Failure Count"]),
                    p50=number(row["50%"]),
                    p95=number(row["95%"]),
                    p99=number(row["99%"]),
                    max=number(row["Max Response Time"]),
                    rate=float(row["Requests/s"]),
                )
                if row["Name"] == "Aggregated" and not row["Type"]:
                    results.total = stats
                else:
                    results.stats.append(stats)
    history_file = prefix.with_name(prefix.name + "_stats_history.csv")
    if history_file.exists():
        with history_file.open(newline="") as source:
            results.history = [row for row in csv.DictReader(source) if row["Name"] == "Aggregated"]
    failures_file = prefix.with_name(prefix.name + "_failures.csv")
    if failures_file.exists():
        with failures_file.open(newline="") as source:
            results.failures = list(csv.DictReader(source))
    return results


def in_folder(folder: Path, recorded: str | None, default: str) -> Path:
    """A file results.json names, in the report folder (the playbook writes every file
    there): found by its name only, so the folder can be moved and still be reported on."""
    return folder / Path(recorded or default).name


# ---------------------------------------------------------------------------- plots


def log_ticks(ax, values: list[int]) -> None:
    """A log scale when the values span 10× or more, ticked at the values themselves in
    plain numbers (1, 2, 4, ... rather than 2⁰, 2¹, ...)."""
    ticks = sorted(set(values))
    if ticks and ticks[0] > 0 and ticks[-1] >= 10 * ticks[0]:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) > 12:
        powers = [2**n for n in range(int(math.log2(ticks[-1])) + 1)] if ticks[-1] > 0 else []
        ticks = [t for t in powers if t >= ticks[0]] or ticks
    ax.set_xticks(ticks, labels=[str(t) for t in ticks])


def plot_latency(history: list[dict], path: Path) -> bool:
    rows = [r for r in history if r.get("Timestamp")]
    if not rows:
        return False
    t0 = int(rows[0]["Timestamp"])
    seconds = [int(r["Timestamp"]) - t0 for r in rows]

    def series(column: str) -> list[float]:
        return [v if (v := number(r.get(column))) is not None else math.nan for r in rows]

    def percentile(column: str) -> list[float]:
        # Locust writes 0 for every percentile while its 10 s window has no response yet:
        # no data, not a 0 ms response.
        return [
            math.nan if number(r.get("99%")) == 0 else value
            for r, value in zip(rows, series(column), strict=True)
        ]

    fig = Figure(figsize=(9, 6), layout="constrained")
    latency, users = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    for column, label in (("50%", "p50"), ("95%", "p95"), ("99%", "p99")):
        latency.plot(seconds, percentile(column), label=label)
    latency.set_ylabel("response time (ms)")
    latency.set_ylim(bottom=0)
    latency.set_title("Locust, all requests: response time percentiles (last 10 s window)")
    latency.legend(loc="upper left")
    latency.grid(alpha=0.3)
    users.step(seconds, series("User Count"), where="post", color="tab:gray", label="users")
    users.set_ylabel("users")
    users.set_ylim(bottom=0)
    users.set_xlabel("seconds since start")
    users.grid(alpha=0.3)
    rate = users.twinx()
    rate.plot(seconds, series("Requests/s"), color="tab:green", label="requests/s")
    rate.set_ylabel("requests/s")
    rate.set_ylim(bottom=0)
    users.legend(
        users.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0],
        ["users", "requests/s"],
        loc="upper left",
    )
    fig.savefig(path, dpi=100)
    return True


def plot_sweep(sweep: list[dict], path: Path) -> bool:
    by_id: dict[str, list[dict]] = {}
    for entry in sweep:
        by_id.setdefault(entry["id"], []).append(entry)
    if not by_id:
        return False
    fig = Figure(figsize=(9, 6), layout="constrained")
    rates, p99s = fig.subplots(2, 1, sharex=True)
    for figure_id, entries in by_id.items():
        entries.sort(key=lambda e: e["connections"])
        connections = [e["connections"] for e in entries]
        rates.plot(connections, [e["result"]["rate"] for e in entries], "o-", label=figure_id)
        p99s.plot(connections, [e["result"]["latency_ms"]["p99"] for e in entries], "o-")
    log_ticks(rates, [e["connections"] for e in sweep])
    rates.set_ylabel("requests/s")
    rates.set_title("wrk: rate and p99 against concurrency")
    rates.legend()
    rates.grid(alpha=0.3)
    rates.set_ylim(bottom=0)
    p99s.set_ylim(bottom=0)
    p99s.set_ylabel("p99 (ms)")
    p99s.set_xlabel("connections")
    p99s.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    return True


def plot_maxload(searches: dict[str, list], threshold_ms: float, path: Path) -> bool:
    if not searches:
        return False
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    for index, (journey, samples) in enumerate(searches.items()):
        color = f"C{index}"
        good = [s for s in samples if s.ok and s.max_response_ms is not None]
        bad = [s for s in samples if not s.ok and s.max_response_ms is not None]
        ax.scatter(
            [s.users for s in good],
            [s.max_response_ms for s in good],
            color=color,
            label=f"{journey} ({REQUESTS_OF_INTEREST.get(journey, 'request of interest')})",
        )
        ax.scatter(
            [s.users for s in bad], [s.max_response_ms for s in bad], color=color, marker="x"
        )
    ax.axhline(
        threshold_ms, color="tab:red", linestyle="--", label=f"threshold {threshold_ms:,.0f} ms"
    )
    log_ticks(ax, [s.users for samples in searches.values() for s in samples])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("users")
    ax.set_ylabel("slowest response (ms)")
    ax.set_title("Max-load search: slowest response against users (x: too many or failures)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    return True


# ---------------------------------------------------------------------------- report


def maxload_files(folder: Path) -> dict[str, Path]:
    found = {p.stem.removeprefix("maxload-"): p for p in sorted(folder.glob("maxload-*.csv"))}
    order = [j for j in REQUESTS_OF_INTEREST if j in found] + [
        j for j in found if j not in REQUESTS_OF_INTEREST
    ]
    return {j: found[j] for j in order}


def build(folder: Path, graphite_url: str | None = None, timeout: float = 5.0) -> dict:
    """Write report.md, the plots and summary.json into `folder`; return the summary."""
    results = json.loads((folder / "results.json").read_text())
    run = results.get("run", {})
    wrk = sorted(
        results.get("wrk", []),
        key=lambda e: WRK_ORDER.index(e["id"]) if e["id"] in WRK_ORDER else len(WRK_ORDER),
    )
    locust_info = results.get("locust") or {}
    locust = read_locust(in_folder(folder, locust_info.get("csv_prefix"), "locust"))
    ws_path = in_folder(folder, locust_info.get("ws_report"), "ws.json")
    ws, ws_problem = None, ""
    if ws_path.exists():
        ws = json.loads(ws_path.read_text())
    else:
        ws_problem = f"no WebSocket report ({ws_path.name})"

    graphite = Graphite(graphite_url or run.get("graphite"), timeout)
    stack = {id(e): stack_cells(graphite, run, e) for e in wrk}

    clean, errors = target_clean(results, locust)
    targets = [
        target_cached_rate(results),
        target_cached_p99(results),
        target_uwsgi(results),
        target_noop(folder),
        clean,
        target_delivery(ws, ws_problem),
    ]
    target_met = all(t.met for t in targets)

    searches = {j: read_samples(p) for j, p in maxload_files(folder).items()}
    plots = {
        LATENCY_PLOT: plot_latency(locust.history, folder / LATENCY_PLOT),
        SWEEP_PLOT: plot_sweep(results.get("sweep", []), folder / SWEEP_PLOT),
        MAXLOAD_PLOT: plot_maxload(searches, DEFAULT_THRESHOLD_MS, folder / MAXLOAD_PLOT),
    }
    for name, plotted in plots.items():
        if not plotted:
            # A plot left from an earlier report would show data this one does not have.
            (folder / name).unlink(missing_ok=True)

    lines = header(run, locust_info)
    lines += verdict(targets, target_met)
    lines += wrk_section(run, wrk, stack)
    lines += sweep_section(results.get("sweep", []), plots[SWEEP_PLOT])
    lines += locust_section(run, locust_info, locust, ws, ws_problem, plots[LATENCY_PLOT])
    lines += maxload_section(searches, plots[MAXLOAD_PLOT])
    (folder / "report.md").write_text("\n".join(lines).rstrip() + "\n")

    summary = {
        "finished": run.get("finished") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "target_met": target_met,
        "targets": [{"name": t.name, "met": t.met, "detail": t.detail} for t in targets],
        "errors": errors,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def header(run: dict, locust_info: dict) -> list[str]:
    release = run.get("release") or "unknown release"
    lines = [f"# Load test of {run.get('site_url', 'the site')}", ""]
    facts = [
        f"- Run: {run.get('started', '?')} to {run.get('finished', '?')}, inventory "
        f"`{run.get('inventory', '?')}`, release `{release}`.",
    ]
    if run.get("wrk_seconds"):
        facts.append(f"- wrk: {run['wrk_seconds']} s per figure.")
    users = locust_info.get("users") or {}
    if users or run.get("locust_seconds"):
        crowd = ", ".join(f"{n} {journey}" for journey, n in users.items()) or "?"
        facts.append(f"- Locust: {run.get('locust_seconds', '?')} s with {crowd} users.")
    return lines + facts + [""]


def verdict(targets: list[Target], target_met: bool) -> list[str]:
    missed = sum(not t.met for t in targets)
    lines = ["## Targets", ""]
    if target_met:
        lines.append("**All targets met**, no errors, nothing lost.")
    else:
        lines.append(f"**{missed} of {len(targets)} missed.**")
    lines.append("")
    rows = [[t.name, "met" if t.met else "**missed**", t.detail] for t in targets]
    return lines + table(["Target", "Result", "Detail"], rows, "lll") + [""]


def wrk_section(run: dict, wrk: list[dict], stack: dict[int, dict[str, Cell]]) -> list[str]:
    lines = ["## Side by side (wrk)", ""]
    if not wrk:
        return lines + ["No wrk figures in results.json.", ""]
    limit = next((e for e in wrk if e["id"] == "limit"), None)
    limit_rate = limit["result"]["rate"] if limit else None
    rows = []
    for e in wrk:
        r = e["result"]
        lat = r["latency_ms"]
        ratio = fmt_ratio(r["rate"] / limit_rate) if limit_rate else "n/a"
        workers = f" ({e['workers']} workers)" if e.get("workers") else ""
        rows.append(
            [
                f"**{e['id']}**{workers}: {e.get('title', '')}",
                str(e.get("connections", "")),
                fmt_rate(r["rate"]),
                ratio,
                fmt_ms(lat.get("p50")),
                fmt_ms(lat.get("p95")),
                fmt_ms(lat.get("p99")),
                fmt_ms(lat.get("max")),
                wrk_error_text(r),
            ]
        )
    lines += table(
        [
            "Figure",
            "Connections",
            "req/s",
            "× limit",
            "p50 (ms)",
            "p95 (ms)",
            "p99 (ms)",
            "max (ms)",
            "Errors",
        ],
        rows,
    )
    lines += [
        "",
        "Errors are wrk's connect, read, write, timeout and status (≥ 400) counts; a figure "
        "with errors is not clean.",
        "",
        "### The stack during each figure (Graphite)",
        "",
    ]
    notes: list[str] = []

    def shown(cell: Cell) -> str:
        if not cell.reason:
            return cell.text
        if cell.reason not in notes:
            notes.append(cell.reason)
        return f"n/a [{notes.index(cell.reason) + 1}]"

    rows = []
    for e in wrk:
        cells = stack[id(e)]
        window = (
            f"{iso(int(e['started']))[11:]}–{iso(int(e['finished']) + WINDOW_TAIL_SECONDS)[11:]}"
            if e.get("started") is not None and e.get("finished") is not None
            else "?"
        )
        rows.append(
            [
                f"**{e['id']}**",
                window,
                shown(cells["varnish"]),
                shown(cells["memcached"]),
                shown(cells["busy_workers"]),
                shown(cells["db_connections"]),
            ]
        )
    lines += table(
        [
            "Figure",
            "Window (UTC)",
            "Varnish hit ratio",
            "Memcached hit ratio",
            "Busy uWSGI workers (max)",
            "Database connections (max)",
        ],
        rows,
    )
    lines += [
        "",
        f"collectd's 10 s samples from {run.get('graphite') or 'Graphite'}, over each figure's "
        f"run plus {WINDOW_TAIL_SECONDS} s; hit ratios are hits / (hits + misses).",
    ]
    if notes:
        lines += [""] + [f"{n}. {reason}" for n, reason in enumerate(notes, 1)]
    return lines + [""] + cpu_section(wrk)


def cpu_section(wrk: list[dict]) -> list[str]:
    rows = []
    for e in wrk:
        use = cpu_use(e)
        if use is None:
            continue
        here = ", ".join(f"{name} {us:,.0f}" for name, us in list(use.host_us.items())[:5])
        rows.append(
            [
                f"**{e['id']}**",
                e.get("host", "?"),
                f"{use.busy_share:.0%}",
                f"{use.per_request_us:,.0f}",
                here or "-",
                f"{use.elsewhere_us:,.0f}",
            ]
        )
    if not rows:
        return []
    lines = ["### Where the CPU went (µs of CPU per request)", ""]
    lines += table(
        [
            "Figure",
            "Measured from",
            "Machine busy",
            "Whole machine",
            "On that host, by process",
            "Elsewhere",
        ],
        rows,
    )
    return lines + [
        "",
        "cpu-during.py around each wrk run: the machine's busy CPU time (every host of a "
        "local environment shares its cores) and the measuring host's processes, wrk "
        "included, divided by the requests answered. When the cores are saturated, rates "
        "stand in the inverse ratio of these figures.",
        "",
    ]


def sweep_section(sweep: list[dict], plotted: bool) -> list[str]:
    if not sweep:
        return []
    lines = ["## Rate against concurrency (wrk sweep)", ""]
    ids = list(dict.fromkeys(e["id"] for e in sweep))
    by_key = {(e["id"], e["connections"]): e["result"] for e in sweep}
    header_row = ["Connections"]
    for figure_id in ids:
        header_row += [f"{figure_id} req/s", f"{figure_id} p99 (ms)"]
    rows = []
    for connections in sorted({e["connections"] for e in sweep}):
        row = [str(connections)]
        for figure_id in ids:
            r = by_key.get((figure_id, connections))
            if r is None:
                row += ["", ""]
                continue
            errors = f" ({wrk_errors(r)} errors)" if wrk_errors(r) else ""
            row += [fmt_rate(r["rate"]) + errors, fmt_ms(r["latency_ms"]["p99"])]
        rows.append(row)
    lines += table(header_row, rows)
    if plotted:
        lines += ["", f"![Rate and p99 against connections]({SWEEP_PLOT})"]
    return lines + [""]


def locust_section(
    run: dict,
    locust_info: dict,
    locust: LocustResults,
    ws: dict | None,
    ws_problem: str,
    plotted: bool,
) -> list[str]:
    lines = ["## Locust journeys", ""]
    if locust.stats is None:
        lines += ["No Locust results (no _stats.csv).", ""]
    else:
        rows = []
        for r in [*locust.stats, *([locust.total] if locust.total else [])]:
            name = "**All requests**" if r is locust.total else request_label(r.kind, r.name)
            # Whole milliseconds, as Locust keeps its percentiles.
            rows.append(
                [
                    name,
                    fmt_count(r.count),
                    fmt_count(r.failures),
                    *("n/a" if v is None else fmt_count(v) for v in (r.p50, r.p95, r.p99, r.max)),
                    fmt_rate(r.rate),
                ]
            )
        lines += table(
            [
                "Request",
                "Count",
                "Failures",
                "p50 (ms)",
                "p95 (ms)",
                "p99 (ms)",
                "max (ms)",
                "req/s",
            ],
            rows,
        )
        lines += [
            "",
            "A 429 with Retry-After on a post or a join is the site's rate limit at work (the "
            "load comes from one address): it is counted under its own name, not as a failure. "
            '"message delivered" is the time from a post being sent to its event on each of the '
            "room's sockets.",
            "",
        ]
        if locust.failures:
            lines += ["Failures:", ""]
            lines += table(
                ["Request", "Error", "Occurrences"],
                [
                    [request_label(f["Method"], f["Name"]), f"`{f['Error']}`", f["Occurrences"]]
                    for f in locust.failures
                ],
                "llr",
            )
            lines.append("")
    lines += ["### WebSocket delivery", ""]
    if ws is None:
        lines.append(f"Not measured: {ws_problem}.")
    else:
        latency = ws.get("latency_ms") or {}
        figures = ", ".join(
            f"{key} {fmt_ms(latency[key])} ms"
            for key in ("p50", "p95", "p99", "max")
            if latency.get(key) is not None
        )
        lines.append(
            f"{fmt_count(ws.get('posted', 0))} messages posted "
            f"({fmt_count(ws.get('rate_limited', 0))} more refused by the rate limit) to "
            f"{fmt_count(ws.get('listeners', 0))} listening sockets: "
            f"{fmt_count(ws.get('delivered', 0))} of {fmt_count(ws.get('expected_deliveries', 0))}"
            f" expected deliveries received, **{fmt_count(ws.get('lost', 0))} lost**, "
            f"{fmt_count(ws.get('reconnects', 0))} reconnects."
            + (f" Delivery latency: {figures}." if figures else "")
        )
    if plotted:
        lines += ["", f"![Locust response times and users over time]({LATENCY_PLOT})"]
    return lines + [""]


def maxload_section(searches: dict[str, list], plotted: bool) -> list[str]:
    if not searches:
        return []
    lines = [
        "## Maximum load per journey",
        "",
        f"The most users each journey can have while its slowest request of interest stays "
        f"≤ {DEFAULT_THRESHOLD_MS:,.0f} ms with no failures (loadtest/maxload.py: doubling, "
        "then a binary search).",
        "",
    ]
    rows = []
    for journey, samples in searches.items():
        result = conclude(samples)
        best = result.best
        request = REQUESTS_OF_INTEREST.get(journey, "?")
        if best is None:
            answer, slowest, rate = "0 (even 1 user was too many)", "", ""
        else:
            answer = f"{'≥ ' if result.capped else ''}{result.max_users}"
            slowest, rate = fmt_ms(best.max_response_ms), fmt_rate(best.rate)
        steps = ", ".join(f"{s.users}{'' if s.ok else '✗'}" for s in samples)
        rows.append([journey, request, answer, slowest, rate, steps])
    lines += table(
        ["Journey", "Request", "Max users", "Slowest (ms)", "req/s", "Steps (✗ too many)"],
        rows,
        "llrrrl",
    )
    lines += ["", '"≥": every step was good up to the search\'s cap.']
    if plotted:
        lines += ["", f"![Slowest response against users]({MAXLOAD_PLOT})"]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where results.json is (reports/loadtest)")
    parser.add_argument("--graphite", help="Graphite's base URL (default: results.json's)")
    parser.add_argument("--graphite-timeout", type=float, default=5.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    if not (args.folder / "results.json").exists():
        parser.error(f"no results.json in {args.folder}")
    summary = build(args.folder, args.graphite, args.graphite_timeout)
    print(f"report: {args.folder / 'report.md'}")
    for target in summary["targets"]:
        print(f"  {'met   ' if target['met'] else 'MISSED'} {target['name']}: {target['detail']}")
    print(f"target_met: {str(summary['target_met']).lower()}, errors: {summary['errors']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
