#!/usr/bin/python3
"""Prove the pgBackRest repository restores the primary's rows, on the repository host.

Installed by the pgbackrest role as /usr/local/sbin/hpd-pgbackrest-restore-check and run as
the repository's account by hpd-pgbackrest-restore-check.service (a weekly timer; run it by
hand any time). The database hosts only answer a few queries: the restore runs here.

Steps:
  1. on the primary, as a role that reads every table: take snapshot A, create a named
     restore point, wait until every transaction then in progress has ended, take snapshot
     B, and count the rows of every table of --database in A and in B (in B also the rows
     written by transactions A did not see). The restored copy holds every commit A saw and
     none B missed, so its count of a table lies within [B - new rows, A + new rows]: exactly
     A (= B) for a table nothing wrote to in the milliseconds between (see compare());
  2. switch WAL and wait until the segment holding the restore point is archived;
  3. `pgbackrest restore` of the newest backup into --scratch-dir, to the restore point
     (--reset-pg1-host: the repository host's configuration names the remote database
     hosts; pgBackRest writes the same options into the restore_command it leaves);
  4. start the restored copy with this host's PostgreSQL binaries of the backup's major
     version, on a Unix socket in a private directory only, archiving off (a promoted copy
     must never send a timeline of its own to the repository), and wait until it has
     replayed the archived WAL up to the restore point and promoted itself;
  5. count the same tables there and compare; stop the copy and remove it (unless --keep);
  6. with --result-file, record the outcome (JSON: result passed, failed or error, finished_at,
     summary, restore_point, backup, tables, seconds) where the checklist reads it; unlike the
     unit's state it survives a reboot.

Exit status: 0 when every table matches; 1 when the restored copy differs from the primary or
could not be brought to the restore point (the backups are in doubt); 2 when the check could
not get as far as restoring (the primary, the archiving wait, this host).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

TABLES_QUERY = """
    SELECT n.nspname, c.relname, c.relpersistence = 'u'
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%'
      AND n.nspname NOT LIKE 'pg\\_temp%'
    ORDER BY 1, 2
"""
APPLICATION_NAME = "hpd-pgbackrest-restore-check"


class CheckError(Exception):
    """The check could not be carried out: it says nothing about the backups."""


class RestoreFailed(Exception):
    """The repository could not give back the primary's state at the restore point."""


def log(message: str) -> None:
    print(message, flush=True)


# --- Pure logic (unit-tested in roles/pgbackrest/tests) ---------------------------------


def compare(
    before: dict[str, int],
    after: dict[str, int],
    new: dict[str, int],
    restored: dict[str, int],
) -> list[tuple[str, bool, str]]:
    """(table, ok, line) for every table.

    `before` counts a table in snapshot A, taken before the restore point; `after` in
    snapshot B, taken once every transaction in progress at the restore point had ended;
    `new` counts the rows visible in B that a transaction A could not see wrote (a superset:
    every row whose xmin is not older than A's xmin). Every commit A sees precedes the
    restore point in WAL, and every commit before it is visible in B, so the restored rows
    are A's, minus some deleted since (at most after - before + new of them), plus some of
    the new rows: the count lies within [after - new, before + new], which also holds
    [min(before, after), max(before, after)]. A table nothing wrote to in between has one
    count, before = after, and new = 0. A table absent from a snapshot was created or
    dropped in between, so either state may be restored.

    Not covered: a row both inserted before the restore point and deleted after it, within
    those milliseconds, is in neither snapshot yet restored (a one-row excess)."""
    results = []
    for table in sorted(set(before) | set(after) | set(restored)):
        got = restored.get(table)
        if table not in before and table not in after:
            results.append((table, False, f"restored {got} rows, absent from the primary"))
            continue
        if table not in before or table not in after:
            primary = (
                f"{before.get(table, 'absent')} before the restore point, "
                f"{after.get(table, 'absent')} after"
            )
            results.append((table, True, f"{got} rows (primary {primary}: created or dropped)"))
            continue
        slack = new.get(table, 0)
        low, high = after[table] - slack, before[table] + slack
        if before[table] == after[table] and slack == 0:
            primary = str(before[table])
        else:
            primary = (
                f"{before[table]} before the restore point, {after[table]} after, "
                f"{slack} rows new in between at most"
            )
        if got is None:
            results.append((table, False, f"primary {primary}, absent from the restored copy"))
        elif low <= got <= high:
            note = f" (primary {primary})" if primary != str(got) else ""
            results.append((table, True, f"{got} rows{note}"))
        else:
            results.append((table, False, f"primary {primary}, restored {got}"))
    return results


