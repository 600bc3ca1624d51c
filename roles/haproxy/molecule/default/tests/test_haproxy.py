"""The balancer, exercised by real clients from a container on no allowlist."""

from __future__ import annotations

import json
import os
import time

import pytest
import testinfra


def get_host(name: str):
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


CA = "/usr/local/share/ca-certificates/hpd-test-ca.crt"


@pytest.fixture(scope="module")
def lb():
    return get_host("haproxy-lb")


@pytest.fixture(scope="module")
def client():
    host = get_host("haproxy-client")
    ca = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "secrets", "ca", "ca.crt")
    with open(ca) as f:
        pem = f.read()
    host.run_expect([0], f"cat > {CA} <<'PEM'\n{pem}PEM")
    return host


def fetch(client, path: str, *curl_args: str) -> dict:
    out = client.check_output(
        f"curl -sS --cacert {CA} {' '.join(curl_args)} https://haproxy-lb{path}"
    )
    return json.loads(out)


def backend_stats(lb) -> dict[str, str]:
    rows = lb.check_output("echo 'show stat' | socat stdio /run/haproxy/admin.sock").splitlines()
    header = rows[0].lstrip("# ").split(",")
    states = {}
    for row in rows[1:]:
        fields = dict(zip(header, row.split(","), strict=False))
        states[f"{fields['pxname']}/{fields['svname']}"] = fields["status"]
    return states


def test_https_answers_and_passes_request_metadata(client) -> None:
    echo = fetch(client, "/hello")
    headers = echo["headers"]
    assert echo["port"] == 8000
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == client.check_output("hostname -I").split()[0]
    assert len(headers["x-request-id"]) > 10
    # Each request gets its own id.
    assert fetch(client, "/hello")["headers"]["x-request-id"] != headers["x-request-id"]


def test_request_id_is_logged(client, lb) -> None:
    request_id = fetch(client, "/logged")["headers"]["x-request-id"]
    time.sleep(1)
    assert lb.run(f"grep -F 'request_id={request_id}' /var/log/haproxy.log").rc == 0


def test_http_redirects_to_https(client) -> None:
    out = client.check_output(
        "curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' http://haproxy-lb/x?y=1"
    )
    assert out == "301 https://haproxy-lb/x?y=1"


def test_hsts_header(client) -> None:
    headers = client.check_output(f"curl -sS -D - -o /dev/null --cacert {CA} https://haproxy-lb/")
    assert "strict-transport-security: max-age=63072000" in headers.lower()


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_are_refused(client, version: str) -> None:
    result = client.run(
        f"echo | openssl s_client -connect haproxy-lb:443 {version} -cipher 'DEFAULT:@SECLEVEL=0'"
    )
    assert result.rc != 0
    assert "Cipher is (NONE)" in result.stdout or "alert" in (result.stdout + result.stderr)


def test_tls_1_2_is_accepted(client) -> None:
    result = client.run(f"echo | openssl s_client -connect haproxy-lb:443 -tls1_2 -CAfile {CA}")
    assert result.rc == 0
    assert "Verify return code: 0 (ok)" in result.stdout


def test_admin_path_refused_outside_allowlist(client, lb) -> None:
    code = client.check_output(
        f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {CA} https://haproxy-lb/ops-admin/"
    )
    assert code == "403"
    local = lb.check_output("curl -sSk -o /dev/null -w '%{http_code}' https://127.0.0.1/ops-admin/")
    assert local == "200"


def test_websocket_prefix_goes_to_asgi_servers(client) -> None:
    assert fetch(client, "/ws/room/1")["port"] == 8001


def test_unhealthy_server_is_taken_out(client, lb) -> None:
    web1 = get_host("haproxy-web1")
    web1.run_expect([0], "touch /tmp/unhealthy")
    try:
        deadline = time.monotonic() + 20
        while backend_stats(lb)["pages/haproxy-web1"] != "DOWN" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert backend_stats(lb)["pages/haproxy-web1"] == "DOWN"
        served_by = {fetch(client, f"/n{i}")["host"] for i in range(20)}
        assert served_by == {"haproxy-web2"}
    finally:
        web1.run_expect([0], "rm -f /tmp/unhealthy")
    deadline = time.monotonic() + 20
    while backend_stats(lb)["pages/haproxy-web1"] != "UP" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert backend_stats(lb)["pages/haproxy-web1"] == "UP"


def test_drained_server_finishes_requests_and_gets_no_new_ones(client, lb) -> None:
    sock = "socat stdio /run/haproxy/admin.sock"
    # Pin a slow request on web1, then drain web1 while it is in flight.
    client.run_expect([0], "rm -f /tmp/slow.out")
    for _ in range(10):
        client.run(
            f"nohup curl -sS --cacert {CA} -o /tmp/slow.out -w '%{{http_code}}' "
            "https://haproxy-lb/slow > /tmp/slow.code 2>&1 &"
        )
        time.sleep(0.5)
        if "haproxy-web1" in lb.check_output(f"echo 'show servers conn pages' | {sock}"):
            break
    lb.run_expect([0], f"echo 'set server pages/haproxy-web1 state drain' | {sock}")
    try:
        served_by = {fetch(client, f"/d{i}")["host"] for i in range(20)}
        assert served_by == {"haproxy-web2"}
        time.sleep(3.5)
        assert client.check_output("cat /tmp/slow.code") == "200"
    finally:
        lb.run_expect([0], f"echo 'set server pages/haproxy-web1 state ready' | {sock}")


def test_error_page_when_no_server_is_up(client, lb) -> None:
    sock = "socat stdio /run/haproxy/admin.sock"
    for server in ("haproxy-web1", "haproxy-web2"):
        lb.run_expect([0], f"echo 'set server pages/{server} state maint' | {sock}")
    try:
        out = client.check_output(
            f"curl -sS -w '\\n%{{http_code}}' --cacert {CA} https://haproxy-lb/"
        )
        assert out.endswith("503")
        assert "right back" in out
    finally:
        for server in ("haproxy-web1", "haproxy-web2"):
            lb.run_expect([0], f"echo 'set server pages/{server} state ready' | {sock}")
