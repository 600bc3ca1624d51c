"""What the stack scenario's tests share: the site's address, the client container's
tools, and small wrappers around curl and the chat client run inside that container."""

from __future__ import annotations

import json

CA = "/usr/local/share/ca-certificates/hpd-test-ca.crt"
SITE = "https://stack-lb"
TRANSCRIPT_TTL = 10  # CHAT_TRANSCRIPT_MAX_AGE in group_vars
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


def chatclient(client, *args: str, timeout: int = 60) -> dict:
    out = client.check_output(
        f"timeout {timeout} python3 /usr/local/bin/chatclient --base {SITE} --ca {CA} "
        + " ".join(args)
    )
    return json.loads(out.splitlines()[-1])
