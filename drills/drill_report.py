"""The fault drills' report (playbooks/drills.yml, `make drills`): one row per drill, from
what the playbook observed and the Locust timeline of the load it ran under.

    python drills/drill_report.py reports/drills

For each drill <name> in drills-run.json's "drills", it reads from <name>/:
    drill.json            what the playbook recorded: {"drill", "injected", "times":
                          {"load_started", "injected", "detected"?, "restored", "healthy",
                          "load_stopped"} (epoch seconds), "observed": {...}}
    timeline.json         the Locust timeline (loadtest/timeline.py)
    ws.json               the WebSocket delivery summary (Member load only)
and writes drills.json (every figure and verdict) and report.md (the table). Exits 1 when a
drill failed, so the playbook fails after the report is written. Standard library only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Failures this close after detection are still the detected fault's (requests in flight
# when Varnish called the server sick).
DETECTION_SLACK_SECONDS = 1.0


@dataclass
class Verdict:
    drill: str
    injected: str
    passed: bool
    deciding: str
    detection_s: float | None = None
    recovery_s: float | None = None
    errors_before: int = 0
    errors_during: int = 0
    errors_after: int = 0
    figures: dict[str, Any] = field(default_factory=dict)


# --- pure helpers ---------------------------------------------------------------------------


def between(failures: Iterable[dict[str, Any]], start: float | None, end: float | None):
    """The failures at or after start and before end (None: unbounded)."""
    return [
        f for f in failures if (start is None or f["t"] >= start) and (end is None or f["t"] < end)
    ]


def server_errors(failures: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures the site answered with a 5xx (not timeouts or connection errors)."""
    return [f for f in failures if isinstance(f.get("status"), int) and f["status"] >= 500]