def snapshot_xids(text: str) -> tuple[int, int, set[int]]:
    """xmin, xmax and the in-progress xids of a pg_snapshot's text ("10:20:10,14")."""
    xmin, xmax, xip = text.split(":")
    return int(xmin), int(xmax), {int(x) for x in xip.split(",") if x}


def segment_archived(last_archived: str | None, segment: str) -> bool:
    """Whether pg_stat_archiver's last_archived_wal shows `segment` archived. The archiver
    sends segments in name order (timeline, then position), so a later segment archived
    means this one was too. A timeline history file, or a backup label or partial segment
    named after this very segment, says nothing about the segment itself."""
    if not last_archived:
        return False
    head, rest = last_archived[:24], last_archived[24:]
    if len(head) < 24 or any(c not in "0123456789ABCDEF" for c in head):
        return False
    return head > segment or (head == segment and rest == "")


def backup_to_restore(info_json: str, stanza: str) -> tuple[str, str]:
    """(label, PostgreSQL major version) of the backup `pgbackrest restore` takes by default:
    the newest one of the stanza, read from `pgbackrest info --output=json`."""
    stanzas = [s for s in json.loads(info_json) if s.get("name") == stanza]
    if not stanzas:
        raise CheckError(f"the repository has no stanza {stanza}")
    entry = stanzas[0]
    if entry.get("status", {}).get("code", 0) != 0:
        raise CheckError(f"stanza {stanza}: {entry['status'].get('message', 'not ok')}")
    backups = entry.get("backup") or []
    if not backups:
        raise CheckError(f"stanza {stanza} holds no backup yet")
    newest = backups[-1]
    database_id = newest.get("database", {}).get("id")
    versions = {db.get("id"): db.get("version") for db in entry.get("db", [])}
    version = versions.get(database_id)
    if not version:
        raise CheckError(f"no PostgreSQL version recorded for backup {newest.get('label')}")
    return newest["label"], str(version)


# --- On the primary -------------------------------------------------------------------------


def connect_primary(args):
    import psycopg2  # Only where the check runs: its unit tests need no driver.

    return psycopg2.connect(
        host=args.primary_host,
        port=args.primary_port,
        dbname=args.database,
        user=args.user,
        passfile=str(args.passfile),
        application_name=APPLICATION_NAME,
        connect_timeout=30,
    )


def count_rows(connection, since_xmin: int | None = None):
    """Rows of every table in the connection's snapshot, which tables are unlogged, and,
    with `since_xmin` (a 32-bit xid), how many of each table's rows have an xmin that is not
    older (compared by age, so across xid wraparound too)."""
    from psycopg2 import sql

    counts, new, unlogged = {}, {}, set()
    query = "SELECT count(*), 0 FROM {}.{}"
    if since_xmin is not None:
        query = "SELECT count(*), count(*) FILTER (WHERE age(xmin) <= age(%s::xid)) FROM {}.{}"
    with connection.cursor() as cursor:
        cursor.execute(TABLES_QUERY)
        for schema, table, is_unlogged in cursor.fetchall():
            cursor.execute(
                sql.SQL(query).format(sql.Identifier(schema), sql.Identifier(table)),
                None if since_xmin is None else (str(since_xmin),),
            )
            name = f"{schema}.{table}"
            counts[name], new[name] = cursor.fetchone()
            if is_unlogged:
                unlogged.add(name)
    return counts, new, unlogged


