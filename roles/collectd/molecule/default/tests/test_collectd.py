"""collectd on both hosts, read back from the whisper files the real carbon on
collectd-mon writes: every series asserted here travelled collectd -> write_graphite ->
carbon's plaintext port on the monitoring host's private address."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hpdtest import host, wait_for

MON, SVC = "collectd-mon", "collectd-svc"
WHISPER = "/var/lib/graphite/whisper/collectd"
GROUP_VARS = Path(__file__).resolve().parents[1] / "group_vars" / "all" / "main.yml"
REDIS_PASSWORD = yaml.safe_load(GROUP_VARS.read_text())["site_redis_password"]

BASE = [
    "cpu/percent/user.wsp",
    "memory/memory/used.wsp",
    "df/root/df_complex/used.wsp",
    "df/root/percent_bytes/used.wsp",
    "load/load/shortterm.wsp",
    "interface/eth0/if_octets/rx.wsp",
]
SERVICES = {
    "postgresql": "postgresql/postgres/pg_numbackends.wsp",
    "memcached": "memcached/11211/memcached_connections/current.wsp",
    "redis": "redis/6379/memory/used.wsp",
    "varnish": "varnish/total_requests/client.wsp",
    "haproxy": "haproxy/fe_test-FRONTEND/total_sessions.wsp",
    "uwsgi": "uwsgi/chat/total_requests.wsp",
    "celery": "celery/queue_length/default.wsp",
}


def whisper_exists(name: str, path: str) -> bool:
    return host(MON).file(f"{WHISPER}/{name}/{path}").exists


def recent_values(name: str, path: str, seconds: int = 90) -> list[float]:
    """Values of the last `seconds` of a series (None points left out)."""
    out = host(MON).check_output(
        f"whisper-fetch --from=$(( $(date +%s) - {seconds} )) {WHISPER}/{name}/{path}"
    )
    return [float(v) for _, v in (line.split() for line in out.splitlines()) if v != "None"]


@pytest.mark.parametrize("name", [MON, SVC])
@pytest.mark.parametrize("path", BASE)
def test_base_series_reach_carbon(name, path):
    assert wait_for(lambda: whisper_exists(name, path), timeout=40, interval=2), path
    assert wait_for(lambda: recent_values(name, path), timeout=30, interval=2), path


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_series_reach_carbon(service):
    path = SERVICES[service]
    assert wait_for(lambda: whisper_exists(SVC, path), timeout=40, interval=2), path


def test_monitoring_host_reads_no_services():
    for path in SERVICES.values():
        assert not host(MON).file(f"{WHISPER}/{MON}/{path}").exists


def test_pseudo_file_systems_are_not_reported():
    reported = host(MON).check_output(f"ls {WHISPER}/{SVC}/df").split()
    assert "root" in reported
    assert not [fs for fs in reported if fs.startswith(("run", "dev", "sys", "proc", "etc"))]


def test_celery_queue_length_counts_waiting_tasks():
    svc = host(SVC)
    cli = f"redis-cli --no-auth-warning -a {REDIS_PASSWORD}"
    svc.check_output(f"{cli} DEL default")
    svc.check_output(f"{cli} RPUSH default task-1 task-2 task-3")
    try:
        assert wait_for(
            lambda: any(v >= 3 for v in recent_values(SVC, SERVICES["celery"], 30)),
            timeout=40,
            interval=2,
        )
    finally:
        svc.check_output(f"{cli} DEL default")


def test_uwsgi_requests_are_counted_as_a_rate():
    """StoreRates: total_requests arrives as requests per second, > 0 under traffic."""
    svc = host(SVC)
    address = svc.check_output("hostname -I | cut -d' ' -f1")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        svc.run(f"for i in $(seq 20); do curl -s -o /dev/null http://{address}:8000/; done")
        if any(v > 0 for v in recent_values(SVC, SERVICES["uwsgi"], 20)):
            return
        time.sleep(2)
    pytest.fail("no uWSGI request rate above 0 reached carbon")


def test_redis_password_file_is_private():
    password_file = host(SVC).file("/etc/collectd/redis.password")
    assert password_file.mode == 0o640
    assert password_file.user == "root"
    assert password_file.group == "collectd-exec"


def test_exec_readers_do_not_run_as_root():
    users = host(SVC).check_output(
        "ps -eo user:20,args | grep '[h]pd-collectd-exec' | awk '{print $1}' | sort -u"
    )
    assert set(users.split()) == {"collectd-exec", "postgres"}
