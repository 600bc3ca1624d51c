"""The drills' verdicts from failure timelines and the playbook's timestamps
(drills/drill_report.py)."""

from __future__ import annotations

import json

import drill_report as dr

TIMES = {
    "load_started": 100.0,
    "injected": 110.0,
    "restored": 130.0,
    "healthy": 135.0,
    "load_stopped": 160.0,
}


# A Locust timeline that ran to the end of the drill, with nothing in it.
TL = {"started": 100.0, "finished": 160.0, "failures": [], "seconds": [], "accepted": []}


def failure(t: float, status: int | None = 503, name: str = "GET /") -> dict:
    return {"t": t, "type": "GET", "name": name, "status": status, "error": f"HTTP {status}"}


def second(t: int, ok: int, failed: int = 0, ms: float = 10.0, name: str = "GET /") -> dict:
    return {
        "t": t,
        "name": name,
        "ok": ok,
        "failed": failed,
        "ms_sum": ms * (ok + failed),
        "ms_max": ms,
    }


def test_between_is_half_open_and_unbounded_ends():
    fs = [failure(1), failure(2), failure(3)]
    assert dr.between(fs, 2, 3) == [failure(2)]
    assert dr.between(fs, None, 2) == [failure(1)]
    assert dr.between(fs, 2, None) == [failure(2), failure(3)]


def test_server_errors_leave_out_timeouts():
    fs = [failure(1, 503), failure(2, None), failure(3, 404), failure(4, 500)]
    assert [f["t"] for f in dr.server_errors(fs)] == [1, 4]


def test_window_counts_and_mean_latency_by_name():
    seconds = [
        second(99, 5, ms=10),
        second(100, 5, ms=20),
        second(101, 1, 1, ms=40),
        second(101, 3, name="POST message", ms=100),
    ]
    assert dr.window(seconds, 100, 102, names=["GET /"]) == {"ok": 6, "failed": 1, "mean_ms": 25.7}
    assert dr.window(seconds, 100.7, 101)["ok"] == 5  # the started second counts
    assert dr.window([], 0, 1)["mean_ms"] is None


def test_counts_split_before_during_after():
    tl = {"failures": [failure(105), failure(111), failure(134.9), failure(135), failure(150)]}
    assert dr.counts(tl, TIMES) == {"errors_before": 1, "errors_during": 2, "errors_after": 2}


def test_web_one_killed_errors_only_until_detection():
    d = {
        "drill": "web_one_killed",
        "injected": "SIGKILL",
        "times": TIMES | {"detected": 115.0},
        "observed": {},
    }
    ok = dr.verdict(d, {"failures": [failure(111, 502), failure(115.8, 503)]}, None)
    assert ok.passed and ok.detection_s == 5.0
    assert ok.figures["errors_until_detection"] == 2
    late = dr.verdict(d, {"failures": [failure(111), failure(117)]}, None)
    assert not late.passed and late.figures["errors_after_detection"] == 1


def test_web_one_killed_without_detection_fails():
    d = {"drill": "web_one_killed", "injected": "SIGKILL", "times": TIMES, "observed": {}}
    v = dr.verdict(d, {"failures": []}, None)
    assert not v.passed and "never" in v.deciding


def test_web_all_down_needs_stale_pages_and_the_error_page():
    obs = {"cached_statuses": [200, 200], "uncached_status": 503, "uncached_title_found": True}
    d = {
        "drill": "web_all_down",
        "injected": "stop",
        "times": TIMES | {"fresh": 138.5},
        "observed": obs,
    }
    tl = {"failures": [], "seconds": [second(t, 4) for t in range(105, 140)]}
    v = dr.verdict(d, tl, None)
    assert v.passed
    assert v.figures["stale_200s"] == 4 * 20 and v.figures["fresh_after_s"] == 8.5
    d_bad = d | {"observed": obs | {"uncached_title_found": False}}
    assert not dr.verdict(d_bad, tl, None).passed
    tl_503 = tl | {"failures": [failure(120, 503, "GET transcript")]}
    v503 = dr.verdict(d, tl_503, None)
    assert not v503.passed and v503.figures["503s"] == 1


def test_memcached_stopped_fails_only_on_server_errors():
    d = {"drill": "memcached_stopped", "injected": "stop", "times": TIMES, "observed": {}}
    seconds = [second(t, 2, ms=10) for t in range(100, 110)] + [
        second(t, 2, ms=30) for t in range(110, 130)
    ]
    v = dr.verdict(d, {"failures": [failure(120, None)], "seconds": seconds}, None)
    assert v.passed and v.figures["mean_ms_before"] == 10 and v.figures["mean_ms_during"] == 30
    assert not dr.verdict(d, {"failures": [failure(120, 500)], "seconds": seconds}, None).passed


def test_celery_worker_killed_every_effect():
    d = {
        "drill": "celery_worker_killed",
        "injected": "kill",
        "times": TIMES,
        "observed": {
            "tasks_enqueued": 20,
            "tasks_done": 20,
            "killed_pid": 4242,
            "tasks_done_at_kill": 3,
            "job_lost_at_kill": True,
        },
    }
    assert dr.verdict(d, TL, None).passed
    d["observed"]["job_lost_at_kill"] = False
    idle = dr.verdict(d, TL, None)
    assert not idle.passed
    assert "held no task" in idle.deciding
    d["observed"]["job_lost_at_kill"] = True
    d["observed"]["tasks_done"] = 19
    v = dr.verdict(d, TL, None)
    assert not v.passed and "1 lost" in v.deciding


