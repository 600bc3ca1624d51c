"""The bugsink role on a live monitoring host, driven from a client container.

bugsink-client stands in for an app server: it reaches Bugsink over the private network
through the firewall, sends an exception with Debian's sentry-sdk to the
DSN the role published as the fact bugsink_dsn, and finds it again through the REST API
with the token the role stored.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SCENARIO_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO_DIR.parents[3] / "molecule" / "shared"))

from hpdtest import (  # noqa: E402
    ANSI,
    PROJECT_DIR,
    address,
    host,
    role_setting,
    run_playbook,
    site_default,
    wait_for,
)

MON = "bugsink-mon"
CLIENT = "bugsink-client"
PORT = 8090
TOKEN_PATH = site_default("site_bugsink_api_token_file")
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def published_dsn() -> str:
    """bugsink_dsn as a later play sees it: a play on the client, limited with --tags to
    a task that does not run the role, reads hostvars[<monitoring host>].bugsink_dsn
    from the fact cache the converge runs filled."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(EPHEMERAL / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(SCENARIO_DIR / "read-dsn.yml"),
            "--tags",
            "app",
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = ANSI.sub("", result.stdout)
    assert result.returncode == 0, output + result.stderr
    lines = [line for line in output.splitlines() if "BUGSINK_DSN=" in line]
    assert lines, output
    return lines[-1].split("BUGSINK_DSN=", 1)[1].strip().strip('"')


@pytest.fixture(scope="module")
def mon_address() -> str:
    return address(MON)


@pytest.fixture(scope="module")
def dsn() -> str:
    return published_dsn()


@pytest.fixture(scope="module")
def token() -> str:
    return host(MON).check_output(f"cat {TOKEN_PATH}").strip()


def api(path: str, token: str, mon_address: str) -> tuple[int, object]:
    """GET on the REST API from the client, with the token (never on a command line
    that outlives the call: curl reads the header from stdin)."""
    url = f"http://{mon_address}:{PORT}/api/canonical/0/{path}"
    cmd = (
        f"printf 'Authorization: Bearer %s\\n' {shlex.quote(token)} | "
        f"curl -sS -H @- -o /tmp/api-body -w '%{{http_code}}' {shlex.quote(url)}; "
        "echo; cat /tmp/api-body"
    )
    out = host(CLIENT).check_output(cmd)
    status, _, body = out.partition("\n")
    try:
        return int(status), json.loads(body) if body.strip() else None
    except json.JSONDecodeError:
        return int(status), body


def test_health_ready_answers_the_client(mon_address):
    out = host(CLIENT).check_output(
        f"curl -sS -w ' %{{http_code}}' http://{mon_address}:{PORT}/health/ready"
    )
    assert out == "OK 200"


def test_both_units_run_as_the_service_user():
    mon = host(MON)
    for unit in ("bugsink-gunicorn", "bugsink-snappea"):
        service = mon.service(unit)
        assert service.is_running and service.is_enabled, unit
        assert mon.check_output(f"systemctl show -p User --value {unit}") == "bugsink"


def test_gunicorn_listens_on_the_private_address_only(mon_address):
    listening = host(MON).check_output("ss -Hltn")
    sockets = [line.split()[3] for line in listening.splitlines()]
    assert f"{mon_address}:{PORT}" in sockets
    assert f"0.0.0.0:{PORT}" not in sockets and f"*:{PORT}" not in sockets


def test_gunicorn_control_socket_is_off():
    mon = host(MON)
    assert "control_socket_disable = True" in mon.check_output("cat /etc/bugsink/gunicorn.conf.py")
    assert mon.check_output("find / -xdev -name 'gunicorn.ctl' 2>/dev/null || true") == ""


def test_bugsink_has_its_own_virtualenv_with_the_pinned_version():
    mon = host(MON)
    pinned = role_setting("bugsink", "bugsink_version", SCENARIO_DIR)
    shown = mon.check_output(
        "/opt/bugsink/venv/bin/python -c "
        "'import importlib.metadata as m; print(m.version(\"bugsink\"))'"
    )
    assert shown == pinned
    # Not importable from the system Python: nothing leaks outside the virtualenv.
    assert mon.run("python3 -c 'import bugsink'").rc != 0


def test_settings_as_rendered():
    mon = host(MON)
    conf = mon.file("/etc/bugsink/bugsink_conf.py")
    assert conf.user == "root" and conf.group == "bugsink" and conf.mode == 0o640
    text = conf.content_string
    assert '"PHONEHOME": False' in text
    assert "SESSION_COOKIE_SECURE = False" in text and "CSRF_COOKIE_SECURE = False" in text
    assert "/var/lib/bugsink/db.sqlite3" in text and "/var/lib/bugsink/snappea.sqlite3" in text


def test_api_token_file_is_root_only():
    token_file = host(MON).file(TOKEN_PATH)
    assert token_file.user == "root" and token_file.group == "root"
    assert token_file.mode == 0o600


def test_dsn_points_at_the_private_address(dsn, mon_address):
    parts = urlsplit(dsn)
    assert parts.scheme == "http"
    assert parts.hostname == mon_address and parts.port == PORT
    assert len(parts.username or "") == 32
    assert parts.path.strip("/").isdigit()


def test_dsn_is_the_same_after_the_second_converge(dsn):
    # Written by converge.yml after the first converge and never overwritten; the fact
    # the tests read comes from the idempotence run (the second converge).
    first = (EPHEMERAL / "bugsink-dsn-first").read_text().strip()
    assert dsn == first