def read_only_snapshot(args):
    """A connection whose next query opens a read-only REPEATABLE READ transaction: its
    snapshot is taken by that first query and every later one sees the database as then."""
    connection = connect_primary(args)
    connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
    return connection


def still_running(snapshot: str, xids: set[int]) -> set[int]:
    """Those of `xids` a pg_snapshot's text ("10:20:10,14") shows in progress: listed, or not
    below its xmax (which is past the newest transaction that had ended, not past every
    transaction that exists)."""
    _, xmax, xip = snapshot_xids(snapshot)
    return {x for x in xids if x in xip or x >= xmax}


def wait_for_transactions(cursor, xids: set[int], timeout: float) -> set[int]:
    """Wait until none of these transactions is in progress any more; returns those that
    still are after `timeout` (open since before the restore point and idle: they had
    written no commit record then)."""
    deadline = time.monotonic() + timeout
    while xids:
        cursor.execute("SELECT pg_current_snapshot()::text")
        xids = still_running(cursor.fetchone()[0], xids)
        if not xids or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return xids


def mark_the_primary(args, point: str):
    """Snapshot A, a new restore point, snapshot B once the transactions in progress at the
    point have ended, the counts in both, then the point's WAL segment archived."""
    control = connect_primary(args)
    control.autocommit = True
    before = after = None
    try:
        with control.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version_num')::int / 10000")
            primary_version = str(cursor.fetchone()[0])
        before, after = read_only_snapshot(args), read_only_snapshot(args)
        with before.cursor() as first, control.cursor() as cursor, after.cursor() as second:
            first.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            before_xmin = int(first.fetchone()[0]) % 2**32
            cursor.execute("SELECT pg_create_restore_point(%s)::text", (point,))
            point_lsn = cursor.fetchone()[0]
            # A transaction whose commit record precedes the restore point in WAL may still be
            # finishing (flushing WAL) and invisible: B waits for every transaction in
            # progress now, those of the snapshot's list and those with an xid from its xmax
            # up to the one this statement takes (every xid given out before is lower).
            cursor.execute("SELECT pg_current_snapshot()::text, pg_current_xact_id()::text")
            now, own_xid = cursor.fetchone()
            _, now_xmax, now_xip = snapshot_xids(now)
            lingering = wait_for_transactions(
                cursor, now_xip | set(range(now_xmax, int(own_xid))), args.transaction_wait
            )
            second.execute("SELECT 1")
        log(f"restore point {point} at {point_lsn} on the primary {args.primary_host}")
        if lingering:
            log(
                f"transactions {sorted(lingering)} were still open {args.transaction_wait:.0f} s "
                "after the restore point; counted as not committed at it"
            )
        counts_before, _, unlogged = count_rows(before)
        counts_after, new, unlogged_after = count_rows(after, since_xmin=before_xmin)
    finally:
        for connection in (before, after):
            if connection is not None:
                connection.close()
    try:
        wait_for_archive(control, args.archive_timeout)
    finally:
        control.close()
    return point_lsn, primary_version, (counts_before, counts_after, new), unlogged | unlogged_after


def wait_for_archive(control, timeout: float) -> None:
    with control.cursor() as cursor:
        cursor.execute("SELECT pg_walfile_name(pg_switch_wal())")
        segment = cursor.fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            cursor.execute(
                "SELECT last_archived_wal, last_failed_wal, last_failed_time::text"
                " FROM pg_stat_archiver"
            )
            archived, failed, failed_at = cursor.fetchone()
            if segment_archived(archived, segment):
                log(f"WAL segment {segment} (holding the restore point) is archived")
                return
            if time.monotonic() > deadline:
                raise CheckError(
                    f"WAL segment {segment} was not archived within {timeout:.0f} s "
                    f"(last archived {archived}, last failed {failed} at {failed_at}): "
                    "is archive_command failing on the primary?"
                )
            time.sleep(1)


