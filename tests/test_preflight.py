"""playbooks/preflight.yml against copies of the production example inventory: the example
passes, and the typical mistakes made together fail the run, each named by its host and
variable in the one report. Real ansible-playbook runs; nothing connects to a
host (the example's addresses do not exist)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
PRODUCTION = PROJECT / "inventories" / "production"
# The example vault's password, as documented in inventories/production/README.md.
EXAMPLE_VAULT_PASSWORD = "example-only-vault-password"  # noqa: S105


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """A copy of the production example, to break."""
    copy = tmp_path / "production"
    shutil.copytree(PRODUCTION, copy)
    return copy


def preflight(inventory: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    password_file = tmp_path / "vault-pass"
    password_file.write_text(EXAMPLE_VAULT_PASSWORD + "\n")
    # The json callback: the report is read from the run's results, not from its layout.
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_NOCOLOR="1",
    )
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory),
            str(PROJECT / "playbooks" / "preflight.yml"),
            "--vault-password-file",
            str(password_file),
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def output(result: subprocess.CompletedProcess[str]) -> dict:
    """The json callback's document (other callbacks may print after it)."""
    return json.JSONDecoder().raw_decode(result.stdout)[0]


def run_tasks(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    """Each task of the run by name, with its results per host."""
    tasks = {}
    for play in output(result)["plays"]:
        for task in play["tasks"]:
            tasks[task["task"]["name"]] = task["hosts"]
    return tasks


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines of the final report: '<host>: [<role>] <variable>: <what to do>'."""
    for outcome in run_tasks(result).get("List every problem of every host", {}).values():
        if outcome.get("failed"):
            return outcome["msg"]
    return []


def add_vars(inventory: Path, values: dict) -> None:
    broken = inventory / "group_vars" / "all" / "zz-broken.yml"
    current = yaml.safe_load(broken.read_text()) if broken.exists() else {}
    broken.write_text(yaml.safe_dump({**current, **values}))


def no_beat_host(inventory: Path) -> None:
    (inventory / "host_vars" / "worker1.example.com.yml").unlink()


def placeholder_secret(inventory: Path) -> None:
    add_vars(inventory, {"site_redis_password": "changeme-changeme-changeme"})


def no_certificate(inventory: Path) -> None:
    (inventory / "files" / "tls" / "chat.example.com.crt").unlink()


def no_deploy_key(inventory: Path) -> None:
    add_vars(inventory, {"common_deploy_authorized_keys": []})


def malformed_admin_path(inventory: Path) -> None:
    add_vars(inventory, {"site_admin_path": "/admin"})


def acme_without_contact(inventory: Path) -> None:
    # One balancer only: the other keeps `provided`, whose missing certificate is a mistake
    # of its own.
    (inventory / "host_vars" / "lb2.example.com.yml").write_text(
        yaml.safe_dump({"haproxy_tls_mode": "acme"})
    )


def host_in_no_group(inventory: Path) -> None:
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["all"]["hosts"] = {"stray.example.com": {"ansible_host": "10.0.1.99"}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))


# Each mistake: how to make it, and (host, variable) pairs the report must name.
MISTAKES = {
    "no beat host": (no_beat_host, [("worker1.example.com", "celery_beat_enabled")]),
    "placeholder secret": (placeholder_secret, [("redis1.example.com", "redis_password")]),
    "no certificate": (no_certificate, [("lb1.example.com", "haproxy_tls_certificate")]),
    "no deploy key": (
        no_deploy_key,
        [("web1.example.com", "common_deploy_authorized_keys")],
    ),
    "malformed admin path": (malformed_admin_path, [("lb1.example.com", "site_admin_path")]),
    "acme without contact": (acme_without_contact, [("lb2.example.com", "haproxy_acme_email")]),
    "host in no group": (host_in_no_group, [("stray.example.com", "in no group")]),
}


def named(report: list[str], host: str, variable: str) -> bool:
    return any(line.startswith(f"{host}: ") and variable in line for line in report)


def test_the_production_example_passes(inventory: Path, tmp_path: Path) -> None:
    result = preflight(inventory, tmp_path)
    assert result.returncode == 0, problems(result) or result.stderr[-3000:]
    assert output(result)["stats"]["lb1.example.com"]["unreachable"] == 0
    # ...and says its example secrets and key must be replaced.
    assert "the committed example vault" in result.stdout


def test_all_mistakes_are_listed_in_one_run_each_naming_host_and_variable(
    inventory: Path, tmp_path: Path
) -> None:
    # One run for all of them: each rule judges its own host and variable, so a mistake
    # named here is one its rule catches alone (a run per mistake cost CI 20 s each).
    for make, _ in MISTAKES.values():
        make(inventory)
    result = preflight(inventory, tmp_path)
    assert result.returncode != 0
    report = problems(result)
    unnamed = [
        (mistake, host, variable)
        for mistake, (_, expected) in MISTAKES.items()
        for host, variable in expected
        if not named(report, host, variable)
    ]
    assert not unnamed, (unnamed, report)
