"""PostgreSQL on the staging primary and replica, driven from other containers.

What a neighbour on the private network sees: the application host logs in with the app
role's password and queries; a host that is not an application host is refused by
pg_hba.conf; memory settings follow the book's formulas for the RAM the inventory gives
the role (else the container's) and for other RAM sizes rendered by the role itself; a
reload-only change does not restart the server while a shared_buffers change does; a row
written on the primary is read on the replica; a dump taken by the backup service
restores with the same rows; bad input stops the role before it changes anything.

Tests that change the server put it back as the role leaves it (molecule runs idempotence
before verify, and the stack's later test modules need the primary as site.yml left it).
"""

# SQL in these tests is built from names the tests generate (uuid hex) and inventory values.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import json
import re
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from data_tier import (
    APP,
    OUTSIDER,
    PRIMARY,
    assert_role_stops_before_any_change,
    bare_inventory,
    role_playbook,
)
from hpdtest import PROJECT_DIR, address, group_hosts, host, run_playbook, task_result, wait_for
from stack import REPLICA

ROLE_TEMPLATE = PROJECT_DIR / "roles" / "postgresql" / "templates" / "postgresql.conf.j2"
GIB = 1024  # MB
OTHER_RAM_SIZES_MB = [1 * GIB, 4 * GIB, 16 * GIB, 64 * GIB, 256 * GIB]
SIZE_UNITS_KB = {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}
BACKUP_HOST = group_hosts("backups")[0]


# --- Helpers -------------------------------------------------------------------------------


FACTS_PLAY = """\
- name: Facts of every host (the role reads other hosts' addresses)
  hosts: all
  gather_facts: true
  tasks: []
"""

PROBE_PLAYBOOK = (
    FACTS_PLAY
    + f"""
- name: Resolve the postgresql role's variables as a run of the role would
  hosts: {PRIMARY}
  gather_facts: false
  tasks:
    - name: Load the role's defaults and derived values (and check them)
      ansible.builtin.include_role:
        name: postgresql
        tasks_from: validate_facts.yml
        public: true

    - name: Report the variables
      ansible.builtin.debug:
        msg:
          app_user: "{{{{ site_database_user }}}}"
          app_database: "{{{{ site_database_name }}}}"
          app_password: "{{{{ site_database_password }}}}"
          backup_check_user: "{{{{ site_backup_check_user }}}}"
          backup_check_password: "{{{{ site_backup_check_password }}}}"
          port: "{{{{ site_ports.postgresql | int }}}}"
          max_connections: "{{{{ postgresql_max_connections | int }}}}"
          ram_mb_setting: "{{{{ postgresql_ram_mb }}}}"
          ram_mb: "{{{{ __postgresql_ram_mb | int }}}}"
          conf_file: "{{{{ __postgresql_conf_file }}}}"
          backup_dir: "{{{{ site_database_dumps_dir }}}}"
          restore_check_result_file: "{{{{ site_restore_check_result_file }}}}"
          restore_check_database: "{{{{ postgresql_restore_check_database }}}}"
          log_min_duration_statement_ms: "{{{{ postgresql_log_min_duration_statement_ms }}}}"

    - name: Run the role's memory checks for other RAM sizes
      ansible.builtin.include_role:
        name: postgresql
        tasks_from: validate_facts.yml
      vars:
        postgresql_ram_mb: "{{{{ item }}}}"
      loop: {OTHER_RAM_SIZES_MB}

    - name: Render the role's settings file for other RAM sizes
      ansible.builtin.debug:
        msg: "{{{{ lookup('ansible.builtin.template', '{ROLE_TEMPLATE}') }}}}"
      vars:
        postgresql_ram_mb: "{{{{ item }}}}"
      loop: {OTHER_RAM_SIZES_MB}
"""
)

