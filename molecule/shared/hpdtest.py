"""Helpers shared by the Molecule scenarios' testinfra tests.

Tests reach each container through Ansible's inventory (the docker connection), and run
real clients *inside* another container, so what they prove is what a neighbour on the
private network sees.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import testinfra

PROJECT_DIR = Path(__file__).resolve().parents[2]


def inventory() -> str:
    return os.environ["MOLECULE_INVENTORY_FILE"]


@functools.cache
def host(name: str) -> testinfra.host.Host:
    """The testinfra host for an inventory name (commands run inside that container)."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory())


def address(name: str) -> str:
    """The host's address on the scenario's private network."""
    return host(name).check_output("hostname -I | cut -d' ' -f1")


def run_playbook(
    playbook: str, *extra_args: str, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the project against the scenario's inventory."""
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(PROJECT_DIR / "roles"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        ["ansible-playbook", "-i", inventory(), playbook, *extra_args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(check: Callable[[], bool], timeout: float = 30, interval: float = 0.5) -> bool:
    """Poll until check() is true or the timeout passes; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