# --- On this host -----------------------------------------------------------------------


def pgbackrest(args, *arguments: str, capture: bool = False) -> subprocess.CompletedProcess:
    command = ["pgbackrest", f"--config={args.config}", f"--stanza={args.stanza}", *arguments]
    return subprocess.run(command, check=True, text=True, capture_output=capture)


def clear_scratch(scratch: Path) -> None:
    """Remove what this script puts in the scratch directory, and nothing else."""
    data = scratch / "data"
    if (data / "postmaster.pid").exists():
        pid_line = (data / "postmaster.pid").read_text().splitlines()[:1]
        if pid_line and Path(f"/proc/{pid_line[0].strip()}").exists():
            raise CheckError(
                f"a scratch instance still runs in {data} (pid {pid_line[0].strip()}), left "
                "by a run with --keep? Stop it with pg_ctl stop -D " + str(data)
            )
    for name in ("data", "socket"):
        shutil.rmtree(scratch / name, ignore_errors=True)
    (scratch / "server.log").unlink(missing_ok=True)


def restore(args, point: str, scratch: Path) -> None:
    data = scratch / "data"
    data.mkdir(mode=0o700)
    try:
        pgbackrest(
            args,
            "--reset-pg1-host",
            f"--pg1-path={data}",
            "--type=name",
            f"--target={point}",
            "--target-action=promote",
            # Written into postgresql.auto.conf too, beside the settings given at start.
            "--archive-mode=off",
            "--log-level-console=info",
            "restore",
        )
    except subprocess.CalledProcessError as error:
        raise RestoreFailed(f"pgbackrest restore failed (exit {error.returncode})") from error
    # Debian keeps a cluster's configuration in /etc, so the backup holds none of it. Only
    # this account reaches the socket directory (0700), hence trust.
    (data / "postgresql.conf").write_text(
        "# The restore check's scratch instance: its settings are given on the command line.\n"
    )
    (data / "pg_hba.conf").write_text("local all all trust\n")
    (data / "pg_ident.conf").write_text("")


def server_settings(args, scratch: Path) -> list[str]:
    settings = {
        "listen_addresses": "",
        "unix_socket_directories": str(scratch / "socket"),
        "unix_socket_permissions": "0700",
        "port": "5432",
        "archive_mode": "off",
        # No queries during recovery: the hot-standby limits need not match the primary's.
        "hot_standby": "off",
        "shared_buffers": f"{args.shared_buffers_mb}MB",
        "max_connections": "10",
        "max_wal_senders": "0",
        "max_replication_slots": "0",
        "shared_preload_libraries": "",
        "logging_collector": "off",
        "log_line_prefix": "%m ",
        "cluster_name": "restore-check",
    }
    return [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]


