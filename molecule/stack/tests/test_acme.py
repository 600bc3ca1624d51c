"""The balancer's acme mode (roles/haproxy, haproxy_tls_mode: acme) against Pebble, the ACME
test server prepare.yml runs on the client container.

The stack converges in `ca` mode and the other tests trust its CA, so this module switches
the balancer to acme mode as an operator would (site.yml, HAProxy's tasks, the balancers
only, the ACME settings given with -e), and puts the inventory's own mode back at the end.
The client resolves the site's name to the balancer, so Pebble's HTTP-01 request goes to
HAProxy on port 80 as a real CA's would."""

from __future__ import annotations

import json
import re
import time

import pytest
from hpdtest import address, group_hosts, host, run_playbook, wait_for
from stack import CA, CLIENT, HEALTH_PATH, LB, PORTS, SITE, SITE_NAME, contract

# prepare.yml: Pebble's HTTPS certificate, its directory and its management interface (which
# serves the root it issues under; a new root at every start).
PEBBLE_TLS_CERT = "/etc/pebble/cert.pem"
PEBBLE_DIRECTORY_PORT = 14000
PEBBLE_ROOTS = "https://127.0.0.1:15000/roots/0"
# On the client: Pebble's root (what a browser would trust), the firewall opening of the
# directory for the balancers while this module runs, and the request loop.
PEBBLE_ROOT = "/tmp/pebble-root.pem"
OPENING = "/etc/nftables.d/zz-acme-test.nft"
LOOP = "/usr/local/bin/https-loop"
# On the balancer: certbot's lineage (named after the site) and the file HAProxy serves.
LINEAGE = f"/etc/letsencrypt/live/{SITE_NAME}"
SERVED = contract("site_haproxy_certificate")
# Only the balancers' tasks of site.yml, only on the balancers (the other hosts' addresses
# come from the fact cache), as test_web_tier changes Varnish.
ONLY_HAPROXY = ("--tags", "haproxy", "--limit", "loadbalancers")
# The request loop's bounds: 4 loops of at most 500 requests, 60 s.
LOOPS, LOOP_REQUESTS, LOOP_SECONDS = 4, 500, 60

LOOP_SCRIPT = r"""#!/bin/bash
# https-loop URL CA_FILE REQUESTS SECONDS STOP_FILE: one request per new TLS connection,
# verified against CA_FILE, until STOP_FILE exists or a bound is reached. One line per
# request: "<curl exit> <HTTP status> <the served certificate's serial>".
url=$1 ca=$2 max=$3 limit=$4 stop=$5
end=$((SECONDS + limit)); n=0
while [ "$n" -lt "$max" ] && [ "$SECONDS" -lt "$end" ] && [ ! -e "$stop" ]; do
    out=$(curl -sS -o /dev/null -m 10 -H 'Connection: close' --cacert "$ca" \
        -w '%{http_code} %{certs}' "$url" 2>&1)
    rc=$?
    serial=$(printf '%s\n' "$out" | grep -m1 -i '^Serial Number:' | cut -d: -f2)
    echo "$rc ${out%% *} ${serial:--}"
    n=$((n + 1))
done
"""


def served_serial(client, ca_file: str) -> int:
    """The serial of the certificate the balancer serves for the site's name, read with a TLS
    client that trusts only `ca_file` (a chain it cannot verify fails the test)."""
    out = client.check_output(
        f"echo | openssl s_client -connect {SITE_NAME}:443 -servername {SITE_NAME} "
        f"-CAfile {ca_file} -verify_return_error 2>/dev/null | openssl x509 -noout -serial"
    )
    return int(out.split("=", 1)[1], 16)


def lineage_serial() -> int:
    out = host(LB).check_output(f"openssl x509 -in {LINEAGE}/cert.pem -noout -serial")
    return int(out.split("=", 1)[1], 16)


def haproxy_master_pid() -> str:
    return host(LB).check_output("systemctl show -p MainPID --value haproxy")


