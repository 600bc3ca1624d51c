"""Unit tests of the restore check's decisions (files/hpd_pgbackrest_restore_check.py): the
bounds a restored count must lie within, when a WAL segment counts as archived, which backup
and binaries a restore uses, which transactions are still running. The end-to-end check runs
in the stack scenario (molecule/stack/tests/test_restore.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "hpd_pgbackrest_restore_check", HERE.parent / "files" / "hpd_pgbackrest_restore_check.py"
)
rc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rc)


def verdicts(before, after, new, restored):
    return {table: ok for table, ok, _ in rc.compare(before, after, new, restored)}


# --- compare -----------------------------------------------------------------------------


def test_a_table_nothing_wrote_to_must_match_exactly() -> None:
    counts = {"public.room": 50}
    assert verdicts(counts, counts, {"public.room": 0}, {"public.room": 50}) == {
        "public.room": True
    }
    assert verdicts(counts, counts, {"public.room": 0}, {"public.room": 49}) == {
        "public.room": False
    }
    assert verdicts(counts, counts, {"public.room": 0}, {"public.room": 51}) == {
        "public.room": False
    }


def test_rows_written_around_the_restore_point_widen_the_bounds() -> None:
    # 3 rows inserted and 1 deleted between the snapshots: the restored copy holds any mix of
    # them, from 100 - 1 to 100 + 3.
    before, after, new = {"t": 100}, {"t": 102}, {"t": 3}
    for restored in (99, 100, 101, 102, 103):
        assert verdicts(before, after, new, {"t": restored}) == {"t": True}, restored
    for restored in (98, 104):
        assert verdicts(before, after, new, {"t": restored}) == {"t": False}, restored


def test_a_deletion_with_an_insert_in_between_is_allowed_either_way() -> None:
    # A count that stayed the same while a row was deleted and another inserted (the case
    # that made "equal counts must match exactly" cry wolf under load).
    assert verdicts({"t": 10}, {"t": 10}, {"t": 1}, {"t": 11}) == {"t": True}
    assert verdicts({"t": 10}, {"t": 10}, {"t": 1}, {"t": 9}) == {"t": True}


def test_tables_missing_on_either_side() -> None:
    results = {t: (ok, line) for t, ok, line in rc.compare({"a": 1}, {"a": 1}, {"a": 0}, {})}
    assert results["a"][0] is False
    assert "absent from the restored copy" in results["a"][1]
    results = {t: (ok, line) for t, ok, line in rc.compare({}, {}, {}, {"b": 2})}
    assert results["b"] == (False, "restored 2 rows, absent from the primary")
    # Created (or dropped) between the snapshots: either state may have been restored.
    assert verdicts({}, {"c": 5}, {"c": 5}, {}) == {"c": True}
    assert verdicts({"d": 5}, {}, {}, {"d": 5}) == {"d": True}


def test_the_line_says_what_was_compared() -> None:
    [(_, _, exact)] = rc.compare({"t": 7}, {"t": 7}, {"t": 0}, {"t": 7})
    assert exact == "7 rows"
    [(_, _, moved)] = rc.compare({"t": 7}, {"t": 8}, {"t": 1}, {"t": 8})
    assert (
        moved
        == "8 rows (primary 7 before the restore point, 8 after, 1 rows new in between at most)"
    )


# --- WAL archiving -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_archived", "archived"),
    [
        (None, False),
        ("000000010000000000000004", False),
        ("000000010000000000000005", True),
        ("000000010000000000000006", True),
        ("000000020000000000000001", True),  # a later timeline
        ("000000010000000000000005.partial", False),
        ("000000010000000000000005.00000028.backup", False),
        ("000000010000000000000006.00000028.backup", True),
        ("00000002.history", False),  # sorts above the segment as text, says nothing of it
    ],
)
def test_when_a_segment_counts_as_archived(last_archived, archived) -> None:
    assert rc.segment_archived(last_archived, "000000010000000000000005") is archived


# --- pgbackrest info ---------------------------------------------------------------------

INFO = [
    {
        "name": "site",
        "status": {"code": 0, "message": "ok"},
        "db": [{"id": 1, "version": "15"}, {"id": 2, "version": "17"}],
        "backup": [
            {"label": "20261129-013000F", "database": {"id": 1}},
            {"label": "20261206-013000F", "database": {"id": 2}},
        ],
    }
]


def test_the_newest_backup_and_its_version_are_restored() -> None:
    assert rc.backup_to_restore(json.dumps(INFO), "site") == ("20261206-013000F", "17")


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ([], "no stanza site"),
        ([{**INFO[0], "status": {"code": 2, "message": "no valid backups"}}], "no valid backups"),
        ([{**INFO[0], "backup": []}], "holds no backup yet"),
    ],
)
def test_a_repository_that_cannot_be_restored_is_named(info, message) -> None:
    with pytest.raises(rc.CheckError, match=message):
        rc.backup_to_restore(json.dumps(info), "site")


# --- Transactions, the scratch server ------------------------------------------------------


def test_snapshot_text_and_running_transactions() -> None:
    assert rc.snapshot_xids("10:20:10,14") == (10, 20, {10, 14})
    assert rc.snapshot_xids("20:20:") == (20, 20, set())
    # Listed as in progress, or at or past xmax (not ended when the snapshot was taken).
    assert rc.still_running("12:20:14", {11, 14, 19, 20, 21}) == {14, 20, 21}


def test_the_server_state_and_its_reason_to_stop(tmp_path: Path) -> None:
    assert rc.postmaster_status(tmp_path) == ""
    (tmp_path / "postmaster.pid").write_text(
        "4242\n/data\n1796531671\n5432\n/sock\n\n  12345  67890\nstarting\n"
    )
    assert rc.postmaster_status(tmp_path) == "starting"
    log = (
        "LOG:  restored log file\n"
        "2026-12-06 04:45:34.859 GMT FATAL:  recovery ended before configured recovery target"
        " was reached\nLOG:  database system is shut down\n"
    )
    assert rc.first_fatal(log) == "recovery ended before configured recovery target was reached"
    assert rc.first_fatal("LOG: fine\n") == "no FATAL message in its log"
