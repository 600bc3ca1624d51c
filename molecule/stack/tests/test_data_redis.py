"""Redis on the cache host, driven from an application host with redis-cli as the app would.

Proven from a neighbour on the private network: nothing runs without the password, the
application's user cannot run dangerous commands, set/get works with the password, data
survives a restart, memory limit and eviction policy are what the inventory and the role's
defaults give, Redis listens on loopback and the private address only, and a missing or
weak secret stops the role before it changes anything.
"""

from __future__ import annotations

import functools
import re
import shlex
import uuid
from pathlib import Path

import pytest
from data_tier import (
    APP,
    assert_role_stops_before_any_change,
    bare_inventory,
    derived_memory_mb,
    role_playbook,
)
from hpdtest import address, host, role_values, wait_for
from stack import CACHE, PORTS, contract

SERVER = CACHE
CONFIG = "/etc/redis/redis.conf"
PORT = int(PORTS["redis"])
MONITOR_USER = contract("site_redis_monitor_user")


@functools.cache
def settings() -> dict:
    """The role's inputs as a run of it on the cache host resolves them."""
    return role_values(
        "redis",
        SERVER,
        [
            "redis_maxmemory_mb",
            "redis_ram_mb",
            "redis_maxmemory_percent",
            "redis_maxmemory_policy",
            "redis_appendonly",
        ],
    )


@functools.cache
def inventory_value(name: str):
    """A variable resolved by Ansible from the stack's inventory (secrets included)."""
    return host(APP).ansible("debug", f"var={name}", check=False)[name]


def password() -> str:
    return inventory_value("site_redis_password")


def monitor_password() -> str:
    return inventory_value("site_redis_monitor_password")


def cli(*args: str, secret: str | None = None, user: str | None = None) -> str:
    """Run redis-cli on the app host against the cache host's private address; return
    what it printed.

    redis-cli exits 0 on error replies, so callers judge the reply text. The password
    travels in REDISCLI_AUTH, never on the command line.
    """
    env = f"REDISCLI_AUTH={shlex.quote(secret)} " if secret is not None else ""
    who = f"--user {shlex.quote(user)} " if user else ""
    command = " ".join(shlex.quote(arg) for arg in args)
    result = host(APP).run(f"{env}redis-cli --no-raw -h {address(SERVER)} -p {PORT} {who}{command}")
    assert result.rc == 0, result.stderr
    return (result.stdout + result.stderr).strip()


def info(section: str) -> dict[str, str]:
    """INFO as the monitoring user (the application's user may not run INFO)."""
    reply = cli("INFO", section, secret=monitor_password(), user=MONITOR_USER)
    return dict(re.findall(r"^([a-z_0-9]+):(.*?)\r?$", reply, flags=re.MULTILINE))


def test_service_running_and_enabled() -> None:
    service = host(SERVER).service("redis-server")
    assert service.is_running
    assert service.is_enabled


def test_unauthenticated_commands_are_refused() -> None:
    assert "NOAUTH" in cli("PING")
    assert "NOAUTH" in cli("GET", "anything")
    # A raw client that never sends AUTH is refused too.
    raw = host(APP).run(f"printf 'PING\\r\\n' | nc -w 3 {address(SERVER)} {PORT}").stdout
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
    assert "NOPERM" in cli("GET", "anything", secret=monitor_password(), user=MONITOR_USER)
    assert info("server")["redis_version"]


def test_maxmemory_and_policy_are_what_the_variables_say() -> None:
    wanted = settings()
    memory = info("memory")
    expected_mb = derived_memory_mb(
        wanted["redis_maxmemory_mb"], wanted["redis_ram_mb"], wanted["redis_maxmemory_percent"]
    )
    assert int(memory["maxmemory"]) == expected_mb * 1024 * 1024
    assert memory["maxmemory_policy"] == wanted["redis_maxmemory_policy"]


def test_persistence_survives_a_restart() -> None:
    assert info("persistence")["aof_enabled"] == ("1" if settings()["redis_appendonly"] else "0")
    key = f"hpd-test:{uuid.uuid4().hex}"
    assert cli("SET", key, "durable", secret=password()) == "OK"
    host(SERVER).run_expect([0], "systemctl restart redis-server")
    assert wait_for(lambda: cli("PING", secret=password()) == "PONG")
    assert cli("GET", key, secret=password()) == '"durable"'
    cli("DEL", key, secret=password())


def listening() -> set[str]:
    out = host(SERVER).check_output(f"ss -tlnH 'sport = :{PORT}'")
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def test_listens_on_loopback_and_the_private_address_only() -> None:
    assert listening() == {f"127.0.0.1:{PORT}", f"{address(SERVER)}:{PORT}"}


def test_configuration_holds_no_clear_password() -> None:
    config = host(SERVER).file(CONFIG)
    assert config.user == "redis"
    assert config.group == "redis"
    assert config.mode == 0o640
    text = config.content_string
    assert password() not in text
    assert monitor_password() not in text
    assert re.search(r"^user default on #[0-9a-f]{64} ", text, flags=re.MULTILINE)


def test_missing_password_fails_before_any_change(tmp_path: Path) -> None:
    result = assert_role_stops_before_any_change(
        role_playbook(tmp_path, "redis", SERVER),
        SERVER,
        "site_redis_password",
        CONFIG,
        service="redis-server",
        inventory_path=bare_inventory(tmp_path, SERVER),
    )
    output = result.stdout + result.stderr
    assert re.search(r"missing required arguments: [a-z_, ]*site_redis_password", output), output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("site_redis_password", "too-short"),
        ("site_redis_password", "changeme-changeme-changeme"),
        ("site_redis_password", ["not", "a", "string"]),
        ("redis_maxmemory_policy", "allkeys-everything"),
        ("site_private_address", "0.0.0.0"),  # noqa: S104 (the input refused)
    ],
    ids=["short-password", "placeholder-password", "wrong-type", "bad-choice", "wildcard"],
)
def test_bad_input_fails_before_any_change(tmp_path: Path, variable: str, value) -> None:
    result = assert_role_stops_before_any_change(
        role_playbook(tmp_path, "redis", SERVER),
        SERVER,
        variable,
        CONFIG,
        {variable: value},
        service="redis-server",
    )
    if variable == "site_redis_password":
        # The rejected value is never echoed back.
        assert "changeme-changeme-changeme" not in result.stdout + result.stderr
