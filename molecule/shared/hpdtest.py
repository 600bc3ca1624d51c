"""Helpers shared by the Molecule scenarios' testinfra tests.

Tests reach each container through Ansible's inventory (the docker connection), and run
real clients *inside* another container, so what they prove is what a neighbour on the
private network sees.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import testinfra
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Molecule forces colour on Ansible; recaps and messages are matched on plain text.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def role_setting(role: str, name: str, scenario_dir: Path):
    """A role variable as the scenario sets it (group_vars/all/<role>.yml), else the
    role's default. Plain values only: templated expressions are returned unrendered."""
    scenario_file = scenario_dir / "group_vars" / "all" / f"{role}.yml"
    scenario = yaml.safe_load(scenario_file.read_text()) or {} if scenario_file.exists() else {}
    if name in scenario:
        return scenario[name]
    defaults = PROJECT_DIR / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(defaults.read_text())[name]


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
