"""pgBackRest on the staging stack: the repository on the backup host (the monitoring host
doubles there), encrypted, nothing of it on the database hosts; the scheduled restore check
on the backup host restoring the newest backup into a scratch instance there, matching the
primary's rows and leaving nothing running, and failing on rows no backup holds (an unlogged
table); then the primary destroyed twice and rebuilt by playbooks/restore.yml, first to the
last archived transaction, then to a time between two writes; the replica cloned again and
streaming, WAL reaching the repository from the restored primary.

The restores roll the whole cluster back a few seconds (to the test's own point in time), so
this module writes nothing that later modules rely on, and puts the replica back as site.yml
leaves it.
"""

# SQL in these tests is built from a generated name (uuid hex) and fixed text.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
import shlex
import time
import uuid
from pathlib import Path

from hpdtest import PROJECT_DIR, address, group_hosts, host, run_playbook, wait_for
from stack import DB, REPLICA, contract

REPOSITORY = group_hosts("backups")[0]
STANZA = contract("site_backup_stanza")
REPOSITORY_PATH = "/var/lib/pgbackrest"
REPOSITORY_USER = contract("site_backup_repository_user")
APP_DATABASE = contract("site_database_name")
CHECK_UNIT = contract("site_backup_check_unit")
CHECK_RESULT = contract("site_backup_check_result_file")


def pgbackrest(*args: str, check: bool = True):
    command = "runuser -u pgbackrest -- pgbackrest --stanza=" + shlex.join([STANZA, *args])
    result = host(REPOSITORY).run(command)
    if check:
        assert result.rc == 0, (command, result.stdout, result.stderr)
    return result


def query(server: str, sql: str, database: str = "postgres") -> str:
    return host(server).check_output(
        f"runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 -d {database} "
        f"-c {shlex.quote(sql)}"
    )


