"""Memcached on the cache host, driven from an application host as the app reaches it.

What is proven here is what a neighbour on the private network sees: a real client stores
and reads an item, the server runs with the sizes the inventory and the role's defaults
give, it listens on the private address only (never a wildcard), and a bad input stops the
role before it changes anything.
"""

from __future__ import annotations

import functools
import re
import uuid
from pathlib import Path

import pytest
from data_tier import (
    APP,
    assert_role_stops_before_any_change,
    derived_memory_mb,
    role_playbook,
)
from hpdtest import address, host, role_values
from stack import APP_CURRENT, CACHE, PORTS

SERVER = CACHE
CONFIG = "/etc/memcached.conf"
PORT = int(PORTS["memcached"])


@functools.cache
def settings() -> dict:
    """The role's inputs as a run of it on the cache host resolves them."""
    return role_values(
        "memcached",
        SERVER,
        [
            "memcached_memory_mb",
            "memcached_ram_mb",
            "memcached_memory_percent",
            "memcached_max_connections",
            "memcached_udp_port",
            "memcached_max_item_size",
        ],
    )


def size_bytes(text) -> int:
    """A memcached size as -I takes it: a number of bytes, or with a k or m suffix."""
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", str(text)).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def memcached_session(commands: list[str]) -> str:
    """Send text-protocol commands from the app host to memcached with netcat, return the
    reply."""
    script = "".join(f"{line}\\r\\n" for line in [*commands, "quit"])
    result = host(APP).run(f"printf '{script}' | nc -w 5 {address(SERVER)} {PORT}")
    assert result.rc == 0, result.stderr
    return result.stdout


def stats(kind: str = "") -> dict[str, str]:
    reply = memcached_session([f"stats {kind}".strip()])
    return dict(re.findall(r"^STAT (\S+) (\S+)\r?$", reply, flags=re.MULTILINE))


def listening(protocol: str) -> set[str]:
    """Local addresses memcached's port is bound to on the cache host, as ss prints them."""
    out = host(SERVER).check_output(f"ss -{protocol}lnH 'sport = :{PORT}'")
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def test_service_running_and_enabled() -> None:
    service = host(SERVER).service("memcached")
    assert service.is_running
    assert service.is_enabled


def test_set_and_get_from_another_host() -> None:
    key = f"hpd-test-{uuid.uuid4().hex}"
    value = uuid.uuid4().hex
    reply = memcached_session([f"set {key} 0 60 {len(value)}", value, f"get {key}"])
    assert "STORED" in reply
    assert f"VALUE {key} 0 {len(value)}\r\n{value}\r\nEND" in reply


def test_sizes_are_what_the_variables_say() -> None:
    wanted = settings()
    memory_mb = derived_memory_mb(
        wanted["memcached_memory_mb"],
        wanted["memcached_ram_mb"],
        wanted["memcached_memory_percent"],
    )
    running = stats("settings")
    assert int(running["maxbytes"]) == memory_mb * 1024 * 1024
    assert int(running["maxconns"]) == int(wanted["memcached_max_connections"])
    assert int(running["tcpport"]) == PORT
    assert int(running["udpport"]) == int(wanted["memcached_udp_port"])
    assert int(running["item_size_max"]) == size_bytes(wanted["memcached_max_item_size"])


def test_listens_on_the_private_address_only() -> None:
    private = address(SERVER)
    assert listening("t") == {f"{private}:{PORT}"}
    # The address the application is configured with is that same one.
    configured = host(APP).check_output(f"grep '^MEMCACHED_SERVERS=' {APP_CURRENT}/app.env")
    assert configured.partition("=")[2].strip("'\"").split(",") == [f"{private}:{PORT}"]


def test_udp_is_off() -> None:
    assert listening("u") == set()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("memcached_memory_mb", "lots"),
        ("site_private_address", "0.0.0.0"),  # noqa: S104 (the input refused)
        ("memcached_memory_percent", 95),
    ],
    ids=["wrong-type", "wildcard-address", "out-of-range"],
)
def test_bad_input_fails_before_any_change(tmp_path: Path, variable: str, value) -> None:
    assert_role_stops_before_any_change(
        role_playbook(tmp_path, "memcached", SERVER),
        SERVER,
        variable,
        CONFIG,
        {variable: value},
        service="memcached",
    )
