"""Central logs: logmail-app forwards to logmail-mon, checked on the files the server writes.

Messages are sent on logmail-app the ways the stack's programs log: syslog(3) through
/dev/log (logger, as HAProxy does with facility local0) and a systemd unit's stdout (the
journal, as uWSGI, Daphne, Celery and varnishncsa do). Each carries a unique token.
"""

from __future__ import annotations

import time
import uuid

from hpdtest import address, host, wait_for

SERVER = "logmail-mon"
CLIENT = "logmail-app"
CENTRAL = "/var/log/central"


def token(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def central_has(path: str, *needles: str) -> bool:
    """Whether one line of a central file holds every needle."""
    pattern = " && ".join(f'index($0, "{n}")' for n in needles)
    cmd = f"test -f {path} && awk '{pattern} {{ found = 1 }} END {{ exit !found }}' {path}"
    return host(SERVER).run(cmd).rc == 0


def test_logger_message_lands_in_the_program_file_and_all_log() -> None:
    tok = token("logger")
    host(CLIENT).check_output(f"logger -t hpdtest {tok}")
    assert wait_for(lambda: central_has(f"{CENTRAL}/{CLIENT}/hpdtest.log", tok), timeout=15)
    assert wait_for(lambda: central_has(f"{CENTRAL}/all.log", CLIENT, "hpdtest", tok), timeout=15)
    # time, host, facility.severity, program[pid]: message
    line = host(SERVER).check_output(f"grep -h {tok} {CENTRAL}/all.log")
    stamp, hostname, priority, program, message = line.split(" ", 4)
    assert stamp[:4].isdigit() and "T" in stamp
    assert (hostname, priority, message) == (CLIENT, "user.notice", tok)
    assert program.startswith("hpdtest[") and program.endswith("]:")


def test_haproxy_style_local0_message_is_forwarded() -> None:
    tok = token("local0")
    host(CLIENT).check_output(f"logger -p local0.info -t haproxy {tok}")
    assert wait_for(
        lambda: central_has(f"{CENTRAL}/{CLIENT}/haproxy.log", "local0.info", tok), timeout=15
    )


def test_unit_stdout_reaches_the_server_through_the_journal() -> None:
    tok = token("unit")
    host(CLIENT).check_output(f"systemd-run --quiet --unit hpd-echo-{tok} echo {tok}")
    # The tag of a unit's stdout is its program's name (SyslogIdentifier): echo.
    assert wait_for(lambda: central_has(f"{CENTRAL}/{CLIENT}/echo.log", tok), timeout=15)
    assert wait_for(
        lambda: central_has(f"{CENTRAL}/all.log", CLIENT, "daemon.info", tok), timeout=15
    )


def test_server_own_messages_are_central_too_and_not_sent_to_itself() -> None:
    tok = token("server")
    host(SERVER).check_output(f"logger -t hpdtest {tok}")
    assert wait_for(lambda: central_has(f"{CENTRAL}/{SERVER}/hpdtest.log", tok), timeout=15)
    conf = host(SERVER).file("/etc/rsyslog.conf").content_string
    assert "omfwd" not in conf
    assert host(SERVER).run(f"grep -c {tok} {CENTRAL}/all.log").stdout.strip() == "1"


def stop_server() -> None:
    # syslog.socket would start rsyslog again at the next local message: stop both.
    host(SERVER).check_output("systemctl stop syslog.socket rsyslog.service")


def start_server() -> None:
    host(SERVER).check_output("systemctl start rsyslog")


def all_arrive(toks: list[str], timeout: float = 60) -> None:
    for tok in toks:
        assert wait_for(
            lambda t=tok: central_has(f"{CENTRAL}/{CLIENT}/hpdqueue.log", t), timeout=timeout
        ), f"{tok} never reached the server"


def test_nothing_is_lost_while_the_server_is_down() -> None:
    """Lines logged while the server's rsyslog is stopped all arrive once it is back,
    the first one included (it went into the dead connection and is sent again)."""
    toks = [token(f"down{i}") for i in range(5)]
    stop_server()
    try:
        for tok in toks:
            host(CLIENT).check_output(f"logger -t hpdqueue {tok}")
        time.sleep(3)
        assert not central_has(f"{CENTRAL}/all.log", toks[-1])
    finally:
        start_server()
    all_arrive(toks)


def test_queue_survives_a_client_restart_while_the_server_is_down() -> None:
    """Once the client has noticed the outage, what it holds is saved to disk when its
    own rsyslog restarts and sent when the server is back."""
    client = host(CLIENT)
    since = client.check_output("date '+%Y-%m-%d %H:%M:%S'")
    stop_server()
    try:
        # Two probes: the first goes into the dead connection, the second finds it dead.
        for probe in ("probe1", "probe2"):
            client.check_output(f"logger -t hpdprobe {token(probe)}")
            time.sleep(1)
        assert wait_for(
            lambda: (
                "'hpd_forward' suspended"
                in client.check_output(f"journalctl -u rsyslog --since '{since}' --no-pager")
            ),
            timeout=20,
        )
        toks = [token(f"restart{i}") for i in range(6)]
        for tok in toks[:3]:
            client.check_output(f"logger -t hpdqueue {tok}")
        client.check_output("systemctl restart rsyslog")
        assert client.run("ls /var/spool/rsyslog/hpd_forward.qi").rc == 0
        for tok in toks[3:]:
            client.check_output(f"logger -t hpdqueue {tok}")
    finally:
        start_server()
    all_arrive(toks)


def test_server_listens_on_its_private_address_only_and_clients_not_at_all() -> None:
    server_address = address(SERVER)
    listening = host(SERVER).check_output("ss -ltnH")
    assert f"{server_address}:514" in listening
    assert "0.0.0.0:514" not in listening and "*:514" not in listening
    assert ":514" not in host(CLIENT).check_output("ss -ltnH")
    rules = host(SERVER).check_output("nft list chain inet filter services")
    assert address(CLIENT) in rules and "tcp dport 514 accept" in rules


def test_central_logs_are_rotated() -> None:
    rule = host(SERVER).file("/etc/logrotate.d/hpd-central")
    assert rule.exists and f"{CENTRAL}/*/*.log" in rule.content_string
    host(SERVER).check_output("logrotate --debug /etc/logrotate.d/hpd-central")
