"""Make the shared helpers importable as `hpdtest` from every test module, provide the
fixtures several test modules use, and read the firewall's openings back from a running
host."""

from __future__ import annotations

import json
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from hpdtest import PROJECT_DIR, host  # noqa: E402
from stack import APP_CURRENT, CA, CLIENT, WEB_SERVERS  # noqa: E402

# One opening as nft lists it: single sources and ports lose their braces.
NFT_OPENING = re.compile(
    r"ip6? saddr (?P<sources>\{[^}]*\}|\S+) (?P<proto>tcp|udp) dport (?P<ports>\{[^}]*\}|\S+)"
    r' accept comment "(?P<service>[^"]+)"'
)


@pytest.fixture(scope="session")
def client():
    client = host(CLIENT)
    secrets_dir = PROJECT_DIR / ".secrets" / "molecule-stack"
    pem = (secrets_dir / "ca" / "ca.crt").read_text()
    client.run_expect([0], f"cat > {CA} <<'PEM'\n{pem}PEM")
    script = (PROJECT_DIR / "molecule" / "shared" / "chatclient.py").read_text()
    client.run_expect([0], f"cat > /usr/local/bin/chatclient <<'PY'\n{script}PY")
    return client


@pytest.fixture(scope="session")
def demo():
    """Demo users and a public room, created through the release's manage command."""
    password = secrets.token_hex(16)
    web = host(WEB_SERVERS[0])
    out = web.check_output(f"{APP_CURRENT}/manage seed_demo --password={password}")
    seeded = json.loads(out.splitlines()[-1])
    seeded["password"] = password
    return seeded


def _items(text: str) -> set[str]:
    return {item.strip() for item in text.strip("{} ").split(",") if item.strip()}


@pytest.fixture(scope="session")
def firewall_sources() -> Callable[[str, str, int], set[str]]:
    """sources(name, service, port): the addresses the live rule set of host `name` lets
    reach `port`/tcp through `service`'s openings (the firewall role's drop-in, which must
    exist)."""

    def sources(name: str, service: str, port: int) -> set[str]:
        assert host(name).file(f"/etc/nftables.d/{service}.nft").exists, service
        rules = host(name).check_output("nft list chain inet filter services")
        found: set[str] = set()
        for match in NFT_OPENING.finditer(rules):
            if (
                match["service"] == service
                and match["proto"] == "tcp"
                and str(port) in _items(match["ports"])
            ):
                found |= _items(match["sources"])
        return found

    return sources
