"""The baseline every host gets: operator account, SSH, firewall, kernel, upgrades, time."""

from __future__ import annotations

import pytest
from hpdtest import address, host, run_playbook, wait_for

ALL_HOSTS = ["data-db1", "data-db2", "data-cache", "data-client"]
PROBE_PORT = 8765


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_sshd_refuses_root_and_password_login(name: str) -> None:
    effective = host(name).check_output("sshd -T").splitlines()
    assert "permitrootlogin no" in effective
    assert "passwordauthentication no" in effective
    assert "kbdinteractiveauthentication no" in effective


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_deploy_user_can_sudo(name: str) -> None:
    deploy = host(name).user("deploy")
    assert deploy.exists
    assert "sudo" in deploy.groups
    assert "NOPASSWD: ALL" in host(name).check_output("sudo -l -U deploy")


@pytest.fixture
def probe_listener():
    """A real TCP service on data-db1 on a port no role opens."""
    server = host("data-db1")
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


def test_firewall_drops_unopened_port_and_opens_by_drop_in(probe_listener) -> None:
    server = probe_listener
    db1 = address("data-db1")
    # It listens (reachable from the host itself) but the firewall drops it from a neighbour.
    assert server.run(f"curl -fsS -o /dev/null http://{db1}:{PROBE_PORT}/").rc == 0
    assert not _reachable("data-client", db1, PROBE_PORT)
    # SSH is opened by the baseline.
    assert _reachable("data-client", db1, 22)
    # A service role's drop-in opens a port to the private network only.
    server.run_expect(
        [0],
        "echo 'add rule inet filter services ip saddr @private_networks "
        f"tcp dport {PROBE_PORT} accept' > /etc/nftables.d/zz-probe.nft "
        "&& systemctl reload nftables",
    )
    assert _reachable("data-client", db1, PROBE_PORT)


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_kernel_settings_are_persisted(name: str) -> None:
    conf = host(name).file("/etc/sysctl.d/60-hpd.conf")
    assert conf.contains("net.core.somaxconn=4096")
    assert conf.contains("vm.overcommit_memory=1")
    # The namespaced value is live in the container (set by the runtime, see molecule.yml).
    assert host(name).check_output("sysctl -n net.core.somaxconn") == "4096"


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_unattended_security_upgrades(name: str) -> None:
    config = host(name).check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert "codename=${distro_codename}-security" in config
    assert host(name).package("unattended-upgrades").is_installed


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_time_zone_and_sync(name: str) -> None:
    assert host(name).check_output("date +%Z") == "UTC"
    assert host(name).package("chrony").is_installed
    assert host(name).file("/etc/chrony/sources.d/hpd.sources").contains("pool ")


def test_bad_variable_fails_before_any_change() -> None:
    result = run_playbook(
        "playbooks/common.yml", "--limit", "data-client", "-e", "common_ssh_port=twenty-two"
    )
    assert result.returncode != 0
    assert "common_ssh_port" in result.stdout + result.stderr
    assert "changed=0" in result.stdout