@pytest.fixture(scope="module")
def acme(client, tmp_path_factory):
    """The balancer in acme mode with Pebble as its CA; the inventory's mode again after."""
    pebble = host(CLIENT)
    assert pebble.service("pebble").is_running
    # Pebble makes its keys for a few seconds after it starts.
    assert wait_for(
        lambda: pebble.socket(f"tcp://0.0.0.0:{PEBBLE_DIRECTORY_PORT}").is_listening, timeout=60
    )
    pebble.run_expect(
        [0],
        f"echo 'add rule inet filter services ip saddr {{ {address(LB)} }} "
        f"tcp dport {{ {PEBBLE_DIRECTORY_PORT} }} accept' > {OPENING} "
        "&& systemctl reload nftables",
    )
    pebble.run_expect([0], f"curl -fsS --cacert {PEBBLE_TLS_CERT} -o {PEBBLE_ROOT} {PEBBLE_ROOTS}")
    pebble.run_expect([0], f"cat > {LOOP} <<'SH'\n{LOOP_SCRIPT}SH\nchmod 0755 {LOOP}")
    # Asked anew even when an earlier run of this module left a lineage behind (a second
    # verify on the same stack), so that Pebble's request through HAProxy is this run's.
    host(LB).run_expect([0], "rm -f /etc/haproxy/acme/issued.json")
    server_ca = tmp_path_factory.mktemp("acme") / "pebble-https.pem"
    server_ca.write_text(pebble.file(PEBBLE_TLS_CERT).content_string)
    since = pebble.check_output("date +%s")
    settings = {
        "haproxy_tls_mode": "acme",
        "haproxy_acme_email": "operators@staging.example.com",
        "haproxy_acme_directory_url": f"https://{address(CLIENT)}:{PEBBLE_DIRECTORY_PORT}/dir",
        "haproxy_acme_server_ca_file": str(server_ca),
    }
    try:
        result = run_playbook(
            "playbooks/site.yml", *ONLY_HAPROXY, "-e", json.dumps(settings), timeout=600
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        yield {"since": since, "run": result}
    finally:
        restored = run_playbook("playbooks/site.yml", *ONLY_HAPROXY, timeout=600)
        pebble.run(f"rm -f {OPENING} && systemctl reload nftables")
        assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]
        # The other tests' clients trust the stack's own CA again.
        client.run_expect([0], f"curl -fsS --cacert {CA} -o /dev/null {SITE}{HEALTH_PATH}")
        assert not host(LB).service("certbot.timer").is_running


def test_the_balancer_obtains_its_certificate_through_haproxy(acme, client) -> None:
    pebble = host(CLIENT)
    # Pebble asked for the challenge on port 80 of the site's name: the balancer's HAProxy.
    log = pebble.check_output(f"journalctl -u pebble --no-pager --since @{acme['since']}")
    assert re.search(
        rf"validate w/ HTTP: http://{re.escape(SITE_NAME)}:80/\.well-known/acme-challenge/", log
    ), log[-3000:]
    # Served, and verified by a TLS client that trusts Pebble's root only.
    serial = served_serial(client, PEBBLE_ROOT)
    assert serial == lineage_serial()
    # Pebble prints the serial zero-padded to its full width; compare numbers, not text.
    issued = re.findall(r"Issued certificate serial ([0-9a-f]+) ", log)
    assert serial in {int(hex_serial, 16) for hex_serial in issued}, log[-3000:]
    issuer = client.check_output(
        f"echo | openssl s_client -connect {SITE_NAME}:443 -servername {SITE_NAME} "
        "2>/dev/null | openssl x509 -noout -issuer -ext subjectAltName"
    )
    assert "Pebble" in issuer and f"DNS:{SITE_NAME}" in issuer, issuer
    body = client.check_output(f"curl -fsS --cacert {PEBBLE_ROOT} {SITE}{HEALTH_PATH}")
    assert body == "ok"
    # The file an expiry check reads holds it, as tightly held as the other modes' files.
    served = host(LB).file(SERVED)
    assert (served.user, served.group, served.mode) == ("root", "haproxy", 0o640)
    first = host(LB).check_output(f"openssl x509 -in {SERVED} -noout -serial")
    assert int(first.split("=", 1)[1], 16) == serial
    # Renewal: Debian's timer, trusting Pebble's HTTPS as the role's own run did.
    assert host(LB).service("certbot.timer").is_enabled
    assert host(LB).service("certbot.timer").is_running
    environment = host(LB).check_output("systemctl show -p Environment --value certbot.service")
    assert "REQUESTS_CA_BUNDLE=" in environment


