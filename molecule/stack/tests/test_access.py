"""Layered access (DESIGN.md section 10): each port open only to the groups that use it, the
admin and the detailed health held at every layer in every spelling, PURGE and BAN for the
purgers only, request bodies capped.

Two throwaway containers on the stack's network play the people at the edges: a neighbour
in no inventory group, and an operator's workstation on the admin allowlist (its address is
in site_admin_allowlist, molecule.yml). Each refusal is shown next to the allowed case."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import secrets
import shlex
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hpdtest import PROJECT_DIR, address, group_hosts, host, inventory_variable
from stack import (
    ADMIN_PATH,
    APP_CURRENT,
    CA,
    CACHE,
    DB,
    HEALTH_PATH,
    LB,
    MONITORING,
    PORTS,
    REPLICA,
    SITE,
    SITE_NAME,
    VARNISH,
    WEB_SERVERS,
    chatclient,
    contract,
)

# molecule.yml: the containers' network, and the workstation's fixed address on it.
STACK_NETWORK = "hpd-stack"
WORKSTATION = "172.28.4.250"
PROBE_IMAGE = f"hpd-probe:{os.environ.get('HPD_DEBIAN', '13')}"
SECRETS_DIR = PROJECT_DIR / ".secrets" / "molecule-stack"
CA_FILE = SECRETS_DIR / "ca" / "ca.crt"
CHATCLIENT = PROJECT_DIR / "molecule" / "shared" / "chatclient.py"
WEB = WEB_SERVERS[0]


def _docker(*args: str, timeout: int = 600) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"docker {' '.join(args[:3])}: {result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="session")
def probe_image() -> str:
    """The base image with nmap and curl: a visitor's tools, on no stack host."""
    inspect = subprocess.run(
        ["docker", "image", "inspect", PROBE_IMAGE], capture_output=True, check=False
    )
    if inspect.returncode != 0:
        builder = "hpd-probe-build"
        subprocess.run(["docker", "rm", "-f", builder], capture_output=True, check=False)
        _docker(
            "run",
            "--name",
            builder,
            "--add-host",
            "hpd-apt-cache:host-gateway",
            PROBE_IMAGE.replace("hpd-probe", "hpd-debian"),
            "bash",
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            "--no-install-recommends nmap curl netcat-openbsd ca-certificates python3-websockets "
            ">/dev/null",
        )
        _docker("commit", builder, PROBE_IMAGE)
        _docker("rm", builder)
    return PROBE_IMAGE


def from_container(image: str, command: str, ip: str | None = None, timeout: int = 600) -> str:
    """Run `command` in a new container on the stack's network (at `ip` when given), with
    the site's CA at /ca.crt, the chat client at /chatclient.py and the site's name
    resolving to the balancer."""
    placement = ["--ip", ip] if ip else []
    return _docker(
        "run",
        "--rm",
        "--network",
        STACK_NETWORK,
        *placement,
        "--add-host",
        f"{SITE_NAME}:{address(LB)}",
        "-v",
        f"{CA_FILE}:/ca.crt:ro",
        "-v",
        f"{CHATCLIENT}:/chatclient.py:ro",
        image,
        "bash",
        "-c",
        command,
        timeout=timeout,
    )


def answers(image: str, paths: list[str], ip: str | None = None) -> list[str]:
    """The status and Location of each path through the balancer, from a new container
    (at `ip` when given), each path sent as it is."""
    command = "; ".join(
        "curl -sS -o /dev/null -w '%{http_code} %header{location}\\n' --path-as-is "
        "--cacert /ca.crt " + shlex.quote(SITE + path)
        for path in paths
    )
    return from_container(image, command, ip).splitlines()