def test_postgresql_restarted_accepted_posts_all_stored():
    accepted = [{"t": 111, "token": "a" * 16}, {"t": 112, "token": "b" * 16}]
    obs = {
        "stored_tokens": ["a" * 16, "b" * 16, "c" * 16],
        "replicas_streaming": 1,
        "replicas_expected": 1,
    }
    d = {"drill": "postgresql_restarted", "injected": "restart", "times": TIMES, "observed": obs}
    assert dr.verdict(d, {"accepted": accepted}, None).passed
    d["observed"] = obs | {"stored_tokens": ["a" * 16]}
    v = dr.verdict(d, {"accepted": accepted}, None)
    assert not v.passed and v.figures["lost_examples"] == ["b" * 16]
    d["observed"] = obs | {"replicas_streaming": 0}
    assert not dr.verdict(d, {"accepted": accepted}, None).passed


def test_redis_restarted_nothing_lost_and_celery_back():
    d = {
        "drill": "redis_restarted",
        "injected": "restart",
        "times": TIMES,
        "observed": {"celery_task_done": True},
    }
    ws = {"posted": 10, "expected_deliveries": 70, "lost": 0, "reconnects": 8}
    assert dr.verdict(d, TL, ws).passed
    assert not dr.verdict(d, TL, ws | {"lost": 1}).passed
    assert not dr.verdict(d, TL, None).passed
    d["observed"] = {"celery_task_done": False}
    assert not dr.verdict(d, TL, ws).passed


def test_varnish_restarted_no_server_error_once_back():
    d = {
        "drill": "varnish_restarted",
        "injected": "restart",
        "times": TIMES | {"hit_ratio_recovered": 141.0},
        "observed": {"uwsgi_busy_max": 4, "uwsgi_workers": 4},
    }
    v = dr.verdict(d, {"failures": [failure(120, 503)]}, None)
    assert v.passed and v.figures["hit_ratio_recovered_s"] == 6.0
    d["times"] = d["times"] | {"back": 125.0}
    late = dr.verdict(d, {"failures": [failure(126, 503)]}, None)
    assert not late.passed
    assert late.figures["hit_ratio_recovered_s"] == 16.0
    assert not dr.verdict(d, {"failures": [failure(136, 502)]}, None).passed


def test_not_healthy_again_fails_any_drill():
    d = {
        "drill": "celery_worker_killed",
        "injected": "kill",
        "times": TIMES | {"healthy": None},
        "observed": {
            "tasks_enqueued": 2,
            "tasks_done": 2,
            "killed_pid": 1,
            "tasks_done_at_kill": 0,
            "job_lost_at_kill": True,
        },
    }
    v = dr.verdict(d, {}, None)
    assert not v.passed and "NOT healthy" in v.deciding


def test_main_writes_json_and_markdown_and_fails_on_a_failed_drill(tmp_path):
    (tmp_path / "drills-run.json").write_text(
        json.dumps(
            {
                "drills": ["web_one_killed", "memcached_stopped"],
                "started": "now",
                "inventory": "local",
                "users": {"Reader": 1},
                "load_seconds": 60,
            }
        )
    )
    (tmp_path / "web_one_killed").mkdir()
    (tmp_path / "web_one_killed" / "drill.json").write_text(
        json.dumps(
            {
                "drill": "web_one_killed",
                "injected": "SIGKILL | web1",
                "times": TIMES | {"detected": 113.0},
                "observed": {},
            }
        )
    )
    (tmp_path / "web_one_killed" / "timeline.json").write_text(
        json.dumps({"failures": [failure(111, 502)], "seconds": []})
    )
    assert dr.main(["x", str(tmp_path)]) == 1  # memcached_stopped recorded nothing
    data = json.loads((tmp_path / "drills.json").read_text())
    assert [d["passed"] for d in data["drills"]] == [True, False]
    table = (tmp_path / "report.md").read_text()
    assert "| web_one_killed | SIGKILL \\| web1 | PASS |" in table
    assert "| memcached_stopped | (not recorded) | FAIL |" in table


def test_times_written_as_strings_and_a_task_error():
    d = {
        "drill": "celery_worker_killed",
        "injected": "kill",
        "times": {k: str(v) for k, v in TIMES.items()} | {"detected": ""},
        "observed": {
            "tasks_enqueued": 2,
            "tasks_done": 2,
            "killed_pid": 1,
            "tasks_done_at_kill": 0,
            "job_lost_at_kill": True,
        },
    }
    v = dr.verdict(d, TL, None)
    assert v.passed and v.recovery_s == 5.0 and v.detection_s is None
    v = dr.verdict(d | {"error": "Kill the busiest process: no worker"}, TL, None)
    assert not v.passed and "no worker" in v.deciding


def test_never_injected_fails():
    d = {
        "drill": "web_all_down",
        "injected": "",
        "times": {"load_started": 1.0},
        "observed": {},
        "error": "Stop uWSGI: unreachable",
    }
    v = dr.verdict(d, {}, None)
    assert not v.passed and "never injected" in v.deciding


def test_the_load_must_cover_the_drill():
    d = {
        "drill": "celery_worker_killed",
        "injected": "kill",
        "times": TIMES,
        "observed": {
            "tasks_enqueued": 2,
            "tasks_done": 2,
            "killed_pid": 1,
            "tasks_done_at_kill": 0,
            "job_lost_at_kill": True,
        },
    }
    v = dr.verdict(d, {}, None)
    assert not v.passed and "no Locust timeline" in v.deciding
    v = dr.verdict(d, TL | {"finished": 134.0}, None)
    assert not v.passed and "drills_load_seconds" in v.deciding
