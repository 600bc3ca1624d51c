"""A short smoke of the fault drills (playbooks/drills.yml) against the converged staging
stack: the two drills whose verdict is "nothing lost", each under the load test's Locust
journeys. PostgreSQL restarted while members post: every post the load saw accepted is in
the database and the replica streams again. A Celery pool process killed mid-run: every
enqueued task's effect is there. Correctness only, never speed; each drill restores the
stack and checks it healthy before the next test."""

from __future__ import annotations

import json
from pathlib import Path

from hpdtest import run_playbook
from stack import REACH_FROM_CONTROLLER

SMOKE_DRILLS = ["postgresql_restarted", "celery_worker_killed"]


def test_the_drills_smoke_loses_nothing_and_writes_its_report(tmp_path: Path) -> None:
    reports = tmp_path / "drills"
    short = {
        "drills_reports_dir": str(reports),
        **REACH_FROM_CONTROLLER,
        "drills_enabled": SMOKE_DRILLS,
        # The load ends 5 s after "healthy again"; its bound only has to be generous: with
        # one busy loop added beside the stack (a slower CI machine), the killed-worker drill
        # was healthy 58 s after its load started.
        "drills_load_seconds": 150,
        "drills_after_seconds": 5,
        "drills_users": {
            "postgresql_restarted": {"Reader": 2, "Member": 4},
            "celery_worker_killed": {"Reader": 2},
        },
        # Enough work that the pool is still busy when the kill comes, a few Ansible round
        # trips after the enqueue: at 1000 px (0.14-0.38 s a task on two pool processes),
        # CI's slower machine had worked through all 24 by then and the kill held no task.
        "drills_celery_tasks": 24,
        "drills_celery_image_px": 1400,
    }
    result = run_playbook("playbooks/drills.yml", "-e", json.dumps(short), timeout=900)
    report = reports / "drills.json"
    assert report.exists(), result.stdout[-3000:]
    drills = {drill["drill"]: drill for drill in json.loads(report.read_text())["drills"]}
    assert sorted(drills) == sorted(SMOKE_DRILLS)
    assert result.returncode == 0, (reports / "report.md").read_text()

    restarted = drills["postgresql_restarted"]["figures"]
    assert restarted["posts_accepted"] > 0 and restarted["posts_lost"] == 0, restarted
    assert restarted["replicas_streaming"] == restarted["replicas_expected"], restarted
    killed = drills["celery_worker_killed"]["figures"]
    assert killed["tasks_done"] == killed["tasks_enqueued"] == 24, killed
    assert killed["job_lost_at_kill"], killed
    assert (reports / "report.md").stat().st_size > 0
