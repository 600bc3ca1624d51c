"""Make the shared helpers importable as `hpdtest` from every test module, and provide
the fixtures both test modules use."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from hpdtest import PROJECT_DIR, host  # noqa: E402
from stack import CA, CLIENT  # noqa: E402


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
    web = host("stack-web1")
    out = web.check_output(f"/srv/chat/current/manage seed_demo --password={password}")
    seeded = json.loads(out.splitlines()[-1])
    seeded["password"] = password
    return seeded
