"""Helpers shared by the Molecule scenarios' testinfra tests.

Tests reach each container through Ansible's inventory (the docker connection), and run
real clients *inside* another container, so what they prove is what a neighbour on the
private network sees.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import testinfra
import testinfra.utils.ansible_runner
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
# Molecule forces colour on Ansible; recaps and messages are matched on plain text.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def role_default(role: str, name: str):
    """A role variable as roles/<role>/defaults/main.yml sets it (unrendered)."""
    defaults = PROJECT_DIR / "roles" / role / "defaults" / "main.yml"
    return yaml.safe_load(defaults.read_text())[name]


def role_setting(role: str, name: str, scenario_dir: Path):
    """A role variable as the scenario sets it (group_vars/all/<role>.yml), else the
    role's default. Plain values only: templated expressions are returned unrendered."""
    scenario_file = scenario_dir / "group_vars" / "all" / f"{role}.yml"
    scenario = yaml.safe_load(scenario_file.read_text()) or {} if scenario_file.exists() else {}
    if name in scenario:
        return scenario[name]
    return role_default(role, name)


def site_default(name: str):
    """A fact of the site contract as roles/site/defaults/main.yml sets it (unrendered)."""
    return role_default("site", name)


def inventory() -> str:
    """Molecule's inventory directory: its own file (the containers and how to reach them)
    and what the scenario links beside it (the stack scenario: inventories/staging's hosts,
    groups and variables). The file alone has none of the linked groups."""
    return os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])


@functools.cache
def _inventory_runner() -> testinfra.utils.ansible_runner.AnsibleRunner:
    return testinfra.utils.ansible_runner.AnsibleRunner(inventory())


def group_hosts(group: str) -> list[str]:
    """The inventory's hosts of a group, in inventory order."""
    return _inventory_runner().get_hosts(group)


def inventory_variable(name: str, host_name: str):
    """A variable as the inventory sets it for a host (group_vars, host_vars; templated
    expressions are returned unrendered)."""
    return _inventory_runner().get_variables(host_name)[name]


def host_setting(role: str, name: str, host_name: str):
    """A role variable as the inventory sets it for a host, else the role's default
    (templated expressions are returned unrendered: role_values() renders them)."""
    try:
        return inventory_variable(name, host_name)
    except KeyError:
        return role_default(role, name)


@functools.cache
def host(name: str) -> testinfra.host.Host:
    """The testinfra host for an inventory name (commands run inside that container)."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory())


def address(name: str) -> str:
    """The host's address on the scenario's private network."""
    return host(name).check_output("hostname -I | cut -d' ' -f1")


def run_playbook(
    playbook: str,
    *extra_args: str,
    timeout: int = 900,
    json_output: bool = False,
    inventory_path: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the project against the scenario's inventory (or
    `inventory_path`); output without colours. With `json_output`, stdout is the
    ansible.posix.json callback's document (task_result() reads it)."""
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(PROJECT_DIR / "roles"), ANSIBLE_NOCOLOR="1")
    if json_output:
        env.update(
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json",
        )
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory_path or inventory(), playbook, *extra_args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result.stdout = ANSI.sub("", result.stdout)
    result.stderr = ANSI.sub("", result.stderr)
    return result


def task_result(output: dict, task_name: str, host_name: str) -> dict:
    """One host's result of a task, in the ansible.posix.json callback's document."""
    for play in output["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == task_name and host_name in task["hosts"]:
                return task["hosts"][host_name]
    raise KeyError(task_name)


def role_values(role: str, host_name: str, names: Iterable[str]) -> dict:
    """Variables as a run of `role` on `host_name` resolves them: the scenario's inventory,
    the host's facts, the role's defaults and vars/main.yml (the role's validate_facts.yml
    checks, which change nothing, run on the way). Values keep their types (ansible-core
    2.19 and later)."""
    report = "".join(f'\n          {name}: "{{{{ {name} }}}}"' for name in names)
    with tempfile.TemporaryDirectory() as directory:
        playbook = Path(directory) / f"{role}-values.yml"
        playbook.write_text(
            f"""- name: Resolve the {role} role's variables
  hosts: {host_name}
  gather_facts: true
  tasks:
    - name: Load the role's defaults and derived values
      ansible.builtin.include_role:
        name: {role}
        tasks_from: validate_facts.yml
        public: true
    - name: Report the variables
      ansible.builtin.debug:
        msg:{report}
"""
        )
        result = run_playbook(str(playbook), json_output=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-3000:] + result.stderr[-3000:])
    return task_result(json.loads(result.stdout), "Report the variables", host_name)["msg"]


def wait_for(check: Callable[[], bool], timeout: float = 30, interval: float = 0.5) -> bool:
    """Poll until check() is true or the timeout passes; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
