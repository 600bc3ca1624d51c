"""A short smoke of the load test (playbooks/loadtest.yml) against the converged staging
stack: every wrk figure and Locust journey answered without an error, every WebSocket
message delivered to every member listening, the report and its plots written, and nothing
of the baselines left running on the hosts. Correctness only, never speed: figures taken on
a busy CI machine mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

from hpdtest import address, host, run_playbook
from stack import LB, REACH_FROM_CONTROLLER, STACK_CA, WEB_SERVERS

HOST_DIR = "/var/tmp/hpd-loadtest"
FIGURES = [
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


def test_the_load_test_smoke_runs_clean_and_writes_its_report(tmp_path: Path) -> None:
    reports = tmp_path / "loadtest"
    short = {
        "loadtest_reports_dir": str(reports),
        "loadtest_connect_address": address(LB),
        "loadtest_ca_file": str(STACK_CA),
        "loadtest_wrk_seconds": 3,
        "loadtest_sweep_connections": [10],
        "loadtest_sweep_seconds": 2,
        "loadtest_journey_users": {"Reader": 4, "Member": 3, "Newcomer": 1},
        "loadtest_journey_seconds": 20,
        "loadtest_members": 3,
        "loadtest_newcomers": 1,
        "loadtest_graphite_settle_seconds": 0,
    }
    warm = run_playbook("playbooks/warm.yml", "-e", json.dumps(REACH_FROM_CONTROLLER), timeout=120)
    assert warm.returncode == 0, warm.stdout[-2000:]
    result = run_playbook("playbooks/loadtest.yml", "-e", json.dumps(short), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]

    results = json.loads((reports / "results.json").read_text())
    measured = {figure["id"]: figure["result"] for figure in results["wrk"]}
    assert sorted(measured) == sorted(FIGURES)
    for figure_id, figure in measured.items():
        assert figure["requests"] > 0, figure_id
        assert sum(figure["errors"].values()) == 0, (figure_id, figure["errors"])
    # Where the CPU went, for every figure: the machine's and the measuring host's.
    for figure in results["wrk"]:
        cpu = figure["cpu"]
        assert cpu["machine_busy_seconds"] > 0, figure["id"]
        assert cpu["processes"].get("wrk", 0) > 0, (figure["id"], cpu)

    delivery = json.loads((reports / "ws.json").read_text())
    assert delivery["posted"] > 0, delivery
    assert delivery["expected_deliveries"] > 0, delivery
    assert delivery["lost"] == 0, delivery

    summary = json.loads((reports / "summary.json").read_text())
    assert summary["errors"] == 0, summary
    for name in ("report.md", "latency-over-time.png", "rate-vs-concurrency.png"):
        assert (reports / name).stat().st_size > 0, name

    # The baselines are gone: nothing listens on their loopback ports, no scratch directory.
    for name in (LB, WEB_SERVERS[0]):
        machine = host(name)
        assert not machine.file(HOST_DIR).exists, name
        listening = machine.check_output("ss -Hltn")
        for port in (9443, 9000, 9001):
            assert f":{port} " not in listening, (name, port, listening)
    assert not host(LB).file("/usr/sbin/policy-rc.d").exists