def window(
    seconds: Iterable[dict[str, Any]],
    start: float | None,
    end: float | None,
    names: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Requests answered in [start, end) (whole seconds), optionally only some names: ok,
    failed and the mean response time in ms."""
    wanted = set(names) if names is not None else None
    ok = failed = 0
    ms_sum = 0.0
    for s in seconds:
        if wanted is not None and s["name"] not in wanted:
            continue
        if (start is not None and s["t"] < int(start)) or (end is not None and s["t"] >= end):
            continue
        ok += s["ok"]
        failed += s["failed"]
        ms_sum += s["ms_sum"]
    count = ok + failed
    return {"ok": ok, "failed": failed, "mean_ms": round(ms_sum / count, 1) if count else None}


def seconds_between(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(end - start, 2)


def counts(timeline: dict[str, Any], times: dict[str, float]) -> dict[str, int]:
    """Errors before the fault, while it lasts (until the stack is healthy again), after."""
    failures = timeline.get("failures", [])
    return {
        "errors_before": len(between(failures, None, times.get("injected"))),
        "errors_during": len(between(failures, times.get("injected"), times.get("healthy"))),
        "errors_after": len(between(failures, times.get("healthy"), None)),
    }


def missing_tokens(accepted: Iterable[dict[str, Any]], stored: Iterable[str]) -> list[str]:
    """The tokens of accepted posts the database does not hold."""
    found = set(stored)
    return sorted({a["token"] for a in accepted} - found)


# --- one judge per drill --------------------------------------------------------------------


def judge_web_all_down(d: dict, tl: dict, ws: dict | None) -> tuple[bool, str, dict]:
    times, obs = d["times"], d["observed"]
    during = window(tl.get("seconds", []), times["injected"], times["restored"])
    failures = between(tl.get("failures", []), times["injected"], times["restored"])
    probes_ok = (
        all(status == 200 for status in obs.get("cached_statuses", []))
        and bool(obs.get("cached_statuses"))
        and obs.get("uncached_status") == 503
        and bool(obs.get("uncached_title_found"))
    )
    figures = {
        "stale_200s": during["ok"],
        "503s": len([f for f in failures if f.get("status") == 503]),
        "cached_statuses": obs.get("cached_statuses"),
        "uncached_status": obs.get("uncached_status"),
        "uncached_title_found": obs.get("uncached_title_found"),
        "fresh_after_s": seconds_between(times["restored"], times.get("fresh")),
    }
    passed = probes_ok and during["ok"] > 0 and not failures
    deciding = (
        f"{during['ok']} cached pages served stale, {len(failures)} failed; uncached "
        f"{obs.get('uncached_status')} (error page title "
        f"{'found' if obs.get('uncached_title_found') else 'missing'})"
    )
    return passed, deciding, figures


def judge_web_one_killed(d: dict, tl: dict, ws: dict | None) -> tuple[bool, str, dict]:
    times = d["times"]
    failures = tl.get("failures", [])
    detected = times.get("detected")
    if detected is None:
        return False, "Varnish never called the server sick", {}
    late = between(failures, detected + DETECTION_SLACK_SECONDS, times.get("restored"))
    early = between(failures, times["injected"], detected + DETECTION_SLACK_SECONDS)
    figures = {
        "detection_s": seconds_between(times["injected"], detected),
        "errors_until_detection": len(early),
        "errors_after_detection": len(late),
    }
    deciding = (
        f"{len(early)} errors until detection ({figures['detection_s']} s), {len(late)} after it"
    )
    return not late, deciding, figures


def judge_memcached_stopped(d: dict, tl: dict, ws: dict | None) -> tuple[bool, str, dict]:
    times = d["times"]
    seconds = tl.get("seconds", [])
    fives = server_errors(between(tl.get("failures", []), times["injected"], times["healthy"]))
    before = window(seconds, times["load_started"], times["injected"])
    during = window(seconds, times["injected"], times["restored"])
    figures = {
        "server_errors": len(fives),
        "mean_ms_before": before["mean_ms"],
        "mean_ms_during": during["mean_ms"],
        "requests_during": during["ok"] + during["failed"],
        "cache_errors_counted": d["observed"].get("cache_errors_counted"),
    }
    deciding = (
        f"{len(fives)} server errors; mean {before['mean_ms']} ms before, "
        f"{during['mean_ms']} ms with Memcached stopped"
    )
    return not fives, deciding, figures


def judge_celery_worker_killed(d: dict, tl: dict, ws: dict | None) -> tuple[bool, str, dict]:
    obs = d["observed"]
    expected, done = int(obs.get("tasks_enqueued", 0)), int(obs.get("tasks_done", -1))
    figures = {
        "tasks_enqueued": expected,
        "tasks_done": done,
        "killed_pid": obs.get("killed_pid"),
        "all_done_after_s": seconds_between(d["times"]["injected"], d["times"].get("done")),
    }
    figures["tasks_done_at_kill"] = obs.get("tasks_done_at_kill")
    # Celery names the job a killed pool process held (WorkerLostError): proof the kill came
    # mid-task, so that a redelivery, not luck, brought every effect.
    mid_run = bool(obs.get("job_lost_at_kill"))
    figures["job_lost_at_kill"] = mid_run
    deciding = f"{done} of {expected} tasks' effects found ({expected - done} lost)"
    if not mid_run:
        deciding += (
            "; the killed process held no task (no WorkerLostError in the worker's journal):"
            " raise drills_celery_tasks or drills_celery_image_px"
        )
    passed = expected > 0 and done == expected and bool(obs.get("killed_pid")) and mid_run
    return passed, deciding, figures


def judge_postgresql_restarted(d: dict, tl: dict, ws: dict | None) -> tuple[bool, str, dict]:
    obs = d["observed"]
    accepted = tl.get("accepted", [])
    lost = missing_tokens(accepted, obs.get("stored_tokens", []))
    streaming_ok = obs.get("replicas_streaming") == obs.get("replicas_expected")
    figures = {
        "posts_accepted": len(accepted),
        "posts_lost": len(lost),
        "lost_examples": lost[:10],
        "replicas_streaming": obs.get("replicas_streaming"),
        "replicas_expected": obs.get("replicas_expected"),
        "back_after_s": seconds_between(d["times"]["injected"], d["times"].get("healthy")),
    }
    deciding = (
        f"{len(accepted)} accepted posts, {len(lost)} missing from the database; "
        f"{obs.get('replicas_streaming')}/{obs.get('replicas_expected')} replicas streaming"
    )
    return bool(accepted) and not lost and streaming_ok, deciding, figures


def judge_redis_restarted(d: dict, tl: dict, ws: dict | None) -> tuple[bool, str, dict]:
    obs = d["observed"]
    ws = ws or {}
    lost = ws.get("lost")
    figures = {
        "posted": ws.get("posted"),
        "expected_deliveries": ws.get("expected_deliveries"),
        "lost": lost,
        "reconnects": ws.get("reconnects"),
        "celery_task_after_restart": obs.get("celery_task_done"),
    }
    passed = lost == 0 and bool(ws.get("expected_deliveries")) and bool(obs.get("celery_task_done"))
    deciding = (
        f"{lost} of {ws.get('expected_deliveries')} deliveries lost after "
        f"{ws.get('reconnects')} reconnects; Celery task after the restart "
        f"{'done' if obs.get('celery_task_done') else 'NOT done'}"
    )
    return passed, deciding, figures


def judge_varnish_restarted(d: dict, tl: dict, ws: dict | None) -> tuple[bool, str, dict]:
    times, obs = d["times"], d["observed"]
    back = times.get("back") or times.get("healthy")
    after = server_errors(between(tl.get("failures", []), back, None))
    figures = {
        "server_errors_after_back": len(after),
        "uwsgi_busy_max": obs.get("uwsgi_busy_max"),
        "uwsgi_workers": obs.get("uwsgi_workers"),
        "back_after_s": seconds_between(times["injected"], back),
        "hit_ratio_recovered_s": seconds_between(back, times.get("hit_ratio_recovered")),
        "hit_ratio_target": obs.get("hit_ratio_target"),
    }
    deciding = (
        f"{len(after)} server errors once Varnish was back; busiest uWSGI "
        f"{obs.get('uwsgi_busy_max')}/{obs.get('uwsgi_workers')} workers"
    )
    return not after, deciding, figures


JUDGES: dict[str, Callable[[dict, dict, dict | None], tuple[bool, str, dict]]] = {
    "web_all_down": judge_web_all_down,
    "web_one_killed": judge_web_one_killed,
    "memcached_stopped": judge_memcached_stopped,
    "celery_worker_killed": judge_celery_worker_killed,
    "postgresql_restarted": judge_postgresql_restarted,
    "redis_restarted": judge_redis_restarted,
    "varnish_restarted": judge_varnish_restarted,
}


def epochs(times: dict[str, Any]) -> dict[str, float | None]:
    """The record's times as numbers (Ansible may write them as strings; empty: None)."""
    return {k: float(v) if v not in (None, "") else None for k, v in times.items()}


def verdict(d: dict[str, Any], timeline: dict[str, Any], ws: dict[str, Any] | None) -> Verdict:
    """Every drill also needs the stack healthy again (times.healthy set) and no error in
    the playbook's own tasks before it passes."""
    d = d | {"times": epochs(d["times"])}
    d["times"].setdefault("injected", None)
    times = d["times"]
    if times["injected"] is None:
        passed, deciding, figures = False, "the fault was never injected", {}
    else:
        passed, deciding, figures = JUDGES[d["drill"]](d, timeline, ws)
    if times.get("healthy") is None:
        passed, deciding = False, deciding + "; the stack was NOT healthy again"
    elif not timeline:
        passed, deciding = False, deciding + "; no Locust timeline (did the load run?)"
    elif timeline.get("finished") is not None and float(timeline["finished"]) < times["healthy"]:
        passed = False
        deciding += "; the load ended before the stack was healthy again (drills_load_seconds)"
    if d.get("error"):
        passed, deciding = False, deciding + f"; the drill failed: {d['error']}"
    return Verdict(
        drill=d["drill"],
        injected=d["injected"],
        passed=passed,
        deciding=deciding,
        detection_s=seconds_between(times["injected"], times.get("detected")),
        recovery_s=seconds_between(times.get("restored"), times.get("healthy")),
        figures=figures,
        **counts(timeline, times),
    )


def markdown(verdicts: list[Verdict], run: dict[str, Any]) -> str:
    def cell(value: object) -> str:
        return "–" if value is None else str(value).replace("|", "\\|")

    lines = [
        "# Fault drills",
        "",
        f"Run {run.get('started', '?')} on {run.get('inventory', '?')}, load "
        f"{run.get('users', '?')} per drill, up to {run.get('load_seconds', '?')} s and "
        f"ended {run.get('after_seconds', '?')} s after the stack was healthy again. Errors "
        "are Locust failures: before the fault, during it (until the stack answered healthy "
        "again), after.",
        "",
        "| drill | injected | result | deciding figure | detection s | recovery s "
        "| errors before / during / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        lines.append(
            f"| {v.drill} | {cell(v.injected)} | {'PASS' if v.passed else 'FAIL'} "
            f"| {cell(v.deciding)} | {cell(v.detection_s)} | {cell(v.recovery_s)} "
            f"| {v.errors_before} / {v.errors_during} / {v.errors_after} |"
        )
    lines += ["", "Every figure: drills.json.", ""]
    return "\n".join(lines)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    run = read_json(out / "drills-run.json") or {}
    verdicts = []
    for name in run.get("drills", []):
        d = read_json(out / name / "drill.json")
        if d is None:
            verdicts.append(Verdict(name, "(not recorded)", False, "the drill wrote no record"))
            continue
        timeline = read_json(out / name / "timeline.json") or {}
        verdicts.append(verdict(d, timeline, read_json(out / name / "ws.json")))
    (out / "drills.json").write_text(
        json.dumps({"run": run, "drills": [asdict(v) for v in verdicts]}, indent=2) + "\n"
    )
    (out / "report.md").write_text(markdown(verdicts, run))
    failed = [v.drill for v in verdicts if not v.passed]
    print(f"{out / 'report.md'}: {len(verdicts) - len(failed)} passed, failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
