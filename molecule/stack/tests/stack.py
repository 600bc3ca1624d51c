"""What the stack scenario's tests share: the hosts and the site as the staging inventory
defines them, the client container's tools, and small wrappers around curl and the chat
client run inside that container."""

from __future__ import annotations

import json
from shlex import quote

from hpdtest import PROJECT_DIR, address, group_hosts, host, inventory_variable, site_default

CA = "/usr/local/share/ca-certificates/hpd-test-ca.crt"
# The same CA on this machine, for playbooks run from here (warm.yml, the checklist, the load
# test).
STACK_CA = PROJECT_DIR / ".secrets/molecule-stack/ca/ca.crt"
# The hosts by role, from inventories/staging (the scenario converges exactly it).
LB = group_hosts("loadbalancers")[0]
VARNISH = group_hosts("accelerators")[0]
WEB_SERVERS = tuple(group_hosts("webservers"))
WORKER = group_hosts("workers")[0]
DB = group_hosts("dbservers")[0]
REPLICA = group_hosts("dbreplicas")[0]
CACHE = group_hosts("caches")[0]
MONITORING = group_hosts("monitoring")[0]
CLIENT = group_hosts("clients")[0]


# How a playbook run from this machine reaches the site: the site's name does not resolve
# here, so it connects to the balancer's address and trusts the scenario's CA (the site
# contract's client settings, which warm.yml, the checklist and the drills read).
REACH_FROM_CONTROLLER = {
    "site_client_connect_address": address(LB),
    "site_client_ca_file": str(STACK_CA),
}


def contract(name: str):
    """A fact of the site contract as the inventory sets it, else the contract's default."""
    try:
        return inventory_variable(name, LB)
    except KeyError:
        return site_default(name)


# The client resolves the site's name to the balancer (prepare.yml), as DNS would.
SITE_NAME = contract("site_name")
SITE = f"https://{SITE_NAME}"
ADMIN_PATH = "/" + contract("site_admin_path")
APP_CURRENT = contract("site_app_root") + "/current"
PORTS = contract("site_ports")
HEALTH_PATH = contract("site_health_path")
# site_asgi_unit's default, rendered.
ASGI_UNIT = contract("site_app_name") + "-asgi"
# The transcript's time to live in Varnish: the app's max-age, shortened by the scenario.
TRANSCRIPT_TTL = int(inventory_variable("app_extra_environment", LB)["CHAT_TRANSCRIPT_MAX_AGE"])
LB_SOCKET = f"socat stdio {contract('site_haproxy_stats_socket')}"


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


def health_url(web) -> str:
    """The web server's uWSGI health URL on its private address, as Varnish's probe asks it."""
    return f"http://{web.check_output('hostname -I').split()[0]}:{PORTS['uwsgi']}{HEALTH_PATH}"


def releases_served_by(name: str, requests: int = 12) -> set[str]:
    """The release ids a web server's uWSGI workers report (enough requests to reach
    every worker)."""
    web = host(name)
    url = health_url(web)
    seen = set()
    for _ in range(requests):
        out = web.run(f"curl -s -m 5 -H 'Host: localhost' {url}").stdout
        try:
            seen.add(json.loads(out)["release"])
        except ValueError:  # a worker between old and new
            seen.add("no answer")
    return seen


# Run by the app's own shell, so the broker's address and password stay on the host. A
# room's purge is pending while its mark is set (chat.tasks.schedule_room_purge), queued,
# or taken by a worker and not yet acknowledged (acks_late: until it has reached Varnish).
ROOM_PURGES = """
import json, redis
from django.conf import settings
broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
def for_room(raw):
    message = json.loads(raw)
    headers = (message[0] if isinstance(message, list) else message).get("headers", dict())
    task = headers.get("task"), headers.get("argsrepr")
    return task == ("chat.tasks.purge_room_urls", "({room},)")
marked = broker.exists(f"{{settings.CACHE_KEY_PREFIX}}:purge-pending:{room}")
queued = sum(map(for_room, broker.lrange("high", 0, -1)))
taken = sum(map(for_room, broker.hvals("unacked")))
print(marked + queued + taken)
"""


def room_purges_pending(room: int) -> int:
    """The room's purges not yet done: zero means every purge its posts queued has reached
    Varnish, whatever other tasks earlier tests left in the queues."""
    script = ROOM_PURGES.format(room=int(room))
    out = host(WEB_SERVERS[0]).check_output(f"{APP_CURRENT}/manage shell -c {quote(script)}")
    return int(out.splitlines()[-1])


def varnish_backends(state: str) -> set[str]:
    """Web servers Varnish currently reports in a health state (its names use _ for -)."""
    listing = host(VARNISH).check_output("varnishadm backend.list")
    found = set()
    for line in listing.splitlines():
        for name in WEB_SERVERS:
            if line.split()[0].endswith(name.replace("-", "_")) and state in line.split():
                found.add(name)
    return found
