"""Redis on data-cache, driven from data-client with redis-cli as the application would.

Proven from a neighbour on the private network: nothing runs without the password, the
application's user cannot run dangerous commands, set/get works with the password, data
survives a restart, memory limit and eviction policy are what the variables say, Redis
listens on loopback and the private address only, and a missing or weak secret stops the
role before it changes anything.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from hpdtest import ANSI, PROJECT_DIR, address, host, role_setting, run_playbook, wait_for

SERVER = "data-cache"
CLIENT = "data-client"
CONFIG = "/etc/redis/redis.conf"


def setting(name: str):
    """A redis variable as this scenario sets it, else the role's default."""
    return role_setting("redis", name, Path(__file__).resolve().parents[1])


def port() -> int:
    return int(setting("redis_port"))


@functools.cache
def inventory_value(name: str):
    """A variable resolved by Ansible from the scenario's inventory (secrets included)."""
    return host(CLIENT).ansible("debug", f"var={name}", check=False)[name]


def password() -> str:
    return inventory_value("redis_password")


def monitor_password() -> str:
    users = {user["name"]: user for user in inventory_value("redis_acl_users")}
    return users["monitor"]["password"]


def cli(*args: str, secret: str | None = None, user: str | None = None) -> str:
    """Run redis-cli on data-client against data-cache; return what it printed.

    redis-cli exits 0 on error replies, so callers judge the reply text. The password
    travels in REDISCLI_AUTH, never on the command line.
    """
    env = f"REDISCLI_AUTH={shlex.quote(secret)} " if secret is not None else ""
    who = f"--user {shlex.quote(user)} " if user else ""
    command = " ".join(shlex.quote(arg) for arg in args)
    result = host(CLIENT).run(f"{env}redis-cli --no-raw -h {SERVER} -p {port()} {who}{command}")
    assert result.rc == 0, result.stderr
    return (result.stdout + result.stderr).strip()


def info(section: str) -> dict[str, str]:
    """INFO as the monitoring user (the application's user may not run INFO)."""
    reply = cli("INFO", section, secret=monitor_password(), user="monitor")
    return dict(re.findall(r"^([a-z_0-9]+):(.*?)\r?$", reply, flags=re.MULTILINE))


def expected_maxmemory_bytes() -> int:
    """The role's derivation (vars/main.yml) applied to the scenario's variables."""
    override = setting("redis_maxmemory_mb")
    if override is not None:
        return int(override) * 1024 * 1024
    derived = int(int(setting("redis_ram_mb")) * int(setting("redis_maxmemory_percent")) / 100)
    return max(derived, 64) * 1024 * 1024


def test_service_running_and_enabled() -> None:
    service = host(SERVER).service("redis-server")
    assert service.is_running
    assert service.is_enabled


def test_unauthenticated_commands_are_refused() -> None:
    assert "NOAUTH" in cli("PING")
    assert "NOAUTH" in cli("GET", "anything")
    # A raw client that never sends AUTH is refused too.
    raw = host(CLIENT).run(f"printf 'PING\\r\\n' | nc -w 3 {SERVER} {port()}").stdout
    assert raw.startswith("-NOAUTH")


def test_wrong_password_is_refused() -> None:
    assert "WRONGPASS" in cli("PING", secret="not-the-password-" + uuid.uuid4().hex)


def test_set_and_get_with_the_password_from_another_host() -> None:
    key = f"hpd-test:{uuid.uuid4().hex}"
    value = uuid.uuid4().hex
    assert cli("SET", key, value, "EX", "300", secret=password()) == "OK"
    assert cli("GET", key, secret=password()) == f'"{value}"'


