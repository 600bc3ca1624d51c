"""The emperor and its vassals, exercised with real HTTP clients."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import testinfra

HOST = "uwsgi-web"


@pytest.fixture(scope="module")
def web():
    return testinfra.get_host(
        f"ansible://{HOST}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


@pytest.fixture(scope="module")
def url(web):
    return f"http://{web.check_output('hostname -I').split()[0]}:8000"


def worker_pids(web) -> list[int]:
    stats = json.loads(web.check_output("curl -fsS http://127.0.0.1:1717"))
    return sorted(w["pid"] for w in stats["workers"])


def emperor_pid(web) -> str:
    return web.check_output("systemctl show -p MainPID --value uwsgi-emperor")


def test_vassal_serves_with_its_environment(web, url) -> None:
    body = web.check_output(f"curl -fsS {url}/")
    assert body.startswith("hello from")
    assert "from-the-role" in body


def test_processes_follow_cpu_count_and_carry_the_prefix(web) -> None:
    cores = int(web.check_output("nproc"))
    # This host runs no caches, so the book's rule gives twice the cores.
    assert len(worker_pids(web)) == 2 * cores
    assert "uwsgi-hello" in web.check_output("ps -eo args")


def test_chain_reload_under_load_fails_no_request(web, url) -> None:
    before = worker_pids(web)
    web.run_expect([0], "rm -f /tmp/ab.out")
    load = web.run(f"nohup ab -q -n 2000 -c 20 -s 10 {url}/slow > /tmp/ab.out 2>&1 & echo started")
    assert load.rc == 0
    time.sleep(2)
    web.run_expect([0], "touch /run/uwsgi/hello.chain-reload")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        report = web.run("cat /tmp/ab.out").stdout
        if "Requests per second" in report or "apr_" in report:
            break
        time.sleep(1)
    report = web.check_output("cat /tmp/ab.out")
    assert "Complete requests:      2000" in report, report
    assert re.search(r"Failed requests:\s+0\b", report), report
    assert "Non-2xx responses" not in report, report
    # Every worker was replaced during the run.
    after = worker_pids(web)
    assert not set(before) & set(after)


def test_dropping_and_removing_a_vassal_file(web) -> None:
    emperor = emperor_pid(web)
    vassal = "/etc/uwsgi-emperor/vassals/second.ini"
    web.run_expect(
        [0],
        f"sed -e 's/:8000$/:8002/' -e '/^stats/d' /etc/uwsgi-emperor/vassals/hello.ini > {vassal}",
    )
    up = web.run(
        "for i in $(seq 1 40); do curl -fsS http://127.0.0.1:8002/ && exit 0; "
        "sleep 0.5; done; exit 1"
    )
    host_ip = web.check_output("hostname -I").split()[0]
    up = web.run(
        f"for i in $(seq 1 40); do curl -fsS http://{host_ip}:8002/ && exit 0; "
        "sleep 0.5; done; exit 1"
    )
    assert up.rc == 0 and up.stdout.startswith("hello from")
    web.run_expect([0], f"rm {vassal}")
    down = web.run(
        f"for i in $(seq 1 40); do curl -fsS http://{host_ip}:8002/ || exit 0; "
        "sleep 0.5; done; exit 1"
    )
    assert down.rc == 0
    assert emperor_pid(web) == emperor
    assert web.service("uwsgi-emperor").is_running


def test_firewall_opens_the_application_port(web) -> None:
    # The firewall role's drop-in, from uwsgi_firewall_rules (site_ports.uwsgi).
    dropin = web.file("/etc/nftables.d/uwsgi.nft").content_string
    assert "tcp dport { 8000 } accept" in dropin, dropin


def test_metrics_are_pushed_to_statsd(web) -> None:
    captured = web.run("timeout 8 nc -u -l -W 1 127.0.0.1 8125")
    assert "uwsgi." in captured.stdout, captured.stdout


def test_bad_variable_fails_naming_it() -> None:
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml"),
            "-e",
            "uwsgi_harakiri=soon",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "uwsgi_harakiri" in result.stdout + result.stderr
