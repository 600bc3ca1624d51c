"""statsd and Graphite on graphite-mon, driven from graphite-client on the private network."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

import pytest
from hpdtest import ANSI, address, host, run_playbook, wait_for

MON = "graphite-mon"
CLIENT = "graphite-client"
SCENARIO = Path(__file__).resolve().parents[1]
# The PNG the render test fetched, kept on this machine after the containers are gone.
ARTIFACT = Path("/tmp/hpd-graphite/render.png")


@pytest.fixture(scope="module")
def mon():
    return host(MON)


@pytest.fixture(scope="module")
def client():
    return host(CLIENT)


@pytest.fixture(scope="module")
def mon_ip() -> str:
    return address(MON)


@pytest.fixture(scope="module")
def web(mon_ip) -> str:
    return f"http://{mon_ip}:8080"


def render_json(client, web: str, target: str) -> list:
    out = client.check_output(
        f"curl -fsS --max-time 10 '{web}/render?target={target}&format=json&from=-5min'"
    )
    return json.loads(out)


def values(client, web: str, target: str) -> list[float]:
    series = render_json(client, web, target)
    return [v for s in series for v, _ in s["datapoints"] if v is not None]


def send_line(client, mon_ip: str, line: str) -> None:
    client.run_expect([0], f"printf '%s\\n' '{line}' | nc -N -w 3 {mon_ip} 2003")


def test_statsd_metrics_reach_graphite_with_the_documented_names(client, mon_ip, web) -> None:
    name = f"hpdtest.c{secrets.token_hex(4)}"
    packet = f"{name}:3|c\\n{name}:120|ms\\n{name}:7|g"
    client.run_expect([0], f"printf '{packet}' | nc -u -w 1 {mon_ip} 8125")
    targets = {
        f"stats.counters.{name}.count": 3.0,
        f"stats.counters.{name}.rate": 0.3,
        f"stats.timers.{name}.mean": 120.0,
        f"stats.timers.{name}.upper": 120.0,
        f"stats.gauges.{name}": 7.0,
    }
    found: dict[str, list[float]] = {}

    def all_seen() -> bool:
        for target in targets:
            found[target] = values(client, web, target)
        return all(found.values())

    assert wait_for(all_seen, timeout=30, interval=2), found
    for target, expected in targets.items():
        assert expected in found[target], (target, found[target])


def test_carbon_plaintext_line_is_readable_back(client, mon_ip, web) -> None:
    name = f"hpdtest.line{secrets.token_hex(4)}"
    send_line(client, mon_ip, f"{name} 42 {int(time.time())}")
    assert wait_for(lambda: 42.0 in values(client, web, name), timeout=30, interval=1)


def test_png_render_of_a_real_series(client, mon_ip, web) -> None:
    name = f"hpdtest.png{secrets.token_hex(4)}"
    now = int(time.time())
    for i, value in enumerate((5, 9, 3)):
        send_line(client, mon_ip, f"{name} {value} {now - 120 + 60 * i}")
    assert wait_for(lambda: len(values(client, web, name)) >= 2, timeout=30, interval=1)
    ctype = client.check_output(
        f"curl -fsS --max-time 20 -o /tmp/render.png -w '%{{content_type}}' "
        f"'{web}/render?target={name}&from=-10min&width=600&height=300'"
    )
    assert ctype == "image/png"
    png = base64.b64decode(client.check_output("base64 -w0 /tmp/render.png"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_bytes(png)


def test_event_posted_comes_back(client, web) -> None:
    tag = f"deploy-{secrets.token_hex(4)}"
    body = json.dumps({"what": "deploy chat", "tags": ["deploy", tag], "data": "release r1"})
    client.run_expect(
        [0], f"curl -fsS --max-time 10 -X POST -d '{body}' {web}/events/ -o /dev/null"
    )
    events = json.loads(
        client.check_output(f"curl -fsS --max-time 10 '{web}/events/get_data?tags={tag}'")
    )
    assert len(events) == 1
    assert events[0]["what"] == "deploy chat"
    assert events[0]["data"] == "release r1"
    assert set(events[0]["tags"]) == {"deploy", tag}


def test_private_only_listeners(mon, mon_ip) -> None:
    listening = mon.check_output("ss -Hlntu | awk '{print $5}'").split()
    assert f"{mon_ip}:2003" in listening  # carbon plaintext
    assert f"{mon_ip}:8080" in listening  # graphite-web
    assert f"{mon_ip}:8125" in listening  # statsd (UDP)
    # Pickle, carbon's cache query, statsd's management and the vassal's stats: loopback.
    for port in (2004, 7002, 8126, 1718):
        assert f"127.0.0.1:{port}" in listening, port
    ports = ("2003", "2004", "7002", "8080", "8125", "8126", "1718")
    wildcard = [a for a in listening if a.rsplit(":", 1)[0] in ("0.0.0.0", "*", "[::]")]
    assert not [a for a in wildcard if a.rsplit(":", 1)[1] in ports], wildcard


def test_firewall_drops_an_unopened_port(mon, client, mon_ip, web) -> None:
    mon.run_expect([0], "systemctl stop graphite-probe 2>/dev/null || true")
    mon.run_expect(
        [0],
        f"systemd-run --unit graphite-probe python3 -m http.server --bind {mon_ip} 9099",
    )
    try:
        assert wait_for(
            lambda: mon.run(f"curl -fsS --max-time 2 -o /dev/null http://{mon_ip}:9099/").rc == 0,
            timeout=15,
        )
        # Dropped, not refused: curl times out (28) instead of failing to connect (7).
        blocked = client.run(f"curl -sS --max-time 3 -o /dev/null http://{mon_ip}:9099/")
        assert blocked.rc == 28, blocked.stderr
        # The opened ports answer from the same client.
        client.run_expect([0], f"curl -fsS --max-time 5 -o /dev/null {web}/")
        client.run_expect([0], f"nc -z -w 3 {mon_ip} 2003")
    finally:
        mon.run("systemctl stop graphite-probe")


def test_another_uwsgi_play_keeps_the_graphite_vassal(mon, client, web) -> None:
    emperor = mon.check_output("systemctl show -p MainPID --value uwsgi-emperor")
    result = run_playbook(str(SCENARIO / "uwsgi-other-play.yml"))
    assert result.returncode == 0, ANSI.sub("", result.stdout[-3000:])
    assert mon.file("/etc/uwsgi-emperor/vassals/graphite.ini").exists
    rules = mon.check_output("nft list chain inet filter services")
    assert "tcp dport 2003 accept" in rules and "tcp dport 8080 accept" in rules
    client.run_expect([0], f"curl -fsS --max-time 5 -o /dev/null {web}/")
    assert mon.check_output("systemctl show -p MainPID --value uwsgi-emperor") == emperor


def graphite_workers(mon) -> set[str]:
    """PIDs of graphite-web's uWSGI workers (the vassal names its processes)."""
    return set(mon.check_output("pgrep -f '[u]wsgi-graphite.*worker' || true").split())