def archived(server: str) -> None:
    """Switch WAL segments on the primary and wait until the finished one is archived."""
    segment = query(server, "SELECT pg_walfile_name(pg_switch_wal())")
    assert wait_for(
        lambda: (
            query(server, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment
        ),
        timeout=90,
    ), query(server, "SELECT * FROM pg_stat_archiver")


def destroy(server: str) -> None:
    """What a lost disk leaves: PostgreSQL stopped, its data directory empty."""
    data = query(server, "SHOW data_directory")
    host(server).run_test("systemctl stop 'postgresql@*'")
    host(server).run_test(f"find {shlex.quote(data)} -mindepth 1 -delete")
    assert host(server).run(f"ls -A {shlex.quote(data)}").stdout.strip() == ""


def restore(*extra: str) -> None:
    result = run_playbook(
        "playbooks/restore.yml", "-e", "restore_confirm=true", *extra, timeout=900
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_the_repository_holds_a_full_backup_and_lives_off_the_database_hosts() -> None:
    info = json.loads(pgbackrest("info", "--output=json").stdout)
    stanza = next(s for s in info if s["name"] == STANZA)
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert any(b["type"] == "full" for b in stanza["backup"]), stanza["backup"]
    assert stanza["cipher"] == "aes-256-cbc"
    for server in (DB, REPLICA):
        machine = host(server)
        files = machine.run(f"find {REPOSITORY_PATH} -type f 2>/dev/null").stdout.split()
        assert files == [], (server, files)
        assert "repo1-path" not in machine.file("/etc/pgbackrest/pgbackrest.conf").content_string


def test_the_repository_is_unreadable_without_its_key() -> None:
    repo = host(REPOSITORY)
    wal = repo.check_output(
        f"find {REPOSITORY_PATH}/archive -name '0000*' -type f -size +0 | head -1"
    ).strip()
    assert wal, "no archived WAL in the repository"
    # pgBackRest's cipher writes OpenSSL's salted format: the header, then ciphertext.
    assert repo.check_output(f"head -c 8 {shlex.quote(wal)}") == "Salted__"
    wrong = pgbackrest("--repo1-cipher-pass=" + uuid.uuid4().hex, "info", check=False)
    assert wrong.rc != 0 or '"code":0' not in wrong.stdout.replace(" ", ""), wrong.stdout
    right = pgbackrest("info", "--output=json")
    assert json.loads(right.stdout)[0]["status"]["code"] == 0


# --- The scheduled restore check (before anything here rolls the cluster back) ---------------


def unit_argv() -> list[str]:
    """The check's command line as its unit runs it."""
    shown = host(REPOSITORY).check_output(
        f"systemctl show -p ExecStart --value {CHECK_UNIT}.service"
    )
    return shlex.split(re.search(r"argv\[\]=([^;]*);", shown).group(1))


def check_command(result_file: str) -> str:
    """That command line as the repository's account, writing its outcome elsewhere."""
    argv = unit_argv()
    argv[argv.index("--result-file") + 1] = result_file
    return "runuser -u " + REPOSITORY_USER + " -- " + shlex.join(argv)


def scratch_left() -> list[str]:
    """Processes of the check's scratch instance, and clusters a package may have created."""
    repo = host(REPOSITORY)
    running = repo.run(f"pgrep -a -u {REPOSITORY_USER} postgres").stdout.split("\n")
    clusters = repo.run("pg_lsclusters --no-header").stdout.split("\n")
    return [line for line in running + clusters if line.strip()]


def test_the_restore_check_restores_on_the_backup_host_and_matches_the_primary() -> None:
    repo = host(REPOSITORY)
    assert repo.service(f"{CHECK_UNIT}.timer").is_enabled
    assert repo.service(f"{CHECK_UNIT}.timer").is_running
    table = "restore_check_probe_" + uuid.uuid4().hex[:8]
    rows = 41
    query(
        DB, f"CREATE TABLE {table} AS SELECT g AS n FROM generate_series(1, {rows}) g", APP_DATABASE
    )
    histories = repo.check_output(f"find {REPOSITORY_PATH}/archive -name '*.history' | sort")
    try:
        started = time.time()
        repo.run_expect([0], f"systemctl start {CHECK_UNIT}.service")
        seconds = time.time() - started
    finally:
        query(DB, f"DROP TABLE {table}", APP_DATABASE)

    outcome = json.loads(repo.file(CHECK_RESULT).content_string)
    assert outcome["result"] == "passed", outcome
    assert started - 5 <= outcome["finished_at"] <= time.time() + 5, outcome
    tables = outcome["tables"]
    probe = tables[f"public.{table}"]
    assert (probe["before"], probe["after"], probe["restored"]) == (rows, rows, rows), probe
    # The app's own tables are there too, migrations and all.
    assert tables["public.django_migrations"]["restored"] > 0, tables
    for name, counts in tables.items():
        assert (
            counts["after"] - counts["new"]
            <= counts["restored"]
            <= counts["before"] + counts["new"]
        ), name
    invocation = repo.check_output(f"systemctl show -p InvocationID --value {CHECK_UNIT}.service")
    journal = repo.check_output(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={invocation}")
    assert f"on the primary {address(DB)}" in journal
    assert f'recovery stopping at restore point "{outcome["restore_point"]}"' in journal
    assert f"ok        public.{table}: {rows} rows" in journal
    assert "restore check passed" in journal
    print(f"restore check: {seconds:.0f} s, {outcome['seconds']}, {outcome['summary']}")

    # Nothing of the scratch instance is left, and the promoted copy sent nothing (a timeline
    # of its own) to the repository.
    assert scratch_left() == []
    argv = unit_argv()
    scratch = argv[argv.index("--scratch-dir") + 1]
    assert repo.check_output(f"ls -A {shlex.quote(scratch)}") == ""
    assert (
        repo.check_output(f"find {REPOSITORY_PATH}/archive -name '*.history' | sort") == histories
    )
    # And none of it on the database hosts.
    for server in (DB, REPLICA):
        assert not host(server).file(scratch).exists, server


def test_the_restore_check_fails_on_rows_no_backup_holds() -> None:
    """An unlogged table's rows are never written to WAL: the restored copy has the table,
    empty. Run by hand with the unit's own arguments and its outcome written elsewhere, so the
    unit's state and record (which the alerts and the checklist read) stay as they were."""
    repo = host(REPOSITORY)
    table = "restore_check_unlogged_" + uuid.uuid4().hex[:8]
    work = repo.check_output("mktemp -d /tmp/hpd-restore-check-XXXXXX")
    repo.run_expect([0], f"chown {REPOSITORY_USER} {work}")
    query(
        DB,
        f"CREATE UNLOGGED TABLE {table} AS SELECT g AS n FROM generate_series(1, 5) g",
        APP_DATABASE,
    )
    try:
        result = repo.run(check_command(f"{work}/outcome.json"))
        outcome = json.loads(repo.file(f"{work}/outcome.json").content_string)
    finally:
        query(DB, f"DROP TABLE {table}", APP_DATABASE)
        repo.run(f"rm -rf {work}")
    assert result.rc == 1, result.stdout + result.stderr
    assert (
        f"MISMATCH  public.{table}: primary 5, restored 0 (an unlogged table: its rows are never"
        in result.stdout
    ), result.stdout
    assert outcome["result"] == "failed", outcome
    assert outcome["summary"].endswith(f"tables differ: public.{table}"), outcome
    assert outcome["tables"][f"public.{table}"]["restored"] == 0
    assert scratch_left() == []
    assert json.loads(repo.file(CHECK_RESULT).content_string)["result"] == "passed"


RECLONE_PLAYBOOK = f"""\
- name: Facts of every host (the role reads other hosts' addresses)
  ansible.builtin.import_playbook: {PROJECT_DIR / "playbooks/facts.yml"}

- name: The postgresql role on the primary and the replica, cloning the replica again
  hosts: {DB}:{REPLICA}
  gather_facts: false
  roles:
    - role: postgresql
      vars:
        postgresql_replica_reclone: true
"""


def test_a_destroyed_primary_comes_back_to_the_last_transaction_then_to_a_point_in_time(
    tmp_path: Path,
) -> None:
    table = "restore_probe_" + uuid.uuid4().hex[:8]
    query(DB, f"CREATE TABLE {table} (note text, written timestamptz DEFAULT clock_timestamp())")
    query(DB, f"INSERT INTO {table} (note) VALUES ('before')")
    pgbackrest("--type=incr", "backup")
    query(DB, f"INSERT INTO {table} (note) VALUES ('between')")
    between = query(DB, "SELECT clock_timestamp()")
    time.sleep(1.5)
    query(DB, f"INSERT INTO {table} (note) VALUES ('after')")
    archived(DB)

    destroy(DB)
    restore()
    assert query(DB, f"SELECT note FROM {table} ORDER BY written").split() == [
        "before",
        "between",
        "after",
    ]

    destroy(DB)
    restore("-e", json.dumps({"restore_target_time": between}))
    assert query(DB, f"SELECT note FROM {table} ORDER BY written").split() == [
        "before",
        "between",
    ]
    assert query(DB, "SELECT pg_is_in_recovery()") == "f"

    # The restored primary archives again, on its new timeline.
    pgbackrest("check")

    # The replica followed the old timeline: cloned again, it streams from the restored one.
    playbook = tmp_path / "reclone.yml"
    playbook.write_text(RECLONE_PLAYBOOK)
    reclone = run_playbook(str(playbook), timeout=900)
    assert reclone.returncode == 0, reclone.stdout[-4000:]
    assert wait_for(
        lambda: (
            query(DB, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1"
        ),
        timeout=60,
    )
    assert wait_for(lambda: query(REPLICA, f"SELECT count(*) FROM {table}") == "2", timeout=60)
    # The restore's recovery target is gone from the primary's settings, so the clone did not
    # copy it: a replica that reached it would promote itself.
    auto_conf = host(DB).file(query(DB, "SHOW data_directory") + "/postgresql.auto.conf")
    assert "recovery_target" not in auto_conf.content_string
    time.sleep(5)
    assert query(REPLICA, "SELECT pg_is_in_recovery()") == "t"
    query(DB, f"DROP TABLE {table}")