ROLE_ON_PRIMARY_PLAYBOOK = (
    FACTS_PLAY
    + f"""
- name: The postgresql role on the primary
  hosts: {PRIMARY}
  gather_facts: false
  roles:
    - role: postgresql
"""
)


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Variables resolved by Ansible, and the settings file rendered for other RAM sizes."""
    playbook = tmp_path_factory.mktemp("postgresql") / "probe.yml"
    playbook.write_text(PROBE_PLAYBOOK)
    result = run_playbook(str(playbook), json_output=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = json.loads(result.stdout)
    values = task_result(output, "Report the variables", PRIMARY)["msg"]
    rendered = task_result(output, "Render the role's settings file for other RAM sizes", PRIMARY)
    values["rendered"] = {item["item"]: item["msg"] for item in rendered["results"]}
    return values


@pytest.fixture(scope="session")
def primary_playbook(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every host's facts (the role reads other hosts' addresses), then the role on the
    primary with the stack's inventory."""
    playbook = tmp_path_factory.mktemp("postgresql") / "role-on-primary.yml"
    playbook.write_text(ROLE_ON_PRIMARY_PLAYBOOK)
    return str(playbook)


def psql(
    client: str,
    server: str,
    sql: str,
    probe: dict,
    *,
    password: str | None = None,
    user: str | None = None,
    database: str | None = None,
):
    """psql on `client` over TCP to `server`; returns testinfra's CommandResult."""
    conninfo = " ".join(
        [
            f"host={address(server)}",
            f"port={probe['port']}",
            f"dbname={database or probe['app_database']}",
            f"user={user or probe['app_user']}",
            "connect_timeout=5",
        ]
    )
    secret = probe["app_password"] if password is None else password
    return host(client).run(
        f"PGPASSWORD={shlex.quote(secret)} psql -X -A -t -v ON_ERROR_STOP=1 "
        f"{shlex.quote(conninfo)} -c {shlex.quote(sql)}"
    )


def app_query(server: str, sql: str, probe: dict) -> str:
    """A query as the application would run it: from the app host, as the app role."""
    result = psql(APP, server, sql, probe)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def local_query(server: str, sql: str, database: str = "postgres") -> str:
    """A query as the postgres superuser over the server's own Unix socket."""
    return host(server).check_output(
        f"runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 -d {shlex.quote(database)} "
        f"-c {shlex.quote(sql)}"
    )


def size_kb(text: str) -> int:
    """A PostgreSQL size as SHOW prints it ('6026MB', '8GB', '512kB') in kB."""
    match = re.fullmatch(r"(\d+)\s*(kB|MB|GB|TB)", text.strip())
    assert match, f"not a size: {text!r}"
    return int(match[1]) * SIZE_UNITS_KB[match[2]]