def test_changed_settings_reload_the_vassal(mon, client, web) -> None:
    """A new local_settings.py reloads graphite-web by itself (touch-reload): new workers
    serve, with the new setting; converging again as before restores the file."""
    before = graphite_workers(mon)
    assert before
    result = run_playbook(
        str(SCENARIO / "converge.yml"), "-e", "graphite_web_extra_settings='FIND_TOLERANCE = 61'"
    )
    try:
        assert result.returncode == 0, ANSI.sub("", result.stdout[-3000:])
        settings = mon.file("/etc/graphite/local_settings.py").content_string
        assert "FIND_TOLERANCE = 61" in settings
        assert wait_for(lambda: graphite_workers(mon) and not graphite_workers(mon) & before, 30)
        client.run_expect([0], f"curl -fsS --max-time 5 -o /dev/null {web}/")
    finally:
        restored = run_playbook(str(SCENARIO / "converge.yml"))
        assert restored.returncode == 0, ANSI.sub("", restored.stdout[-3000:])
    assert "FIND_TOLERANCE" not in mon.file("/etc/graphite/local_settings.py").content_string


@pytest.mark.parametrize("extra", [[], ["-e", "graphite_secret_key=changeme-but-long-enough"]])
def test_missing_or_weak_secret_fails_naming_it(mon, extra) -> None:
    before = mon.file("/etc/graphite/local_settings.py").md5sum
    result = run_playbook(str(SCENARIO / "missing-secret.yml"), *extra)
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode != 0
    assert "graphite_secret_key" in output
    assert mon.file("/etc/graphite/local_settings.py").md5sum == before
