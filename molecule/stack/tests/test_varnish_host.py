"""Varnish on the staging accelerator, as the stack's converge left it: what the role's own
scenario (roles/varnish/molecule/default) checked and the web tier's tests do not.

varnishd's command line is the one the role derives from the staging inventory (HTTP on
the private address only, the management interface on loopback with a root-only secret,
the cache sized by the role's memory rule, the inventory's -p parameters); the role
refuses a missing, short or placeholder secret before it changes anything; varnishncsa
writes one journal line per client request, with the request id HAProxy gave it and
whether the cache hit.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from pathlib import Path

import pytest
import yaml
from data_tier import assert_role_stops_before_any_change
from hpdtest import PROJECT_DIR, address, host, host_setting, wait_for
from stack import CLIENT, LB, MONITORING, PORTS, SITE_NAME, VARNISH, curl

SCENARIO_DIR = Path(__file__).resolve().parents[1]
ROLE_PLAYBOOK = SCENARIO_DIR / "varnish-role.yml"
ROLE_VARS = PROJECT_DIR / "roles" / "varnish" / "vars" / "main.yml"
PORT = int(PORTS["varnish"])


def setting(name: str):
    """A varnish role variable as the staging inventory sets it, else the role's default."""
    return host_setting("varnish", name, VARNISH)


def ram_mb() -> int:
    """varnish_ram_mb: the inventory's value, else the role's default, the host's RAM as
    Ansible reports it (ansible_facts['memtotal_mb'])."""
    value = setting("varnish_ram_mb")
    if isinstance(value, str) and "memtotal_mb" in value:
        meminfo = host(VARNISH).file("/proc/meminfo").content_string
        return int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, flags=re.MULTILINE)[1]) // 1024
    return int(value)


def expected_storage_mb() -> int:
    """The role's cache size rule (its vars/main.yml), computed here independently: the
    override, else varnish_storage_percent of the RAM left after the fixed overhead, never
    below 64 MB."""
    override = setting("varnish_storage_mb")
    if override is not None:
        return int(override)
    overhead = int(yaml.safe_load(ROLE_VARS.read_text())["varnish_fixed_overhead_mb"])
    percent = int(setting("varnish_storage_percent"))
    return max(int((ram_mb() - overhead) * percent / 100), 64)


def varnishd_options() -> dict[str, list[str]]:
    """The value of each option on the running manager process's command line."""
    words = host(VARNISH).check_output("ps -C varnishd -o args=").splitlines()[0].split()
    options: dict[str, list[str]] = {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag in {"-a", "-T", "-S", "-f", "-s", "-p"}:
            options.setdefault(flag, []).append(value)
    return options


def expected_listen_addresses() -> list[str]:
    """varnish_listen_addresses as the inventory sets it; the role's default is the host's
    private address (site_private_address, the scenario's network here)."""
    private = address(VARNISH)
    return [
        private if "site_private_address" in str(item) else str(item)
        for item in setting("varnish_listen_addresses")
    ]


def inventory_secret() -> str:
    """varnish_secret as Ansible resolves it from the stack's inventory."""
    return host(VARNISH).ansible("debug", "var=varnish_secret", check=False)["varnish_secret"]


def test_command_line_from_the_role() -> None:
    varnish = host(VARNISH)
    listen = [
        f"[{item}]:{PORT}" if ":" in item else f"{item}:{PORT}"
        for item in expected_listen_addresses()
    ]
    admin = f"{setting('varnish_admin_address')}:{setting('varnish_admin_port')}"
    secret_path = setting("varnish_secret_path")
    params = setting("varnish_params") or {}
    storage_mb = expected_storage_mb()
    options = varnishd_options()

    # HTTP on the private address only; management on loopback, with the secret file.
    assert options["-a"] == listen
    assert options["-T"] == [admin]
    assert options["-S"] == [secret_path]
    storage = [f"malloc,{storage_mb}m"]
    if setting("varnish_transient_storage_mb") is not None:
        storage.append(f"Transient=malloc,{setting('varnish_transient_storage_mb')}m")
    assert options["-s"] == storage
    assert sorted(options.get("-p", [])) == sorted(f"{k}={v}" for k, v in params.items())

    # The running child has that much malloc storage (in use plus free).
    stats = varnish.check_output("varnishstat -1 -f SMA.s0.g_bytes -f SMA.s0.g_space")
    total = sum(int(line.split()[1]) for line in stats.splitlines())
    assert total == storage_mb * 1024 * 1024, stats

    # thread_pool_min: the inventory's -p value when it sets one, else Varnish's default.
    shown = varnish.check_output("varnishadm param.show thread_pool_min")
    if "thread_pool_min" in params:
        assert f"Value is: {params['thread_pool_min']} " in shown, shown
    else:
        assert re.search(r"Value is: \d+ \[threads\] \(default\)", shown), shown

    listening = varnish.check_output("ss -ltnH")
    for item in listen:
        assert f"{item} " in listening, listening
    for wildcard in (f"0.0.0.0:{PORT} ", f"*:{PORT} ", f"[::]:{PORT} "):
        assert wildcard not in listening, listening
    assert f"{admin} " in listening
    assert f"0.0.0.0:{setting('varnish_admin_port')} " not in listening

    # The management interface answers with the role's secret, which only root can read,
    # and refuses another one.
    secret = varnish.file(secret_path)
    assert (secret.user, secret.group, secret.mode) == ("root", "root", 0o600)
    assert varnish.check_output("varnishadm ping").startswith("PONG")
    wrong = f"/root/not-the-varnish-secret-{secrets.token_hex(4)}"
    varnish.run_expect([0], f"umask 077 && echo {secrets.token_hex(16)} > {wrong}")
    try:
        refused = varnish.run(f"varnishadm -T {admin} -S {wrong} ping")
    finally:
        varnish.run(f"rm -f {wrong}")
    assert refused.rc != 0 and "PONG" not in refused.stdout


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (None, "missing required arguments: varnish_secret"),
        ({"varnish_secret": "short"}, "varnish_secret: must be a string of at least 16"),
        (
            {"varnish_secret": "changeme-changeme-1"},
            "varnish_secret: must be a string of at least 16",
        ),
    ],
    ids=["missing", "short", "placeholder"],
)
def test_role_refuses_a_missing_or_weak_secret(tmp_path: Path, extra_vars, message) -> None:
    # Missing: an inventory of the accelerator alone, without the staging group_vars that
    # hold the secret. Short and placeholder: the stack's inventory, the secret given with -e.
    inventory_path = None
    if extra_vars is None:
        inventory_path = tmp_path / "accelerator-only.ini"
        inventory_path.write_text(
            f"[accelerators]\n{VARNISH} ansible_connection=community.docker.docker\n"
        )
    result = assert_role_stops_before_any_change(
        ROLE_PLAYBOOK,
        VARNISH,
        "varnish_secret",
        setting("varnish_secret_path"),
        extra_vars,
        service="varnish",
        inventory_path=str(inventory_path) if inventory_path else None,
    )
    output = result.stdout + result.stderr
    assert message in output, output[-3000:]
    # Neither a refused secret long enough to be told apart nor the one in use is printed.
    if extra_vars and len(extra_vars["varnish_secret"]) >= 16:
        assert extra_vars["varnish_secret"] not in output
    current = inventory_secret()
    assert current not in output
    # The allowed case is the stack's converge, which ran the role with the inventory's
    # secret (generated, 32 characters): that secret is the one in the file, and the
    # management interface still takes it after the refused run.
    expected = hashlib.sha256(f"{current}\n".encode()).hexdigest()
    assert host(VARNISH).file(setting("varnish_secret_path")).sha256sum == expected
    assert host(VARNISH).check_output("varnishadm ping").startswith("PONG")


