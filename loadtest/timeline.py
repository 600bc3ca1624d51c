"""The timeline of a Locust run, for the fault drills (drills/report.py): every failure with
its time, request name and status or exception; per second, how many requests of each name
answered and how fast; and every post the site accepted, with its token.

The locustfile keeps one Timeline when LOADTEST_FAILURES_FILE is set and writes it there at
test stop, as JSON:

    {"started": epoch, "finished": epoch,
     "failures": [{"t": epoch, "type": "GET", "name": "GET /", "status": 503,
                   "error": "HTTP 503"}, ...],
     "seconds": [{"t": epoch second, "name": "GET /", "ok": 12, "failed": 0,
                  "ms_sum": 310.5, "ms_max": 60.1}, ...],
     "accepted": [{"t": epoch, "token": "0123456789abcdef"}, ...]}

Standard library only, and no Locust import, so it is unit-tested on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A failure's error text is cut to this length (Locust's include the answer's body).
ERROR_CHARS = 200


@dataclass
class Second:
    ok: int = 0
    failed: int = 0
    ms_sum: float = 0.0
    ms_max: float = 0.0


@dataclass
class Timeline:
    clock: Callable[[], float] = time.time
    started: float | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[tuple[int, str], Second] = field(default_factory=dict)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        self.started = self.clock()
        self.failures.clear()
        self.seconds.clear()
        self.accepted.clear()

    def request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        status: int | None,
        error: object = None,
    ) -> None:
        """One request as Locust's request event reports it (error: its exception, or None)."""
        now = self.clock()
        second = self.seconds.setdefault((int(now), name), Second())
        elapsed = float(response_time or 0.0)
        second.ms_sum += elapsed
        second.ms_max = max(second.ms_max, elapsed)
        if error is None:
            second.ok += 1
            return
        second.failed += 1
        self.failures.append(
            {
                "t": round(now, 3),
                "type": request_type,
                "name": name,
                "status": status or None,
                "error": describe_error(error),
            }
        )

    def post_accepted(self, token: str) -> None:
        self.accepted.append({"t": round(self.clock(), 3), "token": token})

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "finished": round(self.clock(), 3),
            "failures": self.failures,
            "seconds": [
                {
                    "t": t,
                    "name": name,
                    "ok": s.ok,
                    "failed": s.failed,
                    "ms_sum": round(s.ms_sum, 1),
                    "ms_max": round(s.ms_max, 1),
                }
                for (t, name), s in sorted(self.seconds.items())
            ],
            "accepted": self.accepted,
        }

    def write(self, path: str) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.as_dict(), indent=1) + "\n")


def describe_error(error: object) -> str:
    """An exception as one short line ("CatchResponseError: HTTP 503")."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__ if isinstance(error, BaseException) else ""
    line = f"{kind}: {text}" if kind and text else kind or text
    return line[:ERROR_CHARS]


def message_text(token: str, marker: str = "") -> str:
    """A post's text: the token the deliveries are matched by, then the run's marker (the
    drills count a run's messages in the database by it)."""
    return f"load test {token} {marker}".rstrip()