def test_port_80_answers_only_known_challenges_and_redirects_the_rest(acme, client) -> None:
    unknown = client.check_output(
        "curl -sS -o /dev/null -w '%{http_code}' "
        f"http://{SITE_NAME}/.well-known/acme-challenge/no-such-token"
    )
    assert unknown == "404"
    redirect = client.check_output(
        f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{SITE_NAME}/"
    )
    assert redirect == f"301 https://{SITE_NAME}/"


def test_the_answers_exchange_is_open_to_the_balancers_only(acme, client, firewall_sources):
    port = int(PORTS["acme_http01"])
    balancers = {address(name) for name in group_hosts("loadbalancers")}
    opened = {source.removesuffix("/32") for source in firewall_sources(LB, "haproxy", port)}
    assert opened == balancers
    # A host in no group cannot plant an answer: the firewall drops it.
    planted = client.run(
        f"curl -sS -m 5 -X PUT -H 'X-Hpd-Acme-Answer: token.thumbprint' "
        f"http://{address(LB)}:{port}/.well-known/acme-challenge/token"
    )
    assert planted.rc != 0
    # The balancer's own HAProxy takes answers from the balancers and serves them on port 80.
    lb = host(LB)
    exchange = f"http://{address(LB)}:{port}/.well-known/acme-challenge/hpd-test-token"
    lb.run_expect([0], f"curl -fsS -X PUT -H 'X-Hpd-Acme-Answer: hpd-test-token.x' {exchange}")
    try:
        answer = client.check_output(
            f"curl -fsS http://{SITE_NAME}/.well-known/acme-challenge/hpd-test-token"
        )
        assert answer == "hpd-test-token.x"
    finally:
        lb.run_expect([0], f"curl -fsS -X DELETE {exchange}")


def test_a_forced_renewal_replaces_the_certificate_with_no_failed_request(acme, client) -> None:
    before = served_serial(client, PEBBLE_ROOT)
    master = haproxy_master_pid()
    stop = "/tmp/https-loop.stop"
    client.run_expect([0], f"rm -f {stop} /tmp/https-loop.*.out")
    for n in range(LOOPS):
        client.run_expect(
            [0],
            f"nohup {LOOP} {SITE}{HEALTH_PATH} {PEBBLE_ROOT} {LOOP_REQUESTS} {LOOP_SECONDS} "
            f"{stop} > /tmp/https-loop.{n}.out 2>&1 & echo started",
        )
    try:
        time.sleep(3)
        # As the timer would, but now: certbot renew, then its deploy hook.
        renewal = host(LB).run("hpd-haproxy-acme renew --force-renewal")
        assert renewal.rc == 0, renewal.stdout + renewal.stderr
        assert wait_for(lambda: served_serial(client, PEBBLE_ROOT) != before, timeout=30)
        # Some requests on the new certificate too, then the loops stop.
        time.sleep(3)
    finally:
        client.run(f"touch {stop}")
    # Anchored on the interpreter, so the pgrep's own shell (whose command line holds the
    # pattern) is not taken for a loop.
    assert wait_for(lambda: client.run(f"pgrep -f '^/bin/bash {LOOP}'").rc != 0, timeout=30)
    lines = client.check_output("cat /tmp/https-loop.*.out").splitlines()
    after = served_serial(client, PEBBLE_ROOT)
    answered = [re.fullmatch(r"0 200 ([0-9a-fA-F]+)", line) for line in lines]
    failures = [line for line, ok in zip(lines, answered, strict=True) if not ok]
    serials: dict[int, int] = {}
    for ok in filter(None, answered):
        serials[int(ok[1], 16)] = serials.get(int(ok[1], 16), 0) + 1
    per_serial = {f"{serial:x}": count for serial, count in serials.items()}
    print(
        f"requests {len(lines)}, failed {len(failures)}, serial before {before:x}, "
        f"after {after:x}, requests per serial {per_serial}"
    )
    assert not failures, failures[:20]
    # The loops ran across the reload: requests saw the old certificate and the new one.
    assert set(serials) == {before, after}, serials
    assert after != before and after == lineage_serial()
    # A reload, not a restart: HAProxy's master process is the same.
    assert haproxy_master_pid() == master