def static_path(client) -> str:
    """A static file the landing page links (uWSGI serves it; Varnish caches it)."""
    _, _, body = curl(client, "/")
    match = re.search(r'(/static/[^"\'?]+\.(?:css|js))', body)
    assert match, "the landing page links no static file"
    return match.group(1)


def haproxy_lines(request_id: str) -> str:
    """The balancer's log lines of one request, in the central log (HAProxy sends its
    request log straight to the monitoring host's syslog server)."""
    needle = shlex.quote(f"request_id={request_id}")
    central = f"/var/log/central/{host(LB).check_output('hostname')}/haproxy.log"
    return host(MONITORING).run(f"grep -F -- {needle} {central}").stdout


def test_every_client_request_is_logged_with_its_request_id(client) -> None:
    """Every request has a line in the central log from the balancer, with its request id
    and the cache's answer; varnishncsa adds its own line (to the journal, which rsyslog
    forwards) for each request that is not a hit, with the same id."""
    varnish = host(VARNISH)
    assert varnish.service("varnishncsa").is_running
    path = f"{static_path(client)}?t=ncsa-{secrets.token_hex(6)}"
    for expected in ("MISS", "HIT"):
        status, headers, _ = curl(client, path)
        assert status == 200 and headers["x-cache"] == expected, headers
        # The balancer's copy of the answer stays inside.
        assert "x-hpd-cache-result" not in headers, headers

    def lines() -> list[str]:
        out = varnish.run(
            "journalctl -t varnishncsa --no-pager -o cat | "
            f"grep -F -- {shlex.quote(f'{path} HTTP/1.1')}"
        ).stdout
        return out.splitlines()

    # The miss only: a hit's one line is the balancer's.
    assert wait_for(lambda: len(lines()) >= 1, timeout=15), lines()
    logged = lines()
    assert len(logged) == 1, logged
    line = logged[0]
    assert "cache=miss" in line and "status=200" in line, line
    assert f'"GET http://{SITE_NAME}{path} HTTP/1.1"' in line, line
    assert "time=[" in line and "duration_us=" in line
    # The visitor, as HAProxy forwarded it, not the balancer's address.
    assert f"client={address(CLIENT)} " in line, line
    miss_id = re.search(r"request_id=(\S+)", line)[1]
    assert miss_id != "-", line

    # Both requests in the central log from the balancer, each with its own id and the
    # cache's answer; the miss under the id varnishncsa logged.
    assert wait_for(lambda: path in haproxy_lines(miss_id), timeout=15), haproxy_lines(miss_id)
    assert haproxy_lines(miss_id).rstrip().endswith("cache=MISS"), haproxy_lines(miss_id)
    central = f"/var/log/central/{host(LB).check_output('hostname')}/haproxy.log"

    def balancer() -> list[str]:
        out = host(MONITORING).run(f"grep -F -- {shlex.quote(path)} {central}").stdout
        return out.splitlines()

    assert wait_for(lambda: len(balancer()) >= 2, timeout=15), balancer()
    hit = [entry for entry in balancer() if f"request_id={miss_id} " not in entry]
    assert len(hit) == 1 and hit[0].endswith("cache=HIT"), balancer()