def book_formulas_mb(ram_mb: int, max_connections: int) -> dict[str, int]:
    """High Performance Django's memory rules, computed independently of the role."""
    return {
        "shared_buffers": min(ram_mb // 4, 8 * GIB),
        "effective_cache_size": ram_mb // 2,
        "maintenance_work_mem": ram_mb // 16,
        "work_mem": max(2 * ram_mb // max_connections, 1),
    }


def rendered_settings(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+) = (\S+)$", text, flags=re.MULTILINE))


def start_time(server: str = PRIMARY) -> str:
    return local_query(server, "SELECT pg_postmaster_start_time()")


def show(setting: str, server: str = PRIMARY) -> str:
    return local_query(server, f"SHOW {setting}")


@pytest.fixture
def scratch_table(probe: dict):
    """A table of the app database, created by the app role, dropped afterwards."""
    name = f"hpd_verify_{uuid.uuid4().hex[:8]}"
    app_query(PRIMARY, f"CREATE TABLE {name} (id serial PRIMARY KEY, note text NOT NULL)", probe)
    yield name
    app_query(PRIMARY, f"DROP TABLE IF EXISTS {name}", probe)


# --- Service and access ----------------------------------------------------------------------


def test_cluster_running_and_enabled() -> None:
    for server in (PRIMARY, REPLICA):
        assert host(server).service("postgresql").is_enabled
        assert local_query(server, "SELECT 1") == "1"


def test_app_role_logs_in_from_the_app_host_and_queries(probe: dict) -> None:
    who = app_query(PRIMARY, "SELECT current_user || ' ' || current_database()", probe)
    assert who == f"{probe['app_user']} {probe['app_database']}"
    assert (
        app_query(PRIMARY, "SELECT count(*) FROM pg_class WHERE relname = 'pg_class'", probe) == "1"
    )


def test_app_password_is_stored_as_scram(probe: dict) -> None:
    verifier = local_query(
        PRIMARY,
        f"SELECT rolpassword FROM pg_authid WHERE rolname = '{probe['app_user']}'",
    )
    assert verifier.startswith("SCRAM-SHA-256$")
    assert show("password_encryption") == "scram-sha-256"


def test_wrong_password_is_refused(probe: dict) -> None:
    result = psql(APP, PRIMARY, "SELECT 1", probe, password="not-" + uuid.uuid4().hex)
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_non_app_host_is_refused_by_pg_hba(probe: dict) -> None:
    result = psql(OUTSIDER, PRIMARY, "SELECT 1", probe)
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr, result.stderr
    assert address(OUTSIDER) in result.stderr


def test_app_role_cannot_use_the_postgres_database(probe: dict) -> None:
    result = psql(APP, PRIMARY, "SELECT 1", probe, database="postgres")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr, result.stderr


def test_backup_check_role_logs_in_from_the_backup_host_only(probe: dict) -> None:
    """The restore check's read-only role: the backup host reaches the primary's port, and so
    do the app hosts; pg_hba.conf pairs each role with its own hosts, the password aside."""
    read = "SELECT count(*) FROM pg_class WHERE relname = 'pg_class'"
    as_check = {"user": probe["backup_check_user"], "password": probe["backup_check_password"]}
    allowed = psql(BACKUP_HOST, PRIMARY, read, probe, **as_check)
    assert allowed.rc == 0, allowed.stderr
    assert allowed.stdout.strip() == "1"
    for refused in (
        psql(APP, PRIMARY, read, probe, **as_check),  # the right password, from an app host
        psql(BACKUP_HOST, PRIMARY, read, probe),  # the app role, from the backup host
    ):
        assert refused.rc != 0
        assert "no pg_hba.conf entry" in refused.stderr, refused.stderr


def test_listens_on_loopback_and_the_private_address_only(probe: dict) -> None:
    port = probe["port"]
    listeners = {
        line.split()[3]
        for line in host(PRIMARY).check_output(f"ss -tlnH 'sport = :{port}'").splitlines()
        if line.strip()
    }
    assert f"127.0.0.1:{port}" in listeners
    assert f"{address(PRIMARY)}:{port}" in listeners
    assert listeners <= {f"127.0.0.1:{port}", f"[::1]:{port}", f"{address(PRIMARY)}:{port}"}


def test_pg_stat_statements_is_loaded_and_created(probe: dict) -> None:
    assert "pg_stat_statements" in show("shared_preload_libraries").split(",")
    # The view errors unless the library is preloaded; the app role may read its own rows.
    calls = app_query(PRIMARY, "SELECT count(*) >= 0 FROM pg_stat_statements", probe)
    assert calls == "t"


# --- Memory from RAM -------------------------------------------------------------------------


def test_memory_settings_follow_the_formulas_for_this_host(probe: dict) -> None:
    # The RAM the inventory gives the role (postgresql_ram_mb), else the host's own.
    ram_mb = probe["ram_mb_setting"]
    if ram_mb is None:
        meminfo = host(PRIMARY).file("/proc/meminfo").content_string
        ram_mb = int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, flags=re.MULTILINE)[1]) // 1024
    ram_mb = int(ram_mb)
    assert int(probe["ram_mb"]) == ram_mb
    max_connections = int(show("max_connections"))
    assert max_connections == probe["max_connections"] < 400
    for name, expected_mb in book_formulas_mb(ram_mb, max_connections).items():
        assert size_kb(show(name)) == expected_mb * 1024, name


