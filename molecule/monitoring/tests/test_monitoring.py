"""The monitoring tier from an application host's side: what it sends (statsd, collectd,
sentry-sdk, syslog, mail) arrives on the monitoring host, where an operator finds it;
a threshold breach is mailed once."""

from __future__ import annotations

import secrets
import shlex
import time

import pytest
from hpdtest import PROJECT_DIR, host, wait_for
from monitor import Monitoring, wait_for_values

MON = "mon-mon"
APP = "mon-app"
ARTIFACTS = PROJECT_DIR / ".cache" / "artifacts" / "monitoring"


@pytest.fixture(scope="module")
def monitoring() -> Monitoring:
    return Monitoring(MON, APP)


def statsd_send(lines: list[str], mon_address: str) -> None:
    """UDP datagrams to statsd from the application host, as the app's client sends them."""
    payload = "\\n".join(lines)
    host(APP).run_expect(
        [0],
        "python3 -c "
        + shlex.quote(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.sendto('{payload}'.encode(), ('{mon_address}', 8125))"
        ),
    )


def test_statsd_counter_from_the_app_host_is_rendered_within_30_seconds(monitoring) -> None:
    name = f"hpdtest.counter_{secrets.token_hex(4)}"
    started = time.monotonic()
    statsd_send([f"{name}:5|c"], monitoring.address)
    values = wait_for_values(monitoring, f"stats.counters.{name}.count", timeout=30)
    assert 5 in values, values
    print(f"visible after {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("node", [MON, APP])
@pytest.mark.parametrize(
    "series", ["cpu.percent.user", "memory.memory.used", "df.root.percent_bytes.used"]
)
def test_collectd_series_for_cpu_memory_and_disk(monitoring, node: str, series: str) -> None:
    assert wait_for_values(monitoring, f"collectd.{node}.{series}", timeout=60)


def test_exception_through_sentry_sdk_appears_in_bugsink(monitoring) -> None:
    dsn = monitoring.bugsink_dsn()
    release = f"r-{secrets.token_hex(6)}"
    script = f"""
import sentry_sdk
sentry_sdk.init(dsn={dsn!r}, release={release!r}, environment="molecule")
try:
    raise RuntimeError("monitoring scenario {release}")
except RuntimeError as error:
    sentry_sdk.capture_exception(error)
sentry_sdk.flush(timeout=10)
"""
    host(APP).run_expect([0], f"python3 -c {shlex.quote(script)}")
    event = monitoring.bugsink_event(release)
    assert event, "the event never became visible in Bugsink"
    assert event["data"]["release"] == release


def test_syslog_line_from_the_app_host_lands_in_the_central_log(monitoring) -> None:
    token = f"hpdtest-{secrets.token_hex(6)}"
    host(APP).run_expect([0], f"logger -t hpdtest {token}")
    assert wait_for(lambda: monitoring.log_lines(token), timeout=30)
    line = monitoring.log_lines(token)[0]
    assert APP in line and "hpdtest" in line


def test_mail_through_the_local_mta_lands_in_the_mailbox(monitoring) -> None:
    subject = f"hpdtest mail {secrets.token_hex(6)}"
    host(APP).run_expect(
        [0],
        f"printf 'To: someone@example.test\\nSubject: {subject}\\n\\nhello\\n' "
        "| /usr/sbin/sendmail -t",
    )
    assert wait_for(lambda: monitoring.mails(f"Subject: {subject}"), timeout=60)
    assert "someone@example.test" in monitoring.mails(f"Subject: {subject}")[0]


def test_forced_5xx_breach_mails_exactly_one_alert(monitoring) -> None:
    # Server errors as the app counts them, far above the threshold (1 per second).
    rate = "sumSeries(stats.counters.chat.response.5*.rate)"
    for _ in range(3):
        statsd_send(["chat.response.503:400|c", "chat.response.500:200|c"], monitoring.address)
        time.sleep(1)
    assert wait_for(lambda: max(monitoring.values(rate) or [0]) > 1, timeout=40, interval=2)
    mon = host(MON)
    for _ in range(3):  # the timer runs it too; three more runs must not mail again
        mon.run_expect([0], "systemctl start hpd-alerts.service")
    assert wait_for(lambda: monitoring.mails("[ALERT] 5xx-rate"), timeout=60)
    time.sleep(5)
    alerts = monitoring.mails("[ALERT] 5xx-rate")
    assert len(alerts) == 1, alerts
    assert "operators@example.test" in alerts[0]


def test_graphite_renders_a_png_of_a_real_series(monitoring) -> None:
    target = f"collectd.{APP}.load.load.shortterm"
    assert wait_for_values(monitoring, target)
    content_type, image = monitoring.png(target)
    assert content_type == "image/png"
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(image) > 2000  # axes, labels and a line, not an empty canvas
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "load.png").write_bytes(image)
