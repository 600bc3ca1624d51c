#!/usr/bin/env python3
"""What the fault drills watch on a host, each with the host's own clock (epoch seconds):

    hpd_drill_probe.py sick --backend web1 --seconds 60
        polls `varnishadm backend.list` every 0.2 s until the backend whose name ends with
        "web1" ("-" read as "_", as Varnish names them) is sick: {"detected": epoch|null}
    hpd_drill_probe.py hit-ratio --target 0.9 --seconds 120 [--min-requests 20]
        samples `varnishstat -1 -j` every second until the hit ratio over the last second
        reaches the target: {"recovered": epoch|null, "ratio": last ratio}
    hpd_drill_probe.py busy --url http://127.0.0.1:1717/ --seconds 30
        samples uWSGI's stats server every 0.5 s: {"max_busy", "workers", "samples"}
    hpd_drill_probe.py kill-child --unit celery-worker@default
        SIGKILLs a child of the unit's main process that is using the CPU now (a pool
        process mid-task; else the one with the most CPU time): {"pid", "killed": epoch}

Prints one JSON line. Standard library only (roles/drills/tests/ tests the parsing).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def backend_state(listing: str, backend: str) -> str | None:
    """The health word ("sick", "healthy") of the backend named ...<backend> in
    `varnishadm backend.list` (Varnish 6: "Healthy 5/5"; 7: a Health column)."""
    suffix = backend.replace("-", "_")
    for line in listing.splitlines()[1:]:
        words = line.split()
        if not words or not words[0].endswith(suffix):
            continue
        for word in words[1:]:
            if word.lower() in ("sick", "healthy"):
                return word.lower()
    return None


def hit_counters(stats: dict[str, Any]) -> tuple[int, int]:
    """MAIN.cache_hit and MAIN.cache_miss from `varnishstat -1 -j` (6: top level; 7: under
    "counters")."""
    counters = stats.get("counters", stats)
    return (
        int(counters["MAIN.cache_hit"]["value"]),
        int(counters["MAIN.cache_miss"]["value"]),
    )


def ratio(before: tuple[int, int], after: tuple[int, int], min_requests: int) -> float | None:
    """The hit ratio between two samples; None below min_requests lookups."""
    hits, misses = after[0] - before[0], after[1] - before[1]
    if hits + misses < max(1, min_requests):
        return None
    return hits / (hits + misses)


def busy_workers(stats: dict[str, Any]) -> tuple[int, int]:
    """(busy, all) workers in uWSGI's stats."""
    workers = stats.get("workers", [])
    return sum(1 for w in workers if w.get("status") == "busy"), len(workers)


def children(pid: int, proc: Path = Path("/proc")) -> dict[int, int]:
    """The children of pid with their CPU ticks (utime + stime), from /proc/<n>/stat."""
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name, in parentheses, may hold spaces: read the fields after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found[int(entry.name)] = int(fields[11]) + int(fields[12])
    return found


def busiest(found: dict[int, int]) -> int | None:
    return max(found, key=lambda p: (found[p], -p)) if found else None


def working(before: dict[int, int], after: dict[int, int]) -> int | None:
    """The child that used the most CPU between two samples, None if none used any: a pool
    process between two tasks uses none, one mid-task does."""
    grown = {pid: ticks - before[pid] for pid, ticks in after.items() if pid in before}
    return busiest({p: g for p, g in grown.items() if g > 0})


def poll(check: Callable[[], Any], seconds: float, interval: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def cmd_sick(args: argparse.Namespace) -> dict[str, Any]:
    def check() -> float | None:
        return (
            time.time()
            if backend_state(run(["varnishadm", "backend.list"]), args.backend) == "sick"
            else None
        )

    return {"detected": poll(check, args.seconds, 0.2)}


def cmd_hit_ratio(args: argparse.Namespace) -> dict[str, Any]:
    state = {"last": hit_counters(json.loads(run(["varnishstat", "-1", "-j"]))), "ratio": None}

    def check() -> float | None:
        now = hit_counters(json.loads(run(["varnishstat", "-1", "-j"])))
        value = ratio(state["last"], now, args.min_requests)
        state["last"] = now
        if value is not None:
            state["ratio"] = round(value, 3)
        return time.time() if value is not None and value >= args.target else None

    recovered = poll(check, args.seconds, 1.0)
    return {"recovered": recovered, "ratio": state["ratio"]}


def cmd_busy(args: argparse.Namespace) -> dict[str, Any]:
    most, workers, samples = 0, 0, 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(args.url, timeout=2) as answer:  # noqa: S310 - loopback
                busy, workers = busy_workers(json.load(answer))
            most, samples = max(most, busy), samples + 1
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    return {"max_busy": most, "workers": workers, "samples": samples}


def cmd_kill_child(args: argparse.Namespace) -> dict[str, Any]:
    main = int(run(["systemctl", "show", "--property=MainPID", "--value", args.unit]).strip() or 0)
    # The most CPU time overall can be a process between two short tasks (it held none when
    # killed): wait, briefly, for one that is using the CPU now.
    pid = None
    if main:
        deadline = time.monotonic() + 3
        sample = children(main)
        while pid is None and time.monotonic() < deadline:
            time.sleep(0.05)
            before, sample = sample, children(main)
            pid = working(before, sample)
        pid = pid or busiest(sample)
    if pid is None:
        raise SystemExit(f"{args.unit}: no worker process to kill (main pid {main})")
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    return {"pid": pid, "main_pid": main, "killed": killed}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sick = sub.add_parser("sick")
    sick.add_argument("--backend", required=True)
    sick.add_argument("--seconds", type=float, default=60)
    hit = sub.add_parser("hit-ratio")
    hit.add_argument("--target", type=float, required=True)
    hit.add_argument("--seconds", type=float, default=120)
    hit.add_argument("--min-requests", type=int, default=20)
    busy = sub.add_parser("busy")
    busy.add_argument("--url", required=True)
    busy.add_argument("--seconds", type=float, default=30)
    kill = sub.add_parser("kill-child")
    kill.add_argument("--unit", required=True)
    args = parser.parse_args(argv)
    commands = {"sick": cmd_sick, "hit-ratio": cmd_hit_ratio, "busy": cmd_busy}
    commands["kill-child"] = cmd_kill_child
    print(json.dumps(commands[args.command](args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
