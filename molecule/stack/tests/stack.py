"""What the stack scenario's tests share: the site's address, the client container's
tools, and small wrappers around curl and the chat client run inside that container."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

CA = "/usr/local/share/ca-certificates/hpd-test-ca.crt"
SITE = "https://stack-lb"
SCENARIO_VARS = Path(__file__).resolve().parents[1] / "group_vars" / "all" / "main.yml"
# The transcript's time to live in Varnish: the app's max-age, shortened by the scenario.
TRANSCRIPT_TTL = int(
    yaml.safe_load(SCENARIO_VARS.read_text())["app_extra_environment"]["CHAT_TRANSCRIPT_MAX_AGE"]
)
WEB_SERVERS = ("stack-web1", "stack-web2")
LB_SOCKET = "socat stdio /run/haproxy/admin.sock"
CLIENT = "stack-client"
MONITORING = "stack-mon"


def curl(client, path: str, *args: str) -> tuple[int, dict[str, str], str]:
    """GET through the balancer; returns status, lowercased headers and body."""
    out = client.check_output(
        f"curl -sS --cacert {CA} -D /tmp/headers {' '.join(args)} {SITE}{path}; "
        "echo; echo '---headers---'; cat /tmp/headers"
    )
    body, _, raw_headers = out.rpartition("---headers---")
    lines = [line for line in raw_headers.strip().splitlines() if line]
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _chatclient_command(args: tuple[str, ...], timeout: int) -> str:
    return (
        f"timeout {timeout} python3 /usr/local/bin/chatclient --base {SITE} --ca {CA} "
        + " ".join(args)
    )


def chatclient(client, *args: str, timeout: int = 60) -> dict:
    """Run the chat client in the client container; a failure fails the test."""
    out = client.check_output(_chatclient_command(args, timeout))
    return json.loads(out.splitlines()[-1])


def try_chatclient(client, *args: str, timeout: int = 60) -> tuple[dict | None, str]:
    """Run the chat client where failing is an expected outcome (a server recovering):
    returns its result, or None and the last line of its error."""
    result = client.run(_chatclient_command(args, timeout))
    if result.rc != 0:
        lines = (result.stderr or result.stdout or f"exit {result.rc}").strip().splitlines()
        return None, lines[-1] if lines else f"exit {result.rc}"
    return json.loads(result.stdout.splitlines()[-1]), ""
