"""The stack scenario's test modules import and collect, checked in seconds before CI spends
half an hour converging the containers they need. A name that one module stops exporting
and another still imports otherwise shows only after the converge, as a collection error
that runs no test at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
SCENARIO = PROJECT / "molecule" / "stack"


def molecule_like_inventory(directory: Path) -> Path:
    """What Molecule writes for the scenario, without creating a container: its platforms
    with their groups and the provisioner's host variables, beside the linked inventory."""
    config = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    provisioner = config["provisioner"]
    host_variables = provisioner.get("connection_options", {})
    ungrouped = {}
    groups: dict[str, dict] = {}
    for platform in config["platforms"]:
        for group in platform.get("groups", []):
            groups.setdefault(group, {"hosts": {}})["hosts"][platform["name"]] = {}
        ungrouped[platform["name"]] = host_variables
    inventory = {"all": {"hosts": ungrouped, "children": groups}}
    inventory_file = directory / "ansible_inventory.yml"
    inventory_file.write_text(yaml.safe_dump(inventory))
    for name, target in provisioner.get("inventory", {}).get("links", {}).items():
        (directory / name).symlink_to((SCENARIO / target).resolve())
    return inventory_file


def test_the_stack_tests_collect(tmp_path: Path) -> None:
    inventory_directory = tmp_path / "inventory"
    inventory_directory.mkdir()
    environment = dict(
        os.environ,
        MOLECULE_INVENTORY_FILE=str(molecule_like_inventory(inventory_directory)),
        MOLECULE_EPHEMERAL_DIRECTORY=str(tmp_path),
        MOLECULE_PROJECT_DIRECTORY=str(PROJECT),
        MOLECULE_SCENARIO_DIRECTORY=str(SCENARIO),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=SCENARIO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