def admin_spellings() -> dict[str, bool]:
    """Spellings of the admin's login page, each True where the app routes it to the admin
    as sent: uWSGI percent-decodes the path (%2F included) and resolves literal dot
    segments before Django routes; an encoded dot, a doubled leading slash or another case
    are not routed, and are refused all the same."""
    name = ADMIN_PATH.strip("/")
    encoded = "".join(f"%{ord(c):02X}" for c in name)
    return {
        f"/{name}/login/": True,
        f"/{name}%2Flogin/": True,
        f"/{name}%2flogin/": True,
        f"/%{ord(name[0]):02x}{name[1:]}/login/": True,
        f"/{encoded}/login/": True,
        f"/{name}/%6Cogin/": True,
        f"/./{name}/login/": True,
        f"/rooms/../{name}/login/": True,
        f"/{name}/./login/": True,
        f"/{name}//login/": True,
        f"/{name}/login/;x": True,
        f"/{name.upper()}/login/": False,
        f"//{name}/login/": False,
        f"/%2F{name}/login/": False,
        f"/%2e/{name}/login/": False,
        f"/rooms/%2e%2e/{name}/login/": False,
        f"/{name}": False,
    }


def is_admin(answer: str) -> bool:
    """Whether `curl -w '%{http_code} %header{location}'` shows the admin's login page or
    its redirect to it."""
    return answer == "200 " or answer.startswith(f"302 {ADMIN_PATH}login/")


def direct(client: str, url: str, *headers: str, method: str = "GET") -> str:
    """Status and Location of a request sent from stack host `client` to `url`, the path
    as is, with the site's Host."""
    options = " ".join(f"-H {shlex.quote(h)}" for h in (f"Host: {SITE_NAME}", *headers))
    return host(client).check_output(
        f"curl -sS -m 10 -o /dev/null -w '%{{http_code}} %header{{location}}' --path-as-is "
        f"-X {method} {options} " + shlex.quote(url)
    )


# What the balancer adds to every request it passes on (Django redirects plain HTTP).
HTTPS = "X-Forwarded-Proto: https"


def varnish_url(path: str) -> str:
    return f"http://{address(VARNISH)}:{PORTS['varnish']}{path}"


def uwsgi_url(path: str) -> str:
    return f"http://{address(WEB)}:{PORTS['uwsgi']}{path}"


# --- Ports by group ----------------------------------------------------------------------


# The full scan of every host from a host in no group is the checklist's servers-open-ports
# item: test_checklist sees it fail for a port opened to everyone and pass once closed.


@pytest.mark.parametrize(
    ("server", "port"),
    [(CACHE, "memcached"), (CACHE, "redis"), (DB, "postgresql"), (REPLICA, "postgresql")],
)
def test_the_data_services_refuse_a_host_in_no_group_and_serve_the_app(
    probe_image, server: str, port: str
) -> None:
    target = f"{address(server)} {PORTS[port]}"
    outsider = from_container(probe_image, f"nc -z -w 3 {target} && echo open || echo closed")
    assert outsider.strip() == "closed"
    assert host(WEB).run(f"nc -z -w 3 {target}").rc == 0


# Who may reach which port (DESIGN.md section 10), by inventory group; `allowlist` is
# site_admin_allowlist.
OPENINGS = [
    # The backup host's restore check counts rows on the primary (never on a replica).
    (DB, "postgresql", "postgresql", ["webservers", "workers", "dbreplicas", "backups"]),
    (REPLICA, "postgresql", "postgresql", ["webservers", "workers", "dbreplicas"]),
    (CACHE, "memcached", "memcached", ["webservers", "workers"]),
    (CACHE, "redis", "redis", ["webservers", "workers"]),
    (VARNISH, "varnish", "varnish", ["loadbalancers", "webservers", "workers"]),
    (WEB, "uwsgi", "uwsgi", ["accelerators"]),
    (WEB, "asgi", "asgi", ["loadbalancers"]),
    (MONITORING, "graphite", "carbon", ["all"]),
    (MONITORING, "graphite", "graphite_web", ["allowlist"]),
    (MONITORING, "bugsink", "bugsink", ["webservers", "workers", "allowlist"]),
    (MONITORING, "rsyslog", "syslog", ["all"]),
    (MONITORING, "postfix", "smtp", ["all"]),
]