def test_team_and_project_exist_with_the_dsn(dsn, token, mon_address):
    project_id = int(urlsplit(dsn).path.strip("/"))
    status, project = api(f"projects/{project_id}/", token, mon_address)
    assert status == 200, project
    assert project["name"] == site_default("site_bugsink_project")
    assert project["dsn"] == dsn
    status, teams = api("teams/", token, mon_address)
    assert status == 200, teams
    names = [team["name"] for team in teams["results"]]
    assert names.count(role_setting("bugsink", "bugsink_team", SCENARIO_DIR)) == 1


def test_project_retention_is_applied(dsn):
    project_id = int(urlsplit(dsn).path.strip("/"))
    code = (
        "from projects.models import Project; "
        f"print(Project.objects.get(id={project_id}).retention_max_event_count)"
    )
    out = host(MON).check_output(
        f"cd /etc/bugsink && runuser -u bugsink -- /opt/bugsink/venv/bin/bugsink-manage "
        f"shell -v 0 -c {shlex.quote(code)}"
    )
    assert int(out.strip()) == role_setting(
        "bugsink", "bugsink_retention_max_event_count", SCENARIO_DIR
    )


def test_api_refuses_requests_without_the_token(mon_address):
    out = host(CLIENT).check_output(
        f"curl -sS -o /dev/null -w '%{{http_code}}' "
        f"http://{mon_address}:{PORT}/api/canonical/0/projects/"
    )
    assert out in ("401", "403")


def test_exception_from_sentry_sdk_shows_up_with_its_release(dsn, token, mon_address):
    release = f"r-{uuid.uuid4().hex[:12]}"
    script = f"""
import sentry_sdk
sentry_sdk.init(dsn={dsn!r}, release={release!r}, environment="molecule")
try:
    raise RuntimeError("bugsink role test {release}")
except RuntimeError as error:
    event_id = sentry_sdk.capture_exception(error)
sentry_sdk.flush(timeout=10)
print(event_id)
"""
    event_id = host(CLIENT).check_output(f"python3 -c {shlex.quote(script)}").strip()
    assert len(event_id) == 32, event_id
    project_id = int(urlsplit(dsn).path.strip("/"))

    found: dict = {}

    def digested() -> bool:
        # The issue the event was grouped into (its title carries the unique release),
        # then the event itself, matched by the id the SDK gave it.
        status, issues = api(f"issues/?project={project_id}", token, mon_address)
        assert status == 200, issues
        issue_ids = [i["id"] for i in issues["results"] if release in i["calculated_value"]]
        if not issue_ids:
            return False
        status, events = api(f"events/?issue={issue_ids[0]}", token, mon_address)
        assert status == 200, events
        ids = [e["id"] for e in events["results"] if e["event_id"].replace("-", "") == event_id]
        if not ids:
            return False
        status, event = api(f"events/{ids[0]}/", token, mon_address)
        assert status == 200, event
        found.update(event)
        return True

    started = time.monotonic()
    assert wait_for(digested, timeout=60, interval=1), "event never became visible"
    print(f"event visible through the API after {time.monotonic() - started:.1f} s")
    assert found["data"]["release"] == release
    assert found["data"]["environment"] == "molecule"
    values = found["data"]["exception"]["values"]
    assert values[-1]["type"] == "RuntimeError"
    assert release in values[-1]["value"]

    status, releases = api(f"releases/?project={project_id}", token, mon_address)
    assert status == 200, releases
    assert release in [item["version"] for item in releases["results"]]


def test_firewall_blocks_a_port_it_did_not_open(mon_address):
    """A listener on an unopened port answers on the host itself but not to the client;
    Bugsink's port, opened by the role's drop-in, answers both."""
    mon, client = host(MON), host(CLIENT)
    assert "tcp dport 8090 accept" in mon.check_output("nft list chain inet filter services")
    mon.check_output(
        "systemd-run --unit=bugsink-test-listener --collect "
        f"python3 -m http.server 8099 --bind {mon_address}"
    )
    try:
        assert wait_for(
            lambda: mon.run(f"curl -sS -o /dev/null http://{mon_address}:8099/").rc == 0,
            timeout=15,
        )
        blocked = client.run(f"curl -sS -o /dev/null --max-time 3 http://{mon_address}:8099/")
        assert blocked.rc == 28, blocked.stderr  # timed out: dropped, not refused
        opened = client.run(
            f"curl -sS -o /dev/null --max-time 3 http://{mon_address}:{PORT}/health/ready"
        )
        assert opened.rc == 0, opened.stderr
    finally:
        mon.run("systemctl stop bugsink-test-listener")


STRONG = "Zq8vN3kLw2Rt7yPx4Hs9"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "bugsink_secret_key"),
        (
            ("-e", f"bugsink_secret_key=short bugsink_admin_password={STRONG}"),
            "bugsink_secret_key: must be a string of at least 16",
        ),
        (
            ("-e", f"bugsink_secret_key={STRONG} bugsink_admin_password=changeme-changeme-1"),
            "bugsink_admin_password: must be a string of at least 16",
        ),
    ],
    ids=["missing", "short", "placeholder"],
)
def test_role_refuses_missing_or_weak_secrets(extra, message):
    conf = "/etc/bugsink/bugsink_conf.py"
    before = host(MON).file(conf).md5sum
    result = run_playbook(str(SCENARIO_DIR / "missing-secret.yml"), *extra)
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode != 0
    assert message in output
    assert "changed=0" in output
    assert host(MON).file(conf).md5sum == before
