#!/usr/bin/python3
"""Run a command (wrk) and report where the CPU went while it ran.

Prints the command's output unchanged, then one line `CPU-JSON {...}`:
  seconds               how long the command ran
  cores                 the machine's CPUs
  machine_busy_seconds  CPU time the whole machine spent busy (/proc/stat is not namespaced
                        in a container, so this counts every host of a local environment)
  processes             CPU seconds by process name on this host, the command included

A process that ends during the run is counted in its parent's reaped-children times, so
recycled workers are not lost; /proc/<pid>/stat counts in clock ticks (usually 10 ms).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict

TICK = os.sysconf("SC_CLK_TCK")
# "uWSGI worker 3", "celery:worker2": numbered copies of one program count as one.
NUMBERED = re.compile(r"[\s:_-]*\d+$")


def machine_busy() -> float:
    """Busy CPU seconds of the machine since boot (every field but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    # guest and guest_nice (fields 8, 9) are already inside user and nice.
    return (sum(fields[:8]) - idle - iowait) / TICK


def processes() -> dict[int, tuple[str, float]]:
    """Each process's name and its CPU seconds, its reaped children's included."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:  # ended while we read
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 of stat(5); fields[0] is field 3.
        ticks = sum(int(v) for v in fields[11:15])
        found[int(entry)] = (NUMBERED.sub("", name) or name, ticks / TICK)
    return found


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: cpu-during.py -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    command = argv[1:]
    me = os.getpid()
    before, busy_before, started = processes(), machine_busy(), time.monotonic()
    completed = subprocess.run(command, check=False)  # noqa: S603 (the caller's own command)
    seconds = time.monotonic() - started
    after, busy_after = processes(), machine_busy()

    by_name: dict[str, float] = defaultdict(float)
    for pid, (name, cpu) in after.items():
        if pid == me:
            continue
        earlier = before.get(pid)
        # A pid seen twice with another name was reused: count the new process whole.
        by_name[name] += cpu - earlier[1] if earlier and earlier[0] == name else cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    by_name[os.path.basename(command[0])] += children.ru_utime + children.ru_stime

    report = {
        "seconds": round(seconds, 3),
        "cores": os.cpu_count(),
        "machine_busy_seconds": round(busy_after - busy_before, 2),
        "processes": {
            name: round(cpu, 2)
            for name, cpu in sorted(by_name.items(), key=lambda item: -item[1])
            if cpu >= 0.01
        },
    }
    sys.stdout.flush()
    print("CPU-JSON " + json.dumps(report, sort_keys=False), flush=True)
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
