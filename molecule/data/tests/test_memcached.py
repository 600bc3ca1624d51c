"""Memcached on data-cache, driven from data-client as the application would reach it.

What is proven here is what a neighbour on the private network sees: a real client stores
and reads an item, the server runs with the sizes the variables ask for, it listens on the
private address only (never a wildcard), and a bad input stops the role before it changes
anything.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from hpdtest import ANSI, address, host, role_setting, run_playbook

SERVER = "data-cache"
CLIENT = "data-client"
CONFIG = "/etc/memcached.conf"


def setting(name: str):
    """A memcached variable as this scenario sets it, else the role's default."""
    return role_setting("memcached", name, Path(__file__).resolve().parents[1])


def port() -> int:
    return int(setting("memcached_port"))


def memcached_session(commands: list[str]) -> str:
    """Send text-protocol commands from data-client to data-cache with netcat, return the reply."""
    script = "".join(f"{line}\\r\\n" for line in [*commands, "quit"])
    result = host(CLIENT).run(f"printf '{script}' | nc -w 5 {SERVER} {port()}")
    assert result.rc == 0, result.stderr
    return result.stdout


def stats(kind: str = "") -> dict[str, str]:
    reply = memcached_session([f"stats {kind}".strip()])
    return dict(re.findall(r"^STAT (\S+) (\S+)\r?$", reply, flags=re.MULTILINE))


def listening(protocol: str) -> set[str]:
    """Local addresses memcached's port is bound to on data-cache, as ss prints them."""
    out = host(SERVER).check_output(f"ss -{protocol}lnH 'sport = :{port()}'")
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
    settings = stats("settings")
    assert int(settings["maxbytes"]) == int(setting("memcached_memory_mb")) * 1024 * 1024
    assert int(settings["maxconns"]) == int(setting("memcached_max_connections"))
    assert int(settings["tcpport"]) == port()
    assert int(settings["udpport"]) == 0
    assert int(settings["item_size_max"]) == 1024 * 1024


def test_listens_on_the_private_address_only() -> None:
    private = address(SERVER)
    assert listening("t") == {f"{private}:{port()}"}
    # The name the application uses resolves to that same address.
    assert host(CLIENT).check_output(f"getent hosts {SERVER}").split()[0] == private


def test_udp_is_off() -> None:
    assert listening("u") == set()


def test_firewall_opens_the_port_to_the_private_network_only() -> None:
    drop_in = host(SERVER).file("/etc/nftables.d/memcached.nft")
    assert drop_in.exists
    assert "172.28.1.0/24" in drop_in.content_string
    rules = host(SERVER).check_output("nft list chain inet filter services")
    assert re.search(rf"ip saddr 172\.28\.1\.0/24 tcp dport {port()} accept", rules)
    assert "0.0.0.0/0" not in rules


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("memcached_memory_mb", "lots"),
        ("memcached_listen_addresses", ["0.0.0.0"]),  # noqa: S104 (the input refused)
        ("memcached_memory_percent", 95),
    ],
    ids=["wrong-type", "wildcard-address", "out-of-range"],
)
def test_bad_input_fails_before_any_change(tmp_path: Path, variable: str, value) -> None:
    playbook = tmp_path / "memcached.yml"
    playbook.write_text(
        f"- name: Memcached with a bad input\n  hosts: {SERVER}\n  roles:\n    - role: memcached\n"
    )
    before = host(SERVER).file(CONFIG).sha256sum
    result = run_playbook(str(playbook), "-e", json.dumps({variable: value}), timeout=300)
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert variable in output
    assert re.search(rf"{SERVER}\s*:\s*ok=\d+\s+changed=0\s", output), output
    assert host(SERVER).file(CONFIG).sha256sum == before
    assert host(SERVER).service("memcached").is_running
