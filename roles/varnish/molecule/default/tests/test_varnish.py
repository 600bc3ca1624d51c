"""The varnish role on a live container, driven with real HTTP clients.

Requests sent with curl *inside* the container come from its private address, which is in
the purge ACL (the container is in the webservers group). Requests sent from this test
process come from the Docker network's gateway: a client outside the ACL, reaching Varnish
through the firewall drop-in.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

HOST = "varnish-cache1"
PORT = 6081
SCENARIO_DIR = Path(__file__).resolve().parents[1]
ROLES_DIR = SCENARIO_DIR.parents[2]


@pytest.fixture(scope="module")
def cache():
    return testinfra.get_host(
        f"ansible://{HOST}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


@pytest.fixture(scope="module")
def address(cache) -> str:
    return cache.check_output("hostname -I").split()[0]


def parse_head(text: str) -> tuple[int, dict[str, str]]:
    """Status and headers (last response wins) of curl -D output."""
    status, headers = 0, {}
    for line in text.splitlines():
        if line.startswith("HTTP/"):
            status, headers = int(line.split()[1]), {}
        elif ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def inside(cache, address: str, path: str, method: str = "GET", *headers: str):
    """A request from the container itself (inside the purge ACL)."""
    extra = " ".join(f"-H '{h}'" for h in headers)
    out = cache.check_output(
        f"curl -sS -o /dev/null -D - -X {method} {extra} 'http://{address}:{PORT}{path}'"
    )
    return parse_head(out)


def inside_body(cache, address: str, path: str) -> str:
    return cache.check_output(f"curl -sS 'http://{address}:{PORT}{path}'")


def outside(address: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    """A request from this machine (outside the purge ACL)."""
    conn = http.client.HTTPConnection(address, PORT, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def varnishd_pid(cache) -> str:
    return cache.check_output("systemctl show -p MainPID --value varnish")


def active_vcl(cache) -> str:
    for line in cache.check_output("varnishadm vcl.list").splitlines():
        if line.startswith("active"):
            return line.split()[-1]
    raise AssertionError("no active VCL")


def run_playbook(playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROLES_DIR), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(SCENARIO_DIR / playbook),
            *args,
        ],
        cwd=SCENARIO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def wait_for(check, timeout: float = 30, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def test_command_line_from_the_role(cache, address) -> None:
    args = cache.check_output("ps -C varnishd -o args=").splitlines()[0]
    assert f"-a {address}:{PORT}" in args
    assert "-T 127.0.0.1:6082" in args
    # (1024 MB - 256 MB of fixed overhead) x 50%, from group_vars/all/varnish.yml.
    assert "-s malloc,384m" in args
    assert "-p thread_pool_min=50" in args
    assert "thread_pool_min" in cache.check_output("varnishadm param.show thread_pool_min")
    assert "Value is: 50" in cache.check_output("varnishadm param.show thread_pool_min")
    # The management interface works with the role's secret, which only root can read.
    assert cache.check_output("varnishadm ping").startswith("PONG")
    secret = cache.file("/etc/varnish/secret")
    assert secret.user == "root" and secret.mode == 0o600
    # HTTP on the private address only; management on loopback only.
    listening = cache.check_output("ss -ltnH")
    assert f"{address}:{PORT}" in listening
    assert f"0.0.0.0:{PORT}" not in listening and f"*:{PORT}" not in listening
    assert "127.0.0.1:6082" in listening


def test_backend_from_the_webservers_group_is_healthy(cache, address) -> None:
    assert f'.host = "{address}";' in cache.file("/etc/varnish/default.vcl").content_string
    assert wait_for(lambda: "healthy" in cache.check_output("varnishadm backend.list"))


def test_second_anonymous_get_is_a_hit(cache, address) -> None:
    status, head = inside(cache, address, "/page.html?t=hit")
    assert status == 200 and head["x-cache"] == "MISS"
    status, head = inside(cache, address, "/page.html?t=hit", "GET", "Cookie: _ga=1")
    assert status == 200 and head["x-cache"] == "HIT" and head["x-cache-hits"] == "1"
    # Through the firewall, from outside: the same object.
    status, head, body = outside(address, "/page.html?t=hit")
    assert status == 200 and head["x-cache"] == "HIT" and body == "a page\n"


def test_logged_in_requests_pass(cache, address) -> None:
    for _ in range(2):
        status, head = inside(cache, address, "/page.html?t=session", "GET", "Cookie: sessionid=x")
        assert status == 200 and head["x-cache"] == "PASS"


def test_purge_from_the_acl_works_and_from_outside_is_refused(cache, address) -> None:
    inside(cache, address, "/page.html?t=purge")
    assert inside(cache, address, "/page.html?t=purge")[1]["x-cache"] == "HIT"

    for method in ("PURGE", "BAN"):
        status, _, _ = outside(address, "/page.html?t=purge", method)
        assert status == 405
    assert inside(cache, address, "/page.html?t=purge")[1]["x-cache"] == "HIT"

    status, _ = inside(cache, address, "/page.html?t=purge", "PURGE")
    assert status == 200
    assert inside(cache, address, "/page.html?t=purge")[1]["x-cache"] == "MISS"


def test_firewall_drop_in_opens_the_port_to_the_private_network(cache) -> None:
    # Written by the firewall role (varnish_firewall_rules in group_vars/all/varnish.yml).
    drop_in = cache.file("/etc/nftables.d/varnish.nft")
    assert drop_in.exists
    rules = cache.check_output("nft list chain inet filter services")
    assert "172.28.5.0/24" in rules and f"tcp dport {PORT} accept" in rules


def test_vcl_change_is_reloaded_and_the_cache_survives(cache, address) -> None:
    inside(cache, address, "/page.html?t=reload")
    assert inside(cache, address, "/page.html?t=reload")[1]["x-cache"] == "HIT"
    pid, vcl = varnishd_pid(cache), active_vcl(cache)

    redirects = [{"from": "/moved/", "to": "/page.html"}]
    result = run_playbook("converge.yml", "-e", json.dumps({"varnish_redirects": redirects}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RUNNING HANDLER [varnish : Reload Varnish]" in result.stdout
    assert "RUNNING HANDLER [varnish : Restart Varnish]" not in result.stdout

    # The same daemon, a new VCL, and the object cached before the reload is still there.
    assert varnishd_pid(cache) == pid
    assert active_vcl(cache) != vcl
    status, head = inside(cache, address, "/page.html?t=reload")
    assert status == 200 and head["x-cache"] == "HIT" and head["x-cache-hits"] == "2"
    status, head = inside(cache, address, "/moved/?from=test")
    assert status == 301 and head["location"] == "/page.html?from=test"


def test_web_server_down_cached_pages_stay_and_errors_get_the_app_page(cache, address) -> None:
    inside(cache, address, "/index.html?t=down")
    try:
        cache.check_output("systemctl stop hpd-web")
        assert wait_for(lambda: "sick" in cache.check_output("varnishadm backend.list"))
        status, head = inside(cache, address, "/index.html?t=down")
        assert status == 200 and head["x-cache"] == "HIT"
        status, head, body = outside(address, "/never-cached.html")
        assert status == 503
        assert head["content-type"].startswith("text/html")
        assert "scenario-error-page" in body
    finally:
        cache.check_output("systemctl start hpd-web")
        assert wait_for(lambda: "healthy" in cache.check_output("varnishadm backend.list"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "varnish_secret"),
        (("-e", "varnish_secret=short"), "varnish_secret: must be a string of at least 16"),
        (("-e", "varnish_secret=changeme-changeme-1"), "varnish_secret: must be a string"),
    ],
    ids=["missing", "short", "placeholder"],
)
def test_role_refuses_a_missing_or_weak_secret(cache, extra, message) -> None:
    before = cache.file("/etc/varnish/secret").md5sum
    result = run_playbook("missing-secret.yml", *extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output
    assert "changed=0" in output
    assert cache.file("/etc/varnish/secret").md5sum == before


def test_every_client_request_is_logged_with_its_request_id(cache, address) -> None:
    """varnishncsa writes one line per client request to the journal (rsyslog forwards
    it), with the X-Request-ID HAProxy sets and whether the cache hit."""
    assert cache.service("varnishncsa").is_running
    request_id = f"rid-{time.time_ns()}"
    path = f"/page.html?t=ncsa-{request_id}"
    for _ in range(2):
        inside(cache, address, path, "GET", f"X-Request-ID: {request_id}")

    def lines() -> list[str]:
        out = cache.check_output("journalctl -t varnishncsa --no-pager -o cat")
        return [line for line in out.splitlines() if f"request_id={request_id}" in line]

    assert wait_for(lambda: len(lines()) == 2, timeout=15)
    first, second = lines()
    assert "cache=miss" in first and "cache=hit" in second
    assert "status=200" in second and f'{path} HTTP/1.1"' in second
    assert "time=[" in second and "duration_us=" in second
