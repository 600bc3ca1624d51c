"""The alerts on backups, WAL archiving, replication and the certificate (roles/alerts, on
series from roles/collectd): each condition made true on the stack, each rule's mail sent
once when it is, and not before.

One module fixture makes the five conditions true together, so the waiting is done once:
the repository host's pgBackRest server stopped (the primary's archive-push fails), replay
paused on the replica while the primary writes (so the next backup, which reads from the
replica, gives up waiting for it to replay), and a ten-day certificate served by the
balancer. The evaluator runs with a copy of the converged configuration holding only
these rules, with the same series; the thresholds counted in hours or minutes are shortened
to seconds so a test can wait them out (the certificate's 14 days and "any failed run" are
the converged ones). Everything is put back afterwards, and the alerts timer is only started
again once the series are back to normal, so it mails nothing about the test.
"""

# SQL in these tests is fixed text.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field

import pytest
from hpdtest import group_hosts, host, wait_for
from monitor import Monitoring
from stack import DB, LB, MONITORING, REPLICA, SITE_NAME, contract

REPOSITORY = group_hosts("backups")[0]
BACKUP_UNIT = contract("site_backup_unit")
PGBACKREST_SERVER = "hpd-pgbackrest-server.service"
ALERTS_CONFIG = "/etc/hpd-alerts/config.json"
TEST_CONFIG = "/root/alerts-data-test.json"
TEST_STATE = "/root/alerts-data-test-state.json"

# Shortened thresholds (seconds) of the rules whose converged ones are hours or minutes.
SHORTENED = {"backup-too-old": 120, "wal-archive-lag": 30, "replica-lag": 20}
STANZA = contract("site_backup_stanza")
# Each rule, by the target the alerts role gives it for the host concerned, and the start of
# the series its breach must name.
EXPECTED = {
    "backup-too-old": (f"collectd.{REPOSITORY}.pgbackrest.{STANZA}.duration.last_backup",) * 2,
    "backup-or-check-failed": (
        f"collectd.{REPOSITORY}.units.*.gauge.failed",
        f"collectd.{REPOSITORY}.units.{BACKUP_UNIT}_diff.gauge.failed",
    ),
    "wal-archive-lag": (f"collectd.{DB}.postgresql.duration.archive_lag",) * 2,
    "replica-lag": (f"collectd.{REPLICA}.postgresql.duration.replay_lag",) * 2,
    "certificate-expiring": (f"collectd.{LB}.tls.*.gauge.days_left", f"collectd.{LB}.tls."),
}


def sql(server: str, statement: str) -> str:
    return host(server).check_output(
        "runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 -d postgres -c "
        + shlex.quote(statement)
    )


@dataclass
class Outcome:
    rules: dict[str, dict] = field(default_factory=dict)
    before: str = ""  # the evaluator's output with every condition still false
    mails: dict[str, list[str]] = field(default_factory=dict)  # new ALERT mails per rule


def breached(monitoring: Monitoring, rule: dict) -> bool:
    """Whether the rule's series, as Graphite has them now, are past its threshold."""
    series = monitoring.render(rule["target"], "-3min")
    values = [[v for v, _ in s["datapoints"] if v is not None] for s in series]
    last = [v[-1] for v in values if v]
    if not last:
        return False
    threshold = float(rule["threshold"])
    if rule["kind"] == "below":
        return min(last) < threshold
    return max(last) > threshold


def evaluate(mon) -> str:
    result = mon.run(f"/usr/local/sbin/hpd-alerts --config {TEST_CONFIG} --state {TEST_STATE}")
    assert result.rc == 0, result.stdout + result.stderr
    return result.stdout


def served_certificate_path() -> str:
    config = host(LB).check_output("cat /etc/haproxy/haproxy.cfg")
    return re.search(r"\bcrt (\S+)", config).group(1)


def ten_day_certificate(pem: str) -> None:
    """A self-signed certificate for the site's name, valid ten days, in place of the served
    one (kept beside it), and HAProxy reloaded."""
    lb = host(LB)
    lb.run_expect([0], f"cp -a {pem} {pem}.alerts-test")
    lb.run_expect(
        [0],
        "umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
        f"-nodes -days 10 -subj /CN={SITE_NAME} -addext subjectAltName=DNS:{SITE_NAME} "
        "-keyout /root/ten-day.key -out /root/ten-day.crt 2>/dev/null "
        f"&& cat /root/ten-day.crt /root/ten-day.key > {pem}.new "
        f"&& chown --reference={pem} {pem}.new && chmod --reference={pem} {pem}.new "
        f"&& mv {pem}.new {pem} && systemctl reload haproxy",
    )