def log_tail(log_file: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def first_fatal(log_text: str) -> str:
    """The server's first FATAL or PANIC message, the reason it stopped."""
    for line in log_text.splitlines():
        for level in ("FATAL:", "PANIC:"):
            if level in line:
                return line.split(level, 1)[1].strip()
    return "no FATAL message in its log"


def postmaster_status(data: Path) -> str:
    """The server's state from postmaster.pid, as pg_ctl reads it: "starting" until recovery
    has ended (with hot_standby off), then "ready"."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return ""
    return lines[7].strip() if len(lines) > 7 else ""


def start_scratch(args, scratch: Path, bin_dir: Path):
    """Start the restored copy and wait until it has promoted itself; returns the process."""
    socket_dir = scratch / "socket"
    socket_dir.mkdir(mode=0o700)
    log_file = scratch / "server.log"
    with log_file.open("w") as output:
        server = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(scratch / "data"),
                *server_settings(args, scratch),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_promotion(args, scratch, server)
    except BaseException:
        stop_scratch(server)
        raise
    return server


def wait_for_promotion(args, scratch: Path, server) -> None:
    log_file = scratch / "server.log"
    deadline = time.monotonic() + args.recovery_timeout
    while postmaster_status(scratch / "data") != "ready":
        if server.poll() is not None:
            tail = log_tail(log_file)
            raise RestoreFailed(
                "the restored copy stopped during recovery: "
                f"{first_fatal(log_file.read_text(errors='replace'))}\n{tail}"
            )
        if time.monotonic() > deadline:
            raise RestoreFailed(
                f"the restored copy did not finish recovery within {args.recovery_timeout:.0f} s"
                f"\n{log_tail(log_file)}"
            )
        time.sleep(0.5)
    connection = connect_scratch(args, scratch, "postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            if cursor.fetchone()[0]:
                raise RestoreFailed(
                    "the restored copy accepts connections but is still in recovery"
                )
    finally:
        connection.close()


def connect_scratch(args, scratch: Path, database: str):
    import psycopg2

    connection = psycopg2.connect(
        host=str(scratch / "socket"),
        port=5432,
        dbname=database,
        user=args.scratch_superuser,
        application_name=APPLICATION_NAME,
    )
    connection.autocommit = True
    return connection


def stop_scratch(server) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGINT)  # fast shutdown
    try:
        server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.send_signal(signal.SIGQUIT)  # immediate shutdown: the copy is thrown away
        server.wait(timeout=60)


def reached_point(args, scratch: Path, point_lsn: str) -> str:
    """The line of the server log saying where recovery stopped, once checked that replay
    went as far as the restore point."""
    connection = connect_scratch(args, scratch, "postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, pg_last_wal_replay_lsn()::text",
                (point_lsn,),
            )
            reached, replayed = cursor.fetchone()
    finally:
        connection.close()
    if not reached:
        raise RestoreFailed(f"replay stopped at {replayed}, before the restore point {point_lsn}")
    lines = (scratch / "server.log").read_text(errors="replace").splitlines()
    stopping = [line for line in lines if "recovery stopping" in line]
    return stopping[-1] if stopping else f"replayed up to {replayed}"


def record(result_file: Path | None, outcome: dict) -> None:
    """Write the outcome under a temporary name and rename it: a reader never sees half."""
    if result_file is None:
        return
    outcome = {"finished_at": time.time(), **outcome}
    partial = result_file.with_name(result_file.name + ".partial")
    partial.write_text(json.dumps(outcome, sort_keys=True) + "\n")
    os.replace(partial, result_file)


def main(args, outcome: dict) -> int:
    started = time.monotonic()
    seconds = outcome["seconds"]
    info = pgbackrest(args, "--output=json", "info", capture=True).stdout
    label, version = backup_to_restore(info, args.stanza)
    outcome["backup"] = label
    bin_dir = args.postgresql_lib / version / "bin"
    if not (bin_dir / "postgres").exists():
        raise CheckError(
            f"backup {label} is of PostgreSQL {version}, and {bin_dir}/postgres is missing: "
            "converge the repository host again (it installs that version)"
        )
    scratch = args.scratch_dir
    clear_scratch(scratch)

    point = f"hpd-restore-check-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    point += f"-{uuid.uuid4().hex[:6]}"
    outcome["restore_point"] = point
    point_lsn, primary_version, primary_counts, unlogged = mark_the_primary(args, point)
    before, after, new = primary_counts
    if primary_version != version:
        raise CheckError(
            f"the primary runs PostgreSQL {primary_version}, the newest backup ({label}) is "
            f"of {version}: has the cluster been upgraded without a new stanza and backup?"
        )
    seconds["primary"] = round(time.monotonic() - started, 1)

    server = None
    try:
        mark = time.monotonic()
        log(f"restoring backup {label} (PostgreSQL {version}) into {scratch / 'data'}")
        restore(args, point, scratch)
        seconds["restore"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        server = start_scratch(args, scratch, bin_dir)
        log(reached_point(args, scratch, point_lsn))
        seconds["recovery"] = round(time.monotonic() - mark, 1)
        connection = connect_scratch(args, scratch, args.database)
        try:
            restored, _, _ = count_rows(connection)
        finally:
            connection.close()
    finally:
        stop_scratch(server)
        if not args.keep:
            clear_scratch(scratch)

    outcome["tables"] = {
        table: {
            "before": before.get(table),
            "after": after.get(table),
            "new": new.get(table),
            "restored": restored.get(table),
        }
        for table in sorted(set(before) | set(after) | set(restored))
    }
    mismatches = []
    for table, ok, line in compare(before, after, new, restored):
        if ok:
            log(f"ok        {table}: {line}")
        else:
            mismatches.append(table)
            hint = (
                " (an unlogged table: its rows are never written to WAL, so no backup holds them)"
                if table in unlogged
                else ""
            )
            log(f"MISMATCH  {table}: {line}{hint}")
    seconds["total"] = round(time.monotonic() - started, 1)
    tables = len(set(before) | set(after) | set(restored))
    if mismatches:
        named = ", ".join(mismatches[:5]) + (", ..." if len(mismatches) > 5 else "")
        outcome.update(
            result="failed", summary=f"{len(mismatches)} of {tables} tables differ: {named}"
        )
        log(f"restore check FAILED: {outcome['summary']} (backup {label}, restore point {point})")
        return 1
    outcome.update(
        result="passed",
        summary=(
            f"{tables} tables, {sum(restored.values())} rows, backup {label} restored to "
            f"{point} in {seconds['total']:.0f} s"
        ),
    )
    log(f"restore check passed: {outcome['summary']}")
    return 0


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stanza", required=True)
    parser.add_argument("--config", type=Path, default=Path("/etc/pgbackrest/pgbackrest.conf"))
    parser.add_argument("--primary-host", required=True, help="the primary's address")
    parser.add_argument("--primary-port", type=int, default=5432)
    parser.add_argument("--database", required=True, help="the database whose rows are compared")
    parser.add_argument("--user", required=True, help="the role the check logs in as")
    parser.add_argument("--passfile", required=True, type=Path, help="its libpq password file")
    parser.add_argument("--scratch-dir", required=True, type=Path)
    parser.add_argument(
        "--postgresql-lib",
        type=Path,
        default=Path("/usr/lib/postgresql"),
        help="where <major version>/bin/postgres is found",
    )
    parser.add_argument("--scratch-superuser", default="postgres")
    parser.add_argument("--shared-buffers-mb", type=int, default=128)
    parser.add_argument("--archive-timeout", type=float, default=300)
    parser.add_argument(
        "--transaction-wait",
        type=float,
        default=30,
        help="seconds to wait for transactions in progress at the restore point to end",
    )
    parser.add_argument("--recovery-timeout", type=float, default=3600)
    parser.add_argument("--result-file", type=Path, help="record the outcome in this JSON file")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the (stopped) restored copy in the scratch directory",
    )
    return parser.parse_args(argv)


def stopped(signum, _frame):
    # Raised where the check is, so the scratch instance is stopped and the outcome recorded.
    raise CheckError(f"stopped by signal {signal.Signals(signum).name}")


if __name__ == "__main__":
    arguments = parse_args()
    signal.signal(signal.SIGTERM, stopped)
    result = {"seconds": {}}
    try:
        status = main(arguments, result)
    except RestoreFailed as failure:
        print(f"restore check FAILED: {failure}", file=sys.stderr, flush=True)
        result.update(result="failed", summary=str(failure).splitlines()[0])
        status = 1
    # Anything else, from the driver, pgBackRest or this host, is recorded as "could not
    # run" rather than lost with a traceback: the checklist and the alerts read the record.
    except Exception as error:
        print(f"restore check could not run: {error}", file=sys.stderr, flush=True)
        result.update(result="error", summary=f"could not run: {str(error).splitlines()[0]}")
        status = 2
    record(arguments.result_file, result)
    sys.exit(status)