@pytest.mark.parametrize(("server", "service", "port", "groups"), OPENINGS)
def test_each_port_is_open_to_exactly_the_groups_that_use_it(
    firewall_sources, server: str, service: str, port: str, groups: list[str]
) -> None:
    expected: set[str] = set()
    for group in groups:
        if group == "allowlist":
            expected |= set(inventory_variable("site_admin_allowlist", server))
        else:
            expected |= {address(name) for name in group_hosts(group)}
    assert addresses(firewall_sources(server, service, PORTS[port])) == addresses(expected)


def addresses(sources: set[str]) -> set[str]:
    """Sources as single addresses and networks: nft lists a /32 without its suffix and
    merges neighbouring addresses into a range (a.b.c.4-a.b.c.6)."""
    out: set[str] = set()
    for source in sources:
        if "-" in source:
            first, last = (ipaddress.ip_address(end) for end in source.split("-"))
            out |= {str(ipaddress.ip_address(n)) for n in range(int(first), int(last) + 1)}
        else:
            out.add(source.removesuffix("/32"))
    return out


# --- The admin, at every layer -------------------------------------------------------------


def test_admin_refused_through_the_balancer_in_every_spelling_and_served_to_the_allowlist(
    probe_image,
) -> None:
    spellings = admin_spellings()
    paths = list(spellings)
    outsider = answers(probe_image, paths)
    refused = [answer.startswith("403") for answer in outsider]
    assert all(refused), dict(zip(paths, outsider, strict=True))
    # The workstation gets the admin wherever the app routes the spelling to it (the
    # others are Django's 404).
    workstation = answers(probe_image, paths, WORKSTATION)
    routed = {path: is_admin(answer) for path, answer in zip(paths, workstation, strict=True)}
    assert routed == spellings, dict(zip(paths, workstation, strict=True))


def test_admin_refused_at_varnish_in_every_spelling_unless_a_balancer_names_the_allowlist() -> None:
    for path, routed in admin_spellings().items():
        # From a host the firewall lets in (a purger), with a forged allowlisted address.
        answer = direct(WEB, varnish_url(path), f"X-Forwarded-For: {WORKSTATION}", HTTPS)
        assert answer.startswith("403"), f"{path}: {answer} at Varnish"
        # From the balancer, passing on the workstation's address.
        answer = direct(LB, varnish_url(path), f"X-Forwarded-For: {WORKSTATION}", HTTPS)
        assert is_admin(answer) == routed, f"{path}: {answer} at Varnish from the balancer"
        if routed:
            other = direct(LB, varnish_url(path), "X-Forwarded-For: 198.51.100.7", HTTPS)
            assert other.startswith("403"), f"{path}: {other} for another client"


def test_admin_refused_at_uwsgi_in_every_routed_spelling_unless_proxies_allow() -> None:
    routed = [path for path, routes in admin_spellings().items() if routes]
    assert len(routed) >= 8
    for path in routed:
        # Varnish's own address (a probe, or anyone on that host) is not on the allowlist.
        alone = direct(VARNISH, uwsgi_url(path), HTTPS)
        assert alone.startswith("403"), f"{path}: {alone} at uWSGI"
        # As Varnish passes on a request the balancer took from the workstation.
        chain = f"X-Forwarded-For: {WORKSTATION}, {address(LB)}"
        allowed = direct(VARNISH, uwsgi_url(path), chain, HTTPS)
        assert is_admin(allowed), f"{path}: {allowed} at uWSGI for the workstation"


# --- PURGE and BAN ---------------------------------------------------------------------


