#!/usr/bin/env python3
"""Check that the installed collections satisfy the ranges in requirements.yml.

Galaxy is not reachable where this project is tested, so the collections come from the
pinned `ansible` package; this check makes a mismatch fail loudly instead of surfacing
later as a missing module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from ansible.module_utils.compat.version import LooseVersion

OPERATORS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def satisfies(version: str, spec: str) -> bool:
    for clause in (c.strip() for c in spec.split(",") if c.strip()):
        for op in sorted(OPERATORS, key=len, reverse=True):
            if clause.startswith(op):
                bound = clause[len(op) :].strip()
                if not OPERATORS[op](LooseVersion(version), LooseVersion(bound)):
                    return False
                break
        else:
            if LooseVersion(version) != LooseVersion(clause):
                return False
    return True


def installed_collections() -> dict[str, str]:
    galaxy = Path(sys.executable).with_name("ansible-galaxy")
    out = subprocess.run(
        [str(galaxy), "collection", "list", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, str] = {}
    # The first path listed wins, as it does for Ansible itself.
    for collections in reversed(list(json.loads(out).values())):
        for name, info in collections.items():
            found[name] = info["version"]
    return found


def main(requirements_file: str) -> int:
    wanted = yaml.safe_load(Path(requirements_file).read_text())["collections"]
    installed = installed_collections()
    problems = []
    for item in wanted:
        name, spec = item["name"], item.get("version", "*")
        version = installed.get(name)
        if version is None:
            problems.append(f"{name}: not installed (wanted {spec})")
        elif spec != "*" and not satisfies(version, spec):
            problems.append(f"{name}: {version} installed, requirements.yml wants {spec}")
        else:
            print(f"collection {name} {version} satisfies {spec}")
    for problem in problems:
        print(f"check-collections: {problem}", file=sys.stderr)
    if problems:
        print(
            "check-collections: change the `ansible` pin in requirements-dev.txt or the "
            "ranges in requirements.yml so they agree",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.yml"))
