"""What the data tier's test modules share: which staging hosts play which part, the
memory rule of Memcached and Redis, and a role run that must stop before it changes
anything."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from hpdtest import host, run_playbook
from stack import DB, REPLICA, WEB_SERVERS

PRIMARY = DB
# The application host the tests drive the data services from, as the app reaches them.
APP = WEB_SERVERS[0]
# A host the firewall lets reach PostgreSQL for another purpose: the replica, which streams
# from the primary. pg_hba.conf names it for replication only, so as the app role it must be
# refused by pg_hba.conf alone (hosts in no allowed group never get past the firewall:
# test_access.py).
OUTSIDER = REPLICA


def role_playbook(directory: Path, role: str, target: str) -> Path:
    """A playbook that runs `role` alone on host `target` (the stack's inventory supplies
    the variables)."""
    playbook = directory / f"{role}-on-{target}.yml"
    playbook.write_text(
        f"- name: The {role} role on {target}\n  hosts: {target}\n  roles:\n    - role: {role}\n"
    )
    return playbook


def bare_inventory(directory: Path, server: str) -> str:
    """An inventory of its own that holds the server's container and none of the stack's
    variables (so the secrets are unset)."""
    inventory = directory / "bare-hosts.ini"
    inventory.write_text(f"{server} ansible_connection=community.docker.docker\n")
    return str(inventory)


def derived_memory_mb(override, ram_mb, percent) -> int:
    """The memcached and redis roles' memory rule (their vars/main.yml), computed here
    independently: the override, else `percent` of `ram_mb`, never below 64 MB."""
    if override is not None:
        return int(override)
    return max(int(int(ram_mb) * int(percent) / 100), 64)


def assert_role_stops_before_any_change(
    playbook: Path | str,
    server: str,
    variable: str,
    config: str,
    extra_vars: dict | None = None,
    *,
    service: str | None = None,
    inventory_path: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `playbook` (a role on `server`) with `extra_vars` against the stack's inventory
    (or `inventory_path`): it must fail naming `variable`, change nothing on `server`, leave
    its configuration file `config` as it was and `service` running. Returns the run."""
    before = host(server).file(config).sha256sum
    extra = ["-e", json.dumps(extra_vars)] if extra_vars else []
    result = run_playbook(str(playbook), *extra, inventory_path=inventory_path, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert variable in output
    assert re.search(rf"{server}\s*:\s*ok=\d+\s+changed=0\s", output), output[-3000:]
    assert host(server).file(config).sha256sum == before
    if service:
        assert host(server).service(service).is_running
    return result