def test_purge_and_ban_refused_outside_the_purgers_at_every_layer(client, demo) -> None:
    path = demo["transcript"]
    for method in ("PURGE", "BAN"):
        through = client.check_output(
            f"curl -sS -o /dev/null -w '%{{http_code}}' -X {method} --cacert {CA} {SITE}{path}"
        )
        assert through == "405", f"{method} through the balancer: {through}"
        # The balancer may reach Varnish, but is not a purger.
        at_varnish = direct(LB, varnish_url(path), method=method)
        assert at_varnish.startswith("405"), f"{method} at Varnish from the balancer"
        # A purger (the app's hosts) is obeyed.
        purger = direct(WEB, varnish_url(path), method=method)
        assert purger.startswith("200"), f"{method} at Varnish from a web server: {purger}"


# --- The detailed health -------------------------------------------------------------------


def test_health_detail_only_for_the_allowlist_and_the_tiers_that_probe(probe_image) -> None:
    spellings = [HEALTH_PATH, HEALTH_PATH.replace("health", "%68ealth"), "/" + HEALTH_PATH]
    command = "; ".join(
        f"curl -sS --path-as-is --cacert /ca.crt {shlex.quote(SITE + path)}; echo"
        for path in spellings
    )
    for answer in from_container(probe_image, command).splitlines():
        assert answer.strip() == "ok", answer
    detail = json.loads(from_container(probe_image, command, WORKSTATION).splitlines()[0])
    assert detail["release"] and detail["checks"]
    # At Varnish: a purger is an outsider for this; the balancer itself gets the detail.
    assert "release" not in host(WEB).check_output(f"curl -sS {varnish_url(HEALTH_PATH)}")
    assert "release" in host(LB).check_output(f"curl -sS {varnish_url(HEALTH_PATH)}")
    # At uWSGI: Varnish's probe gets the detail.
    assert "release" in host(VARNISH).check_output(
        f"curl -sS -H 'Host: {SITE_NAME}' {uwsgi_url(HEALTH_PATH)}"
    )


def test_monitoring_pages_open_to_the_workstation_only(probe_image) -> None:
    mon = address(MONITORING)
    # curl prints 000 when it gets no answer (the firewall drops the connection).
    command = "; ".join(
        f"curl -s -m 5 -o /dev/null -w '%{{http_code}}\\n' http://{mon}:{PORTS[port]}/ || true"
        for port in ("graphite_web", "bugsink")
    )
    assert from_container(probe_image, command).split() == ["000", "000"]
    for status in from_container(probe_image, command, WORKSTATION).split():
        assert status in {"200", "302"}, status


# --- Request bodies ------------------------------------------------------------------------


def test_request_bodies_over_the_limit_get_413_at_the_balancer_and_at_uwsgi(client) -> None:
    limit = int(contract("site_request_body_max_bytes"))
    post = (
        "head -c {size} /dev/zero | curl -sS -o /dev/null -w '%{{http_code}}' "
        "-H 'Content-Type: application/octet-stream' --data-binary @- "
    )
    ca = f"--cacert {CA}"
    over = client.check_output(post.format(size=limit + 1) + f"{ca} {SITE}/accounts/login/")
    assert over == "413"
    under = client.check_output(post.format(size=1024) + f"{ca} {SITE}/accounts/login/")
    assert under == "403"  # through to Django, which wants its CSRF token
    at_uwsgi = post + f"-H 'Host: {SITE_NAME}' -H '{HTTPS}' {uwsgi_url('/accounts/login/')}"
    assert host(VARNISH).check_output(at_uwsgi.format(size=limit + 1)) == "413"
    assert host(VARNISH).check_output(at_uwsgi.format(size=1024)) == "403"  # Django's CSRF


# --- Abuse limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_accounts() -> dict:
    """Two new users and their room, so the limits these tests reach touch no other test."""
    password, token = secrets.token_hex(16), secrets.token_hex(3)
    out = host(WEB).check_output(
        f"{APP_CURRENT}/manage seed_demo --owner limits-{token}-a --member limits-{token}-b "
        f"--password={password}"
    )
    return json.loads(out.splitlines()[-1]) | {"password": password}