@pytest.mark.parametrize("ram_mb", OTHER_RAM_SIZES_MB, ids=lambda mb: f"{mb // GIB}GiB")
def test_memory_settings_follow_the_formulas_for_other_ram_sizes(probe: dict, ram_mb: int) -> None:
    settings = rendered_settings(probe["rendered"][ram_mb])
    expected = book_formulas_mb(ram_mb, probe["max_connections"])
    for name, expected_mb in expected.items():
        assert settings[name] == f"{expected_mb}MB", name
    if ram_mb >= 32 * GIB:
        assert settings["shared_buffers"] == "8192MB"  # the 8 GB cap


# --- Reload versus restart -------------------------------------------------------------------


@contextlib.contextmanager
def role_put_back(primary_playbook: str, probe: dict) -> Iterator[None]:
    """However the block ends, run the role on the primary once more with the stack's
    variables; its settings file must then be the one site.yml left."""
    conf_before = host(PRIMARY).file(probe["conf_file"]).sha256sum
    try:
        yield
    finally:
        restore_run = run_playbook(primary_playbook)
        assert restore_run.returncode == 0, restore_run.stdout[-4000:]
    assert host(PRIMARY).file(probe["conf_file"]).sha256sum == conf_before


def test_reload_only_change_keeps_the_server_running_and_restart_change_restarts(
    probe: dict, primary_playbook: str
) -> None:
    started = start_time()
    original_shared_buffers = show("shared_buffers")
    original_log_min = show("log_min_duration_statement")
    with role_put_back(primary_playbook, probe):
        reload_run = run_playbook(
            primary_playbook, "-e", json.dumps({"postgresql_log_min_duration_statement_ms": 1234})
        )
        assert reload_run.returncode == 0, reload_run.stdout[-4000:]
        assert "RUNNING HANDLER [postgresql : Reload PostgreSQL]" in reload_run.stdout
        assert "RUNNING HANDLER [postgresql : Restart PostgreSQL]" not in reload_run.stdout
        assert show("log_min_duration_statement") == "1234ms"
        assert start_time() == started

        restart_run = run_playbook(
            primary_playbook, "-e", json.dumps({"postgresql_shared_buffers_mb": 256})
        )
        assert restart_run.returncode == 0, restart_run.stdout[-4000:]
        assert "RUNNING HANDLER [postgresql : Restart PostgreSQL]" in restart_run.stdout
        assert show("shared_buffers") == "256MB"
        assert start_time() > started
    assert show("shared_buffers") == original_shared_buffers
    assert show("log_min_duration_statement") == original_log_min
    assert local_query(PRIMARY, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_refused_setting_fails_the_run_without_a_restart(
    probe: dict, primary_playbook: str
) -> None:
    started = start_time()
    original_work_mem = show("work_mem")
    with role_put_back(primary_playbook, probe):
        bad = {"postgresql_extra_settings": {"work_mem": "lots", "shared_buffers": "200MB"}}
        refused_run = run_playbook(primary_playbook, "-e", json.dumps(bad))
        assert refused_run.returncode != 0
        output = refused_run.stdout + refused_run.stderr
        assert "PostgreSQL refused part of the configuration" in output
        assert "work_mem: setting could not be applied" in output
        # No restart into a configuration the server would not start with.
        assert "RUNNING HANDLER [postgresql : Restart PostgreSQL]" not in refused_run.stdout
        assert start_time() == started
        assert show("work_mem") == original_work_mem
    assert start_time() == started
    assert (
        local_query(PRIMARY, "SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL") == "0"
    )


# --- Replication -------------------------------------------------------------------------------


def test_replica_is_streaming_from_the_primary() -> None:
    assert local_query(REPLICA, "SELECT pg_is_in_recovery()") == "t"
    assert wait_for(
        lambda: (
            local_query(
                PRIMARY,
                f"SELECT state FROM pg_stat_replication WHERE client_addr = '{address(REPLICA)}'",
            )
            == "streaming"
        ),
        timeout=30,
    )


def test_row_written_on_the_primary_is_read_on_the_replica(probe: dict, scratch_table) -> None:
    marker = uuid.uuid4().hex
    app_query(PRIMARY, f"INSERT INTO {scratch_table} (note) VALUES ('{marker}')", probe)
    query = f"SELECT count(*) FROM {scratch_table} WHERE note = '{marker}'"
    assert wait_for(lambda: psql(APP, REPLICA, query, probe).stdout.strip() == "1", timeout=10)
    # The replica serves reads only.
    refused = psql(APP, REPLICA, f"INSERT INTO {scratch_table} (note) VALUES ('x')", probe)
    assert refused.rc != 0
    assert "read-only transaction" in refused.stderr


# --- Backups -----------------------------------------------------------------------------------


def test_backup_timer_is_scheduled_and_persistent() -> None:
    timer = host(PRIMARY).service("hpd-postgresql-backup.timer")
    assert timer.is_enabled
    assert timer.is_running
    props = host(PRIMARY).check_output(
        "systemctl show hpd-postgresql-backup.timer -p Persistent -p TimersCalendar"
    )
    assert "Persistent=yes" in props
    assert "OnCalendar=" in props
    assert host(PRIMARY).service("hpd-postgresql-restore-check.timer").is_enabled


def test_backup_restores_with_the_same_rows(probe: dict, scratch_table) -> None:
    server = host(PRIMARY)
    directory = probe["backup_dir"]
    database = probe["app_database"]
    rows = 37
    app_query(
        PRIMARY,
        f"INSERT INTO {scratch_table} (note) SELECT 'row ' || g FROM generate_series(1, {rows}) g",
        probe,
    )
    backup_dir = server.file(directory)
    assert (backup_dir.user, backup_dir.group, backup_dir.mode) == ("postgres", "postgres", 0o700)

    # A dump past the retention: the backup run must delete it.
    old = f"{directory}/{database}-20000101T000000Z"
    server.run_expect(
        [0], f"runuser -u postgres -- touch -d '-30 days' {old}.dump {old}.counts.json"
    )

    server.run_expect([0], "systemctl start hpd-postgresql-backup.service")
    assert not server.file(f"{old}.dump").exists
    assert not server.file(f"{old}.counts.json").exists
    newest = server.check_output(f"ls -1 {directory}/{database}-*.dump | tail -n 1")
    manifest = json.loads(server.file(newest.removesuffix(".dump") + ".counts.json").content_string)
    assert manifest["tables"][f"public.{scratch_table}"] == rows

    # The restore check service: restores the newest dump, compares every table, and records
    # the outcome where the checklist reads it after a reboot.
    started = time.time()
    server.run_expect([0], "systemctl start hpd-postgresql-restore-check.service")
    outcome = json.loads(server.file(probe["restore_check_result_file"]).content_string)
    assert outcome["result"] == "passed", outcome
    assert outcome["dump"] == Path(newest).name
    assert started - 5 <= outcome["finished_at"] <= time.time() + 5, outcome
    invocation = server.check_output(
        "systemctl show -p InvocationID --value hpd-postgresql-restore-check.service"
    )
    journal = server.check_output(
        f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={invocation}"
    )
    assert "restore check passed" in journal
    assert f"ok        public.{scratch_table}: {rows} rows" in journal
    assert (
        local_query(
            PRIMARY,
            f"SELECT count(*) FROM pg_database WHERE datname = '{probe['restore_check_database']}'",
        )
        == "0"
    )

    # Our own restore of the same dump, counted independently.
    scratch = f"hpd_verify_restore_{uuid.uuid4().hex[:8]}"
    try:
        server.run_expect(
            [0],
            f"runuser -u postgres -- createdb {scratch} && "
            f"runuser -u postgres -- pg_restore --no-owner --no-acl -d {scratch} {newest}",
        )
        restored = local_query(PRIMARY, f"SELECT count(*) FROM {scratch_table}", database=scratch)
    finally:
        server.run(f"runuser -u postgres -- dropdb --if-exists {scratch}")
    assert int(restored) == rows
    assert int(app_query(PRIMARY, f"SELECT count(*) FROM {scratch_table}", probe)) == rows


def test_restore_check_fails_on_a_row_count_mismatch(probe: dict) -> None:
    server = host(PRIMARY)
    directory = probe["backup_dir"]
    database = probe["app_database"]
    newest = server.check_output(f"ls -1 {directory}/{database}-*.dump | tail -n 1")
    manifest = json.loads(server.file(newest.removesuffix(".dump") + ".counts.json").content_string)
    table = next(iter(manifest["tables"]), None)
    if table is None:
        pytest.skip("the newest dump has no tables")
    manifest["tables"][table] += 1
    # A copy of the dump next to a tampered count, in a directory of its own.
    work = f"/tmp/hpd-restore-mismatch-{uuid.uuid4().hex[:8]}"
    stem = Path(newest).name.removesuffix(".dump")
    try:
        server.run_expect(
            [0],
            f"install -d -o postgres -m 0700 {work} && "
            f"install -o postgres -m 0600 {newest} {work}/{stem}.dump && "
            f"printf %s {shlex.quote(json.dumps(manifest))} | "
            f"runuser -u postgres -- tee {work}/{stem}.counts.json >/dev/null",
        )
        bin_dir = server.check_output("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1")
        result = server.run(
            f"runuser -u postgres -- /usr/local/sbin/hpd-postgresql-restore-check "
            f"--database {database} --scratch-database hpd_verify_mismatch "
            f"--directory {work} --bin-dir {bin_dir} --port {probe['port']} "
            f"--result-file {work}/restore-check.json"
        )
        outcome = json.loads(server.file(f"{work}/restore-check.json").content_string)
    finally:
        server.run(f"rm -rf {work}")
    assert result.rc == 1, result.stdout + result.stderr
    assert f"MISMATCH  {table}" in result.stdout
    assert outcome["result"] == "failed" and "1 of" in outcome["summary"], outcome


# --- Bad input ---------------------------------------------------------------------------------


def test_missing_app_password_fails_before_any_change(probe: dict, tmp_path: Path) -> None:
    result = assert_role_stops_before_any_change(
        role_playbook(tmp_path, "postgresql", PRIMARY),
        PRIMARY,
        "site_database_password",
        probe["conf_file"],
        inventory_path=bare_inventory(tmp_path, PRIMARY),
    )
    output = result.stdout + result.stderr
    assert "missing required arguments: site_database_password" in output
    assert probe["app_password"] not in output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("postgresql_max_connections", "lots"),
        ("postgresql_max_connections", 1000),
        ("site_database_password", "too-short"),
        ("site_database_password", "changeme-changeme-changeme"),
        ("site_database_password", ["not", "a", "string"]),
        ("postgresql_storage_type", "floppy"),
        ("postgresql_app_client_addresses", ["everyone"]),
        ("postgresql_ram_mb", "plenty"),
    ],
    ids=[
        "connections-not-int",
        "connections-over-400",
        "short-password",
        "placeholder-password",
        "password-not-string",
        "bad-choice",
        "bad-address",
        "ram-not-int",
    ],
)
def test_bad_input_fails_before_any_change(
    probe: dict, primary_playbook: str, variable: str, value
) -> None:
    result = assert_role_stops_before_any_change(
        primary_playbook, PRIMARY, variable, probe["conf_file"], {variable: value}
    )
    # The secret is never echoed back.
    assert probe["app_password"] not in result.stdout + result.stderr