@pytest.mark.parametrize(
    "command",
    [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["CONFIG", "GET", "maxmemory"],
        ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
        ["KEYS", "*"],
        ["DEBUG", "SLEEP", "0"],
        ["SHUTDOWN"],
        ["MONITOR"],
        ["INFO"],
        ["ACL", "SETUSER", "intruder", "on", ">intruder-password", "+@all"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_dangerous_commands_fail_even_with_the_password(command: list[str]) -> None:
    key = f"hpd-test:{uuid.uuid4().hex}"
    assert cli("SET", key, "kept", "EX", "300", secret=password()) == "OK"
    reply = cli(*command, secret=password())
    # NOPERM: the ACL refuses it; "not allowed": DEBUG is off for everyone.
    assert "NOPERM" in reply or "not allowed" in reply, reply
    # Nothing was flushed or stopped.
    assert cli("GET", key, secret=password()) == '"kept"'


def test_monitoring_user_reads_info_but_not_data() -> None:
    assert "NOPERM" in cli("GET", "anything", secret=monitor_password(), user="monitor")
    assert info("server")["redis_version"]


def test_maxmemory_and_policy_are_what_the_variables_say() -> None:
    memory = info("memory")
    assert int(memory["maxmemory"]) == expected_maxmemory_bytes()
    assert memory["maxmemory_policy"] == setting("redis_maxmemory_policy")


def test_persistence_survives_a_restart() -> None:
    assert info("persistence")["aof_enabled"] == ("1" if setting("redis_appendonly") else "0")
    key = f"hpd-test:{uuid.uuid4().hex}"
    assert cli("SET", key, "durable", secret=password()) == "OK"
    host(SERVER).run_expect([0], "systemctl restart redis-server")
    assert wait_for(lambda: cli("PING", secret=password()) == "PONG")
    assert cli("GET", key, secret=password()) == '"durable"'
    cli("DEL", key, secret=password())


def listening() -> set[str]:
    out = host(SERVER).check_output(f"ss -tlnH 'sport = :{port()}'")
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def test_listens_on_loopback_and_the_private_address_only() -> None:
    assert listening() == {f"127.0.0.1:{port()}", f"{address(SERVER)}:{port()}"}


def test_configuration_holds_no_clear_password() -> None:
    config = host(SERVER).file(CONFIG)
    assert config.user == "redis"
    assert config.group == "redis"
    assert config.mode == 0o640
    text = config.content_string
    assert password() not in text
    assert monitor_password() not in text
    assert re.search(r"^user default on #[0-9a-f]{64} ", text, flags=re.MULTILINE)


def test_firewall_opens_the_port_to_the_private_network_only() -> None:
    drop_in = host(SERVER).file("/etc/nftables.d/redis.nft")
    assert drop_in.exists
    rules = host(SERVER).check_output("nft list chain inet filter services")
    assert re.search(rf"ip saddr 172\.28\.1\.0/24 tcp dport {port()} accept", rules)
    assert "0.0.0.0/0" not in rules


def role_playbook(tmp_path: Path) -> Path:
    playbook = tmp_path / "redis.yml"
    playbook.write_text(
        f"- name: Redis with a bad input\n  hosts: {SERVER}\n  roles:\n    - role: redis\n"
    )
    return playbook


def assert_failed_before_any_change(
    result: subprocess.CompletedProcess[str], variable: str, before: str
) -> None:
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert variable in output
    assert re.search(rf"{SERVER}\s*:\s*ok=\d+\s+changed=0\s", output), output
    assert host(SERVER).file(CONFIG).sha256sum == before
    assert host(SERVER).service("redis-server").is_running


def test_missing_password_fails_before_any_change(tmp_path: Path) -> None:
    # An inventory of its own, without the scenario's group_vars: redis_password is unset.
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"{SERVER} ansible_connection=community.docker.docker\n")
    before = host(SERVER).file(CONFIG).sha256sum
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(role_playbook(tmp_path))],
        cwd=PROJECT_DIR,
        env=dict(os.environ, ANSIBLE_ROLES_PATH=str(PROJECT_DIR / "roles")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_failed_before_any_change(result, "redis_password", before)
    output = ANSI.sub("", result.stdout + result.stderr)
    assert "missing required arguments: redis_password" in output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("redis_password", "too-short"),
        ("redis_password", "changeme-changeme-changeme"),
        ("redis_password", ["not", "a", "string"]),
        ("redis_maxmemory_policy", "allkeys-everything"),
        ("redis_bind_addresses", ["0.0.0.0"]),  # noqa: S104 (the input refused)
    ],
    ids=["short-password", "placeholder-password", "wrong-type", "bad-choice", "wildcard"],
)
def test_bad_input_fails_before_any_change(tmp_path: Path, variable: str, value) -> None:
    before = host(SERVER).file(CONFIG).sha256sum
    result = run_playbook(
        str(role_playbook(tmp_path)), "-e", json.dumps({variable: value}), timeout=300
    )
    assert_failed_before_any_change(result, variable, before)
    if variable == "redis_password":
        # The rejected value is never echoed back.
        assert "changeme-changeme-changeme" not in result.stdout + result.stderr