@pytest.fixture(scope="module")
def outcome():
    monitoring = Monitoring(MONITORING, MONITORING)
    mon, repo, lb = host(MONITORING), host(REPOSITORY), host(LB)
    config = json.loads(mon.check_output(f"cat {ALERTS_CONFIG}"))
    converged = {
        rule["name"]: rule
        for rule in config["rules"]
        if EXPECTED.get(rule["name"], ("",))[0] == rule["target"]
    }
    assert sorted(converged) == sorted(EXPECTED), config["rules"]
    rules = {
        name: {**rule, "threshold": SHORTENED.get(name, rule["threshold"])}
        for name, rule in converged.items()
    }
    test_config = {**config, "rules": list(rules.values())}
    mon.run_expect([0], "systemctl stop hpd-alerts.timer")
    mon.run_expect([0], "systemctl start hpd-alerts.service")  # waits for a run in progress
    mon.run_expect(
        [0],
        f"rm -f {TEST_STATE} && printf %s {shlex.quote(json.dumps(test_config))} > {TEST_CONFIG}",
    )
    pem = served_certificate_path()
    result = Outcome(rules=rules)
    try:
        # Every condition false: a fresh backup, archiving and replay keeping up, the
        # converged certificate, no failed unit; the series show it before the first run.
        repo.run_expect([0], f"systemctl start {BACKUP_UNIT}@diff.service")
        assert wait_for(
            lambda: (
                all(monitoring.render(r["target"], "-1min") for r in rules.values())
                and not any(breached(monitoring, r) for r in rules.values())
            ),
            timeout=60,
            interval=3,
        ), {name: monitoring.render(r["target"], "-1min") for name, r in rules.items()}
        backup_done = time.monotonic()
        mails_before = {name: monitoring.mails(f"ALERT: {name}") for name in rules}
        result.before = evaluate(mon)

        # Every condition true.
        repo.run_expect([0], f"systemctl stop {PGBACKREST_SERVER}")
        sql(REPLICA, "SELECT pg_wal_replay_pause()")
        # Fails once archive-timeout passes (120 s) without the replica replaying to the
        # backup's start, while the other conditions age.
        repo.run_expect([0], f"systemctl start --no-block {BACKUP_UNIT}@diff.service")
        sql(DB, "CREATE TABLE IF NOT EXISTS alerts_test (at timestamptz)")
        for _ in range(2):
            sql(DB, "INSERT INTO alerts_test VALUES (now())")
            sql(DB, "SELECT pg_switch_wal()")
        ten_day_certificate(pem)
        wait = SHORTENED["backup-too-old"] - (time.monotonic() - backup_done)
        time.sleep(max(0.0, wait))
        assert wait_for(
            lambda: all(breached(monitoring, r) for r in rules.values()), timeout=120, interval=3
        ), {name: monitoring.render(r["target"], "-2min") for name, r in rules.items()}
        assert (
            repo.run(f"systemctl is-failed {BACKUP_UNIT}@diff.service").stdout.strip() == "failed"
        )

        for _ in range(3):  # the first run mails every breach, the next two mail nothing
            evaluate(mon)
        time.sleep(5)
        result.mails = {
            name: [m for m in monitoring.mails(f"ALERT: {name}") if m not in mails_before[name]]
            for name in rules
        }
        yield result
    finally:
        lb.run_test(f"test -e {pem}.alerts-test && mv {pem}.alerts-test {pem}")
        lb.run_test("systemctl reload haproxy")
        repo.run_test(f"systemctl start {PGBACKREST_SERVER}")
        sql(REPLICA, "SELECT pg_wal_replay_resume()")
        sql(DB, "DROP TABLE IF EXISTS alerts_test")
        repo.run_test(f"systemctl reset-failed {BACKUP_UNIT}@diff.service")
        # Archiving catches up on its own; the backup restores the age.
        assert wait_for(
            lambda: sql(DB, "SELECT count(*) FROM pg_ls_archive_statusdir() "
                            "WHERE name LIKE '%.ready'") == "0",
            timeout=150, interval=3,
        )  # fmt: skip
        repo.run_expect([0], f"systemctl start {BACKUP_UNIT}@diff.service")
        wait_for(
            lambda: not any(breached(monitoring, r) for r in converged.values()),
            timeout=60,
            interval=3,
        )
        mon.run_test(f"rm -f {TEST_CONFIG} {TEST_STATE}")
        mon.run_expect([0], "systemctl start hpd-alerts.timer")


def test_no_alert_while_every_condition_is_false(outcome) -> None:
    assert "mailed" not in outcome.before, outcome.before
    assert f"{len(outcome.rules)} rules, 0 breaches, 0 mails" in outcome.before


@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_each_alert_mails_once_when_its_condition_is_true(outcome, rule: str) -> None:
    mails = outcome.mails[rule]
    assert len(mails) == 1, (rule, mails)
    assert f"series: {EXPECTED[rule][1]}" in mails[0], mails[0]