def chatclient_in(image: str, arguments: str) -> dict:
    """The chat client's answer, run from a new container (its own address)."""
    out = from_container(image, f"python3 /chatclient.py --base {SITE} --ca /ca.crt {arguments}")
    return json.loads(out.splitlines()[-1])


def refused_after_some(result: dict, window_may_end: bool = False) -> int:
    """Where the 429s start; everything before went through and everything after is refused,
    each refusal saying when to come back. With `window_may_end` (a limit of seconds), the
    refusals may stop once, where the next window starts: a loaded machine can take longer
    than the window to send the burst."""
    statuses = result["statuses"]
    assert 429 in statuses, statuses
    first = statuses.index(429)
    assert first > 0 and set(statuses[:first]) == {200}, statuses
    refused = statuses[first:]
    if window_may_end and 200 in refused:
        refused = refused[: refused.index(200)]
    assert set(refused) == {429}, statuses
    assert int(result["retry_after"]) >= 1, result
    return first


def test_wrong_passwords_are_throttled_while_the_right_one_still_logs_in_elsewhere(
    probe_image, client, fresh_accounts
) -> None:
    user = fresh_accounts["owner"]
    result = chatclient_in(probe_image, f"login-attempts {user} wrong-{secrets.token_hex(4)} 20")
    assert refused_after_some(result) <= 10, result["statuses"]
    assert "try again" in result["refusal"].lower(), result["refusal"]
    # The account's owner, from another address, with the right password.
    answer = chatclient(client, "get", user, fresh_accounts["password"], "/home/")
    assert answer["status"] == 200, answer


def test_a_message_flood_is_refused_with_a_clear_answer(client, fresh_accounts) -> None:
    member, room = fresh_accounts["member"], fresh_accounts["room"]
    result = chatclient(client, "flood", member, fresh_accounts["password"], str(room), "45")
    assert refused_after_some(result, window_may_end=True) >= 10, result["statuses"]
    refusal = json.loads(result["refusal"])
    assert refusal["error"] and int(refusal["retry_after"]) >= 1, refusal


# --- Secrets in output -----------------------------------------------------------------------


def test_the_verbose_converge_output_holds_none_of_the_generated_secrets() -> None:
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.log"
    output = log.read_text(errors="replace")
    # The runs printed their task results (molecule.yml sets -v), site.yml's among them.
    assert "TASK [app : Write the application's environment]" in output
    assert re.search(r"(ok|changed): \[staging-web1\] => \{", output)
    # Everything generated but the certificates, which are public.
    generated = [
        path
        for path in SECRETS_DIR.rglob("*")
        if path.is_file() and path.suffix not in {".crt", ".csr", ".srl"}
    ]
    assert len(generated) >= 8, generated
    for path in generated:
        for piece in secret_pieces(path.read_text().strip()):
            assert piece not in output, f"{path.relative_to(SECRETS_DIR)} appears in {log}"


PEM_LINE_BYTES = 48  # each full line of a PEM body holds 64 base64 characters


def secret_pieces(text: str) -> list[str]:
    """What of a generated file must never be printed: the whole text, or for a PEM private
    key each line of its body, but the lines that hold only its public key (an EC key's
    body ends with it, and the certificates the converge prints hold it too)."""
    if "PRIVATE KEY-----" not in text:
        return [text]
    body = [line for line in text.splitlines() if "-----" not in line]
    der = base64.b64decode("".join(body))
    public = (
        serialization.load_pem_private_key(text.encode(), password=None)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return [
        line
        for index, line in enumerate(body)
        if len(line) >= 16
        and der[index * PEM_LINE_BYTES : (index + 1) * PEM_LINE_BYTES] not in public
    ]
