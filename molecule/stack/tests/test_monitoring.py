"""The monitoring host from an application host's side, beyond what test_end_to_end.py
shows: a statsd counter is rendered within 30 seconds, collectd's host series exist for the
monitoring host and an application host, a threshold breach is mailed once, and
graphite-web renders a PNG of a real series."""

from __future__ import annotations

import json
import secrets
import shlex
import time

import pytest
from hpdtest import PROJECT_DIR, host, inventory_variable, wait_for
from monitor import Monitoring, wait_for_values
from stack import MONITORING, PORTS, WEB_SERVERS

APP = WEB_SERVERS[0]
ARTIFACTS = PROJECT_DIR / ".cache" / "artifacts" / "stack"
# The alerts role's files on the monitoring host (roles/alerts).
ALERTS_CONFIG = "/etc/hpd-alerts/config.json"
ALERTS_STATE = "/var/lib/hpd-alerts/state.json"


@pytest.fixture(scope="module")
def monitoring() -> Monitoring:
    return Monitoring(MONITORING, MONITORING)


def statsd_send(lines: list[str], mon_address: str) -> None:
    """UDP datagrams to statsd from the application host, as the app's client sends them."""
    payload = "\\n".join(lines)
    host(APP).run_expect(
        [0],
        "python3 -c "
        + shlex.quote(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.sendto('{payload}'.encode(), ('{mon_address}', {int(PORTS['statsd'])}))"
        ),
    )


def test_statsd_counter_from_the_app_host_is_rendered_within_30_seconds(monitoring) -> None:
    name = f"hpdtest.counter_{secrets.token_hex(4)}"
    started = time.monotonic()
    statsd_send([f"{name}:5|c"], monitoring.address)
    values = wait_for_values(monitoring, f"stats.counters.{name}.count", timeout=30)
    assert 5 in values, values
    print(f"visible after {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("node", [MONITORING, APP])
@pytest.mark.parametrize(
    "series", ["cpu.percent.user", "memory.memory.used", "df.root.percent_bytes.used"]
)
def test_collectd_series_for_cpu_memory_and_disk(monitoring, node: str, series: str) -> None:
    assert wait_for_values(monitoring, f"collectd.{node}.{series}", timeout=60)


@pytest.fixture
def alerts_paused():
    """The alerts timer stopped (so no run of its own races the test's), and the 5xx-rate
    breach forgotten, as on a monitoring host that has never seen one: a breach left from
    an earlier run of these tests would otherwise hold the alert back. The timer is started
    again afterwards, as the role leaves it."""
    mon = host(MONITORING)
    mon.run_expect([0], "systemctl stop hpd-alerts.timer")
    try:
        # Waits for a run the timer started, if any.
        mon.run_expect([0], "systemctl start hpd-alerts.service")
        forget = (
            f"import json, pathlib; p = pathlib.Path({ALERTS_STATE!r}); "
            "s = json.loads(p.read_text()) if p.exists() else {}; "
            "p.write_text(json.dumps({k: v for k, v in s.items() if v['rule'] != '5xx-rate'}))"
        )
        mon.run_expect([0], f"python3 -c {shlex.quote(forget)}")
        yield mon
    finally:
        mon.run_expect([0], "systemctl start hpd-alerts.timer")


def test_forced_5xx_breach_mails_exactly_one_alert(monitoring, alerts_paused) -> None:
    mon = alerts_paused
    config = json.loads(mon.check_output(f"cat {ALERTS_CONFIG}"))
    rule = next(rule for rule in config["rules"] if rule["name"] == "5xx-rate")
    # The app's counters of server errors, which the rule sums.
    prefix = rule["target"].removeprefix("sumSeries(stats.counters.").partition(".response.")[0]
    assert rule["target"] == f"sumSeries(stats.counters.{prefix}.response.5*.rate)", rule
    before = monitoring.mails("[ALERT] 5xx-rate")
    # Server errors as the app counts them, far above the threshold.
    for _ in range(3):
        statsd_send(
            [f"{prefix}.response.503:400|c", f"{prefix}.response.500:200|c"], monitoring.address
        )
        time.sleep(1)
    threshold = float(rule["threshold"])
    assert wait_for(
        lambda: max(monitoring.values(rule["target"]) or [0]) > threshold, timeout=40, interval=2
    )
    for _ in range(3):  # one run mails the breach; the two after it must not mail again
        mon.run_expect([0], "systemctl start hpd-alerts.service")

    def new_alerts() -> list[str]:
        return [mail for mail in monitoring.mails("[ALERT] 5xx-rate") if mail not in before]

    assert wait_for(new_alerts, timeout=60)
    time.sleep(5)
    alerts = new_alerts()
    assert len(alerts) == 1, alerts
    for operator in inventory_variable("alerts_mail_to", MONITORING):
        assert operator in alerts[0]


def test_graphite_renders_a_png_of_a_real_series(monitoring) -> None:
    target = f"collectd.{APP}.load.load.shortterm"
    assert wait_for_values(monitoring, target)
    content_type, image = monitoring.png(target)
    assert content_type == "image/png"
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(image) > 2000  # axes, labels and a line, not an empty canvas
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "graphite-load.png").write_bytes(image)


def test_the_launch_dashboard_shows_live_data_in_every_panel(monitoring) -> None:
    """The graphite role's launch dashboard (graphite_dashboard_panels) is saved in
    graphite-web, its page names the panels, and every panel's targets have datapoints from
    the traffic the earlier tests sent through the stack."""
    base = f"http://{monitoring.address}:{PORTS['graphite_web']}/dashboard"
    mon = host(MONITORING)
    state = json.loads(mon.check_output(f"curl -fsS --max-time 10 {base}/load/launch"))["state"]
    titles = [params["title"] for _, params, _ in state["graphs"]]
    assert len(titles) >= 12, titles
    page = mon.check_output(f"curl -fsS --max-time 10 {base}/launch")
    assert "Requests per second by HTTP status" in page
    empty = [
        params["title"]
        for _, params, _ in state["graphs"]
        if not any(monitoring.values(target, "-60min") for target in params["target"])
    ]
    assert not empty, f"panels without datapoints in the last hour: {empty}"
