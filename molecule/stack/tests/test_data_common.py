"""The baseline every host gets: operator account, SSH, firewall, kernel, upgrades, time."""

from __future__ import annotations

import ipaddress
import re

import pytest
from data_tier import APP, PRIMARY
from hpdtest import address, group_hosts, host, host_setting, run_playbook, wait_for
from stack import CACHE, PORTS

# Every host of the inventory: the client container gets the baseline too.
ALL_HOSTS = group_hosts("all")
PROBE_PORT = 8765


def setting(name: str, host_name: str):
    """A common role variable as the inventory sets it for the host, else its default."""
    return host_setting("common", name, host_name)


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_sshd_refuses_root_and_password_login(name: str) -> None:
    effective = host(name).check_output("sshd -T").splitlines()
    assert "permitrootlogin no" in effective
    assert "passwordauthentication no" in effective
    assert "kbdinteractiveauthentication no" in effective


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_deploy_user_can_sudo(name: str) -> None:
    deploy = host(name).user(setting("common_deploy_user", name))
    assert deploy.exists
    assert "sudo" in deploy.groups
    assert "NOPASSWD: ALL" in host(name).check_output(f"sudo -l -U {deploy.name}")


@pytest.fixture
def probe_listener():
    """A real TCP service on the primary database host on a port no role opens."""
    server = host(PRIMARY)
    server.run_expect(
        [0],
        f"systemd-run --unit=hpd-probe python3 -m http.server {PROBE_PORT} --bind 0.0.0.0",
    )
    assert wait_for(lambda: server.socket(f"tcp://0.0.0.0:{PROBE_PORT}").is_listening)
    yield server
    server.run("rm -f /etc/nftables.d/zz-probe.nft && systemctl reload nftables")
    server.run("systemctl stop hpd-probe")


def _reachable(client: str, target: str, port: int) -> bool:
    return host(client).run(f"nc -z -w 2 {target} {port}").rc == 0


def ssh_open_to(server: str, client: str) -> bool:
    """Whether the baseline opens the server's SSH to the client: to
    common_ssh_allowed_networks, or to everyone when that is empty."""
    networks = setting("common_ssh_allowed_networks", server)
    source = ipaddress.ip_address(address(client))
    return not networks or any(source in ipaddress.ip_network(net) for net in networks)


def test_firewall_drops_unopened_port_and_opens_by_drop_in(probe_listener) -> None:
    server = probe_listener
    target = address(PRIMARY)
    # It listens (reachable from the host itself) but the firewall drops it from a neighbour.
    assert server.run(f"curl -fsS -o /dev/null http://{target}:{PROBE_PORT}/").rc == 0
    assert not _reachable(APP, target, PROBE_PORT)
    # A role's opening lets the neighbour in: PostgreSQL's, to every inventory host.
    assert _reachable(APP, target, int(PORTS["postgresql"]))
    # SSH listens, and the baseline opens it to the deploy network only: the neighbour gets
    # through exactly when its address is in common_ssh_allowed_networks (or that is empty).
    ssh_port = int(setting("common_ssh_port", PRIMARY))
    assert server.socket(f"tcp://{ssh_port}").is_listening
    assert _reachable(APP, target, ssh_port) == ssh_open_to(PRIMARY, APP)
    # A drop-in in the firewall role's shape opens the port to the hosts it names.
    client = address(APP)
    server.run_expect(
        [0],
        f"echo 'add rule inet filter services ip saddr {{ {client} }} "
        f"tcp dport {{ {PROBE_PORT} }} accept' > /etc/nftables.d/zz-probe.nft "
        "&& systemctl reload nftables",
    )
    assert _reachable(APP, target, PROBE_PORT)


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_kernel_settings_are_persisted(name: str) -> None:
    wanted = {
        **setting("common_sysctl_settings", name),
        **setting("common_sysctl_overrides", name),
    }
    lines = host(name).file("/etc/sysctl.d/60-hpd.conf").content_string.splitlines()
    for key, value in wanted.items():
        assert f"{key}={value}" in lines, key
    # The namespaced value is live in the container (set by the runtime, see molecule.yml).
    live = host(name).check_output("sysctl -n net.core.somaxconn")
    assert live == str(wanted["net.core.somaxconn"])


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_unattended_security_upgrades(name: str) -> None:
    config = host(name).check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    origins = re.findall(r'^Unattended-Upgrade::Origins-Pattern:: "(.*)";$', config, re.M)
    assert origins == setting("common_unattended_upgrades_origins", name)
    assert any("-security" in origin for origin in origins)
    assert host(name).package("unattended-upgrades").is_installed


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_time_zone_and_sync(name: str) -> None:
    zone = setting("common_timezone", name)
    assert host(name).check_output("readlink /etc/localtime").endswith(f"/zoneinfo/{zone}")
    assert host(name).package("chrony").is_installed
    sources = host(name).file("/etc/chrony/sources.d/hpd.sources").content_string.splitlines()
    configured = [line for line in sources if line and not line.startswith("#")]
    assert configured == setting("common_time_sync_sources", name)


def test_bad_variable_fails_before_any_change() -> None:
    result = run_playbook(
        "playbooks/common.yml", "--limit", APP, "-e", "common_ssh_port=twenty-two"
    )
    assert result.returncode != 0
    assert "common_ssh_port" in result.stdout + result.stderr
    assert re.search(rf"{APP}\s*:\s*ok=\d+\s+changed=0\s", result.stdout), result.stdout[-3000:]


def test_the_weekly_lynis_audit_runs_and_records_its_hardening_index() -> None:
    # One host: an audit takes about a minute of CPU. The checklist reads this report.
    server = host(CACHE)
    assert server.service("hpd-lynis.timer").is_enabled
    server.run_expect([0], "systemctl start hpd-lynis.service")
    report = server.file("/var/log/lynis-report.dat").content_string
    index = re.search(r"^hardening_index=(\d+)$", report, re.M)
    assert index and int(index[1]) >= 70, report[-2000:]
