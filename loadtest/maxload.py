#!/usr/bin/env python3
"""Maximum load per Locust journey: the most users a journey can have while the slowest
response to its request of interest stays within a threshold (1,200 ms) with no failures.

After David Foster's "perftest maxload": run the journey with 1 user, then double the
users until a step goes wrong (the shaft of the hockey stick), then binary-search between
the last good and the first bad count (the knee). Each step is a real headless Locust run:

    locust -f loadtest/locustfile.py --headless -u N -r N -t <step>s --csv <tmp> <Class>

with the LOADTEST_* environment passed through (see loadtest/locustfile.py), except
LOADTEST_WS_REPORT, which each step points at its own scratch file so the main run's
WebSocket report is not overwritten.

    python loadtest/maxload.py [--classes Reader Member Newcomer] [--step-seconds 15]
                               [--threshold-ms 1200] [--max-users 256] [--out-dir DIR]

writes DIR/maxload-<Class>.csv (users,max_response_ms,failures,requests,rate,ok), one row
per step in the order taken, and prints "Maximum load is N users (...)" per class.
`max_response_ms`, `requests` and `rate` (requests per second of the step) are the
request of interest's; `failures` counts every failed request of the step, since a journey whose
logins fail is not carrying its load whatever its page times say.

Locust writes its _stats.csv once a second, so it can miss the run's last second; the
step's numbers come from --json-file, written once at the end, and the CSV is the
fallback.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

LOADTEST = Path(__file__).resolve().parent
DEFAULT_OUT_DIR = LOADTEST.parent / "reports" / "loadtest"
DEFAULT_THRESHOLD_MS = 1200.0
# The request whose slowest response decides each journey's step; the names are the ones
# loadtest/locustfile.py gives its requests.
REQUESTS_OF_INTEREST = {
    "Reader": "GET /",
    "Member": "GET room page",
    "Newcomer": "GET home",
}
CSV_COLUMNS = ["users", "max_response_ms", "failures", "requests", "rate", "ok"]


@dataclass(frozen=True)
class Sample:
    """One step: what the request of interest did with `users` users."""

    users: int
    max_response_ms: float | None  # None: the request of interest was never made
    failures: int
    requests: int
    rate: float
    ok: bool


@dataclass(frozen=True)
class SearchResult:
    max_users: int  # 0 when even one user was too many
    capped: bool  # every step was good up to the cap: the real maximum is higher
    samples: list[Sample]

    @property
    def best(self) -> Sample | None:
        """The sample the answer rests on."""
        good = [s for s in self.samples if s.ok and s.users == self.max_users]
        return good[-1] if good else None


def judge(
    users: int,
    max_response_ms: float | None,
    failures: int,
    requests: int,
    rate: float,
    threshold_ms: float,
) -> Sample:
    ok = requests > 0 and failures == 0 and max_response_ms is not None
    ok = ok and max_response_ms <= threshold_ms
    return Sample(users, max_response_ms, failures, requests, rate, ok)


def search_max_users(
    measure: Callable[[int], Sample],
    max_users: int = 256,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """The largest user count whose sample is ok, by doubling from 1 then bisecting.

    `measure(users)` runs one step and returns its Sample. Counts are never measured
    twice; the answer is the largest good count below the smallest bad one.
    """
    if max_users < 1:
        raise ValueError("max_users must be at least 1")
    samples: list[Sample] = []

    def good(users: int) -> bool:
        sample = measure(users)
        samples.append(sample)
        log(describe(sample))
        return sample.ok

    log("Seeking the shaft of the hockey stick (doubling the users)...")
    last_good, first_bad = 0, None
    users = 1
    while True:
        if not good(users):
            first_bad = users
            break
        last_good = users
        if users >= max_users:
            break
        users = min(users * 2, max_users)

    if first_bad is None:
        return SearchResult(last_good, True, samples)

    if first_bad - last_good > 1:
        steps = math.ceil(math.log2(first_bad - last_good))
        log(f"Seeking the knee between {last_good} and {first_bad} users: about {steps} steps.")
    while first_bad - last_good > 1:
        middle = (last_good + first_bad) // 2
        if good(middle):
            last_good = middle
        else:
            first_bad = middle
    return SearchResult(last_good, False, samples)


def describe(sample: Sample) -> str:
    slowest = "no request" if sample.max_response_ms is None else f"{sample.max_response_ms:.0f} ms"
    verdict = "ok" if sample.ok else "too many"
    return (
        f"  {sample.users} users: slowest {slowest}, {sample.requests} requests "
        f"({sample.rate:.1f}/s), {sample.failures} failures -> {verdict}"
    )


def conclusion(journey: str, request: str, result: SearchResult, step_seconds: float | None) -> str:
    over = f" over {step_seconds:g} s steps" if step_seconds else ""
    best = result.best
    if best is None:
        return (
            f"Maximum load is 0 users for {journey}: even 1 user's slowest '{request}' "
            f"was over the threshold or a request failed{over}."
        )
    at_least = "at least " if result.capped else ""
    cap = (
        f" {result.max_users} is the cap: raise --max-users to look further."
        if result.capped
        else ""
    )
    slowest = f"{best.max_response_ms:,.0f} ms"
    return (
        f"Maximum load is {at_least}{result.max_users} users ({journey}: slowest "
        f"'{request}' {slowest}, {best.rate:,.1f} requests/s{over}).{cap}"
    )


def conclude(samples: list[Sample], max_users: int | None = None) -> SearchResult:
    """The search's answer from its recorded samples (for the report): the largest good
    count below the smallest bad one; capped when nothing was bad."""
    bad = [s.users for s in samples if not s.ok]
    limit = min(bad) if bad else math.inf
    good = [s.users for s in samples if s.ok and s.users < limit]
    best = max(good, default=0)
    capped = not bad and (max_users is None or best >= max_users)
    return SearchResult(best, capped, list(samples))


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for s in samples:
            slowest = "" if s.max_response_ms is None else f"{s.max_response_ms:.1f}"
            writer.writerow([s.users, slowest, s.failures, s.requests, f"{s.rate:.2f}", int(s.ok)])


def read_samples(path: Path) -> list[Sample]:
    with path.open(newline="") as source:
        return [
            Sample(
                users=int(row["users"]),
                max_response_ms=float(row["max_response_ms"]) if row["max_response_ms"] else None,
                failures=int(row["failures"]),
                requests=int(row["requests"]),
                rate=float(row["rate"]),
                ok=row["ok"].strip().lower() in ("1", "true", "yes"),
            )
            for row in csv.DictReader(source)
        ]


def step_figures(prefix: Path, request: str) -> tuple[float | None, int, int]:
    """(slowest ms, failures, requests) of the request of interest, from the step's
    --json-file when Locust wrote it, else from its _stats.csv; failures are the step's."""
    json_file = prefix.with_name(prefix.name + ".json")
    if json_file.exists():
        entries = json.loads(json_file.read_text())
        failures = sum(e["num_failures"] for e in entries)
        for e in entries:
            if e["name"] == request and e["num_requests"]:
                return e["max_response_time"], failures, e["num_requests"]
        return None, failures, 0
    with prefix.with_name(prefix.name + "_stats.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))
    failures = sum(int(r["Failure Count"]) for r in rows if r["Name"] == "Aggregated")
    for r in rows:
        if r["Name"] == request and r["Type"] and int(r["Request Count"]):
            return float(r["Max Response Time"]), failures, int(r["Request Count"])
    return None, failures, 0


def locust_measure(
    journey: str,
    request: str,
    args: argparse.Namespace,
    scratch: Path,
) -> Callable[[int], Sample]:
    """measure(users) running one headless Locust step of `journey`."""

    def measure(users: int) -> Sample:
        prefix = scratch / f"{journey}-{users}"
        env = dict(os.environ, LOADTEST_WS_REPORT=str(scratch / f"{journey}-{users}-ws.json"))
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(args.locustfile),
            "--headless",
            "--only-summary",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{args.step_seconds:g}s",
            "--csv",
            str(prefix),
            "--json-file",
            str(prefix),
            journey,
        ]
        # Locust's log and summary, shown when the step cannot run.
        with open(str(prefix) + ".out", "w") as output:
            done = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        # 1 is Locust's "some requests failed": a result, not a crash.
        if done.returncode not in (0, 1):
            tail = Path(str(prefix) + ".out").read_text()[-2000:]
            raise RuntimeError(f"locust exited {done.returncode} with {users} users:\n{tail}")
        slowest, failures, requests = step_figures(prefix, request)
        if users == 1 and requests == 0 and failures == 0:
            # Nothing went wrong and nothing was measured: the step is shorter than the
            # journey's think time, and calling 1 user too many would be a made-up answer.
            raise RuntimeError(
                f"no '{request}' completed in a {args.step_seconds:g} s step with 1 user: "
                "lengthen --step-seconds"
            )
        if args.pause_seconds:
            time.sleep(args.pause_seconds)  # let sockets close and queues drain
        # Over the whole step: Locust's own per-request rate spans first to last request
        # only, which a step with one or two of them turns into nonsense.
        rate = requests / args.step_seconds
        return judge(users, slowest, failures, requests, rate, args.threshold_ms)

    return measure


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--classes",
        nargs="+",
        default=list(REQUESTS_OF_INTEREST),
        help="Locust user classes (journeys) to search, in order (default: %(default)s)",
    )
    parser.add_argument(
        "--step-seconds", type=float, default=15.0, help="length of each step (default: 15)"
    )
    parser.add_argument(
        "--threshold-ms",
        type=float,
        default=DEFAULT_THRESHOLD_MS,
        help="slowest response a good step may have (default: %(default)g)",
    )
    parser.add_argument(
        "--max-users", type=int, default=256, help="stop doubling here (default: 256)"
    )
    parser.add_argument(
        "--pause-seconds", type=float, default=5.0, help="rest between steps (default: 5)"
    )
    parser.add_argument(
        "--request",
        action="append",
        default=[],
        metavar="CLASS=NAME",
        help="the request of interest of a class, e.g. 'Reader=GET /' (repeatable)",
    )
    parser.add_argument("--locustfile", type=Path, default=LOADTEST / "locustfile.py")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="where maxload-<Class>.csv go (default: reports/loadtest)",
    )
    args = parser.parse_args(argv)
    # "Reader,Member" works as well as "Reader Member".
    args.classes = [c for item in args.classes for c in item.split(",") if c]
    args.requests = dict(REQUESTS_OF_INTEREST)
    for item in args.request:
        journey, sep, name = item.partition("=")
        if not sep or not name:
            parser.error(f"--request wants CLASS=NAME, not {item!r}")
        args.requests[journey] = name
    unknown = [c for c in args.classes if c not in args.requests]
    if unknown:
        parser.error(f"no request of interest for {', '.join(unknown)}: pass --request CLASS=NAME")
    if args.max_users < 1:
        parser.error("--max-users must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    conclusions = []
    with tempfile.TemporaryDirectory(prefix="maxload-") as scratch:
        for journey in args.classes:
            request = args.requests[journey]
            out = args.out_dir / f"maxload-{journey}.csv"
            print(f"{journey}: largest user count with '{request}' <= {args.threshold_ms:g} ms")
            samples: list[Sample] = []
            measure = locust_measure(journey, request, args, Path(scratch))

            def recorded(users: int, measure=measure, samples=samples, out=out) -> Sample:
                # Written after every step: an interrupted search keeps what it measured.
                sample = measure(users)
                samples.append(sample)
                write_samples(out, samples)
                return sample

            try:
                result = search_max_users(recorded, args.max_users)
            except RuntimeError as error:
                print(f"maxload: {journey}: {error}", file=sys.stderr)
                return 1
            line = conclusion(journey, request, result, args.step_seconds)
            print(line)
            print(f"  samples: {out}")
            conclusions.append(line)
    if len(conclusions) > 1:
        print("\n".join(["", *conclusions]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
