"""Unit tests of the exec script's parsing and PUTVAL formatting.

The samples under samples/ were captured from the real services of the role's Molecule
scenario (HAProxy 3.0 `show stat`, uWSGI 2.0 stats with stats-http, varnishstat -j of
Varnish 7.7 trimmed to MAIN/SMA/MGT counters, a Redis 8 pipeline AUTH/INFO/LLEN/SET/GET
answered for an ACL user allowed INFO and LLEN only; pgBackRest 2.55's `info --output=json`
from the stack scenario's repository). The Redis client is also run against a local fake
server on 127.0.0.1, the TLS reader against a local TLS server.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SAMPLES = HERE / "samples"
_spec = importlib.util.spec_from_file_location(
    "hpd_collectd_exec", HERE.parent / "files" / "hpd_collectd_exec.py"
)
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)


def by_key(metrics):
    """{(plugin_instance, type, type_instance): values}"""
    return {(m.plugin_instance, m.type, m.type_instance): m.values for m in metrics}


# --- PUTVAL ------------------------------------------------------------------------------


def test_putval_full_identifier():
    metric = ex.Metric("fe_test-FRONTEND", "if_octets", "", (243, 186))
    line = ex.putval("collectd-svc", "haproxy", metric, 10.0)
    assert line == 'PUTVAL "collectd-svc/haproxy-fe_test-FRONTEND/if_octets" interval=10 N:243:186'


def test_putval_without_plugin_instance_and_float_value():
    metric = ex.Metric("", "queue_length", "default", (3,))
    assert ex.putval("h", "celery", metric, 2.5) == (
        'PUTVAL "h/celery/queue_length-default" interval=2.5 N:3'
    )
    gauge = ex.Metric("chat", "response_time", "", (0.000067,))
    assert ex.putval("h", "uwsgi", gauge, 10).endswith(" N:6.7e-05")


def test_putval_cleans_characters_that_break_the_identifier():
    metric = ex.Metric('we"ird/proxy name', "gauge", "a/b", (True,))
    line = ex.putval("host", "haproxy", metric, 10)
    assert line == 'PUTVAL "host/haproxy-we_ird_proxy_name/gauge-a_b" interval=10 N:1'


# --- HAProxy -----------------------------------------------------------------------------


def test_haproxy_show_stat_sample():
    metrics = by_key(ex.parse_haproxy_stat((SAMPLES / "haproxy-show-stat.csv").read_text()))
    assert metrics[("fe_test-FRONTEND", "total_sessions", "")] == (3,)
    assert metrics[("fe_test-FRONTEND", "if_octets", "")] == (243, 186)
    assert metrics[("fe_test-FRONTEND", "http_requests", "2xx")] == (3,)
    assert metrics[("be_test-web1", "gauge", "up")] == (1,)
    assert metrics[("be_test-BACKEND", "gauge", "up")] == (1,)
    assert metrics[("be_test-web1", "queue_length", "")] == (0,)
    # A frontend has no queue and no up/down state; empty columns are skipped.
    assert ("fe_test-FRONTEND", "queue_length", "") not in metrics
    assert ("fe_test-FRONTEND", "gauge", "up") not in metrics


def test_haproxy_down_server_reports_zero():
    text = (SAMPLES / "haproxy-show-stat.csv").read_text()
    down = text.replace(",UP,1,1,0,0,0,", ",DOWN,1,1,0,0,0,", 1)
    assert down != text
    assert by_key(ex.parse_haproxy_stat(down))[("be_test-web1", "gauge", "up")] == (0,)


def test_haproxy_refuses_an_error_answer():
    with pytest.raises(ValueError, match="show stat"):
        ex.parse_haproxy_stat("Unknown command. Please enter one of the following commands\n")


# --- uWSGI -------------------------------------------------------------------------------


def test_uwsgi_stats_over_http_sample():
    text = (SAMPLES / "uwsgi-stats.http").read_bytes().decode()
    assert text.startswith("HTTP/1.0 200 OK")
    metrics = by_key(ex.parse_uwsgi_stats(text, "chat"))
    workers = json.loads(text.partition("\r\n\r\n")[2])["workers"]
    assert metrics[("chat", "total_requests", "")] == (sum(w["requests"] for w in workers),)
    assert metrics[("chat", "total_requests", "")] == (1,)
    assert metrics[("chat", "count", "idle_workers")] == (len(workers),)
    assert metrics[("chat", "count", "busy_workers")] == (0,)
    assert metrics[("chat", "queue_length", "listen")] == (0,)


def test_uwsgi_raw_stats_and_weighted_response_time():
    raw = json.dumps(
        {
            "listen_queue": 7,
            "listen_queue_errors": 2,
            "workers": [
                {"status": "busy", "requests": 3, "avg_rt": 1000, "exceptions": 1, "rss": 5},
                {"status": "idle", "requests": 1, "avg_rt": 5000, "harakiri_count": 1},
                {"status": "idle", "requests": 0, "avg_rt": 0},
            ],
        }
    )
    metrics = by_key(ex.parse_uwsgi_stats(raw, "chat"))
    assert metrics[("chat", "queue_length", "listen")] == (7,)
    assert metrics[("chat", "errors", "listen_queue")] == (2,)
    assert metrics[("chat", "count", "busy_workers")] == (1,)
    assert metrics[("chat", "count", "idle_workers")] == (2,)
    assert metrics[("chat", "errors", "exceptions")] == (1,)
    assert metrics[("chat", "errors", "harakiri")] == (1,)
    # (3 x 1 ms + 1 x 5 ms) / 4 requests = 2 ms
    assert metrics[("chat", "response_time", "")] == (pytest.approx(0.002),)


def test_uwsgi_garbage_raises():
    with pytest.raises(json.JSONDecodeError):
        ex.parse_uwsgi_stats("HTTP/1.0 500 Oops\r\n\r\nnot json", "chat")


# --- Varnish -----------------------------------------------------------------------------


def test_varnishstat_7_sample():
    text = (SAMPLES / "varnishstat.json").read_text()
    counters = json.loads(text)["counters"]
    metrics = by_key(ex.parse_varnishstat(text))
    assert metrics[("", "total_requests", "client")] == (counters["MAIN.client_req"]["value"],)
    assert metrics[("", "cache_result", "miss")] == (counters["MAIN.cache_miss"]["value"],)
    assert metrics[("", "threads", "worker")] == (counters["MAIN.threads"]["value"],)
    assert metrics[("", "bytes", "storage_free")] == (counters["SMA.s0.g_space"]["value"],)
    assert len(metrics) == len(ex.VARNISH_COUNTERS)


def test_varnishstat_6_flat_layout():
    flat = {"timestamp": "2024-01-01T00:00:00", "MAIN.cache_hit": {"flag": "c", "value": 42}}
    assert by_key(ex.parse_varnishstat(json.dumps(flat))) == {("", "cache_result", "hit"): (42,)}


def test_varnishstat_without_known_counters_raises():
    with pytest.raises(ValueError, match="none of the expected counters"):
        ex.parse_varnishstat('{"version": 1, "counters": {}}')


# --- RESP and Redis ----------------------------------------------------------------------


def test_encode_command():
    assert ex.encode_command("LLEN", "default") == b"*2\r\n$4\r\nLLEN\r\n$7\r\ndefault\r\n"
    assert ex.encode_command("SELECT", 3) == b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"


def parse_all(data: bytes):
    replies, pos = [], 0
    while pos < len(data):
        reply, pos = ex.parse_reply(data, pos)
        replies.append(reply)
    return replies


def test_parse_real_pipeline_replies():
    replies = parse_all((SAMPLES / "redis-pipeline.resp").read_bytes())
    assert len(replies) == 5
    ok, info, llen, set_reply, get_reply = replies
    assert ok == "OK"
    assert info.startswith("# Server") and "used_memory:" in info
    assert llen == 0
    assert isinstance(set_reply, ex.RedisError) and str(set_reply).startswith("NOPERM")
    assert isinstance(get_reply, ex.RedisError)


def test_parse_reply_nil_arrays_and_incomplete():
    assert ex.parse_reply(b"$-1\r\n") == (None, 5)
    assert ex.parse_reply(b"*2\r\n:1\r\n$2\r\nhi\r\n") == ([1, "hi"], 16)
    with pytest.raises(ex.Incomplete):
        ex.parse_reply(b"$10\r\nabc")
    with pytest.raises(ex.Incomplete):
        ex.parse_reply(b":12")
    with pytest.raises(ValueError, match="not a RESP reply"):
        ex.parse_reply(b"?what\r\n")


def test_redis_info_from_the_real_reply():
    info = parse_all((SAMPLES / "redis-pipeline.resp").read_bytes())[1]
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    metrics = by_key(ex.parse_redis_info(info, "6379"))
    assert metrics[("6379", "memory", "used")] == (int(fields["used_memory"]),)
    assert metrics[("6379", "current_connections", "clients")] == (
        int(fields["connected_clients"]),
    )
    assert metrics[("6379", "total_operations", "commands")] == (
        int(fields["total_commands_processed"]),
    )


def test_redis_info_keyspace_lines():
    info = "# Server\r\nuptime_in_seconds:5\r\n# Keyspace\r\ndb0:keys=4,expires=1,avg_ttl=0\r\n"
    metrics = by_key(ex.parse_redis_info(info, "6379"))
    assert metrics[("6379", "records", "db0_keys")] == (4,)
    assert metrics[("6379", "records", "db0_expires")] == (1,)
    assert metrics[("6379", "uptime", "")] == (5,)


def test_queue_lengths_and_errors():
    assert by_key(ex.queue_lengths(["default", "high"], [3, 0])) == {
        ("", "queue_length", "default"): (3,),
        ("", "queue_length", "high"): (0,),
    }
    with pytest.raises(ex.RedisError):
        ex.queue_lengths(["default"], [ex.RedisError("WRONGTYPE not a list")])


def test_auth_commands():
    assert ex.auth_commands("", "", 0) == []
    assert ex.auth_commands("", "pw", 0) == [("AUTH", "pw")]
    assert ex.auth_commands("monitor", "pw", 2) == [("AUTH", "monitor", "pw"), ("SELECT", 2)]
    with pytest.raises(ex.RedisError, match="WRONGPASS"):
        ex.check_replies([ex.RedisError("WRONGPASS invalid"), 3], 1)


class FakeRedis(socketserver.BaseRequestHandler):
    """Answers a pipeline in small pieces, like a real server on a slow link."""

    def handle(self):
        data = b""
        while data.count(b"LLEN") < 2:
            data += self.request.recv(4096)
        self.server.seen = data
        answer = b"+OK\r\n:3\r\n:0\r\n"
        for i in range(0, len(answer), 3):
            self.request.sendall(answer[i : i + 3])


def test_redis_pipeline_against_a_local_fake():
    with socketserver.TCPServer(("127.0.0.1", 0), FakeRedis) as server:
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        port = server.server_address[1]
        commands = [("AUTH", "monitor", "pw"), ("LLEN", "default"), ("LLEN", "high")]
        replies = ex.redis_pipeline("127.0.0.1", port, commands, timeout=5)
        thread.join(5)
    assert replies == ["OK", 3, 0]
    assert server.seen.startswith(b"*3\r\n$4\r\nAUTH\r\n$7\r\nmonitor\r\n")
    rest = ex.check_replies(replies, 1)
    assert by_key(ex.queue_lengths(["default", "high"], rest))[("", "queue_length", "default")] == (
        3,
    )


# --- PostgreSQL --------------------------------------------------------------------------


def test_postgresql_sample_from_psql():
    text = (SAMPLES / "psql-stat-database.tsv").read_text()
    row = text.splitlines()[0].split("\t")
    metrics = by_key(ex.parse_postgresql(text))
    assert row[0] == "postgres"
    assert metrics[("postgres", "pg_numbackends", "")] == (int(row[1]),)
    assert metrics[("postgres", "pg_xact", "commit")] == (int(row[2]),)
    assert metrics[("postgres", "pg_blks", "heap_hit")] == (int(row[5]),)
    assert metrics[("postgres", "pg_db_size", "")] == (int(row[12]),)
    assert len(metrics) == len(ex.POSTGRESQL_COLUMNS)


def test_postgresql_several_databases_and_nulls():
    chat = "chat\t4\t120\t2\t30\t900\t5000\t800\t10\t5\t1\t\t8413987"
    metrics = by_key(
        ex.parse_postgresql(chat + "\n" + (SAMPLES / "psql-stat-database.tsv").read_text())
    )
    assert metrics[("chat", "pg_numbackends", "")] == (4,)
    assert metrics[("chat", "pg_n_tup_c", "del")] == (1,)
    # An empty (NULL) column is left out rather than sent as 0.
    assert ("chat", "pg_xact", "deadlocks") not in metrics
    assert ("postgres", "pg_xact", "deadlocks") in metrics


def test_postgresql_unexpected_output_raises():
    with pytest.raises(ValueError, match="unexpected psql row"):
        ex.parse_postgresql("psql: error: connection to server failed\n")


def test_postgresql_cluster_on_a_primary_and_on_a_replica():
    primary = by_key(ex.parse_postgresql_cluster("12.5\t3\t\n"))
    assert primary == {
        ("", "duration", "archive_lag"): (12.5,),
        ("", "count", "archive_waiting"): (3,),
    }
    replica = by_key(ex.parse_postgresql_cluster("0\t0\t41.25\n"))
    assert replica[("", "duration", "replay_lag")] == (41.25,)
    assert replica[("", "duration", "archive_lag")] == (0.0,)


def test_postgresql_cluster_unexpected_output_raises():
    with pytest.raises(ValueError, match="unexpected psql row"):
        ex.parse_postgresql_cluster("ERROR:  permission denied for function\n")


# --- pgBackRest ----------------------------------------------------------------------------


def test_pgbackrest_info_sample():
    """`pgbackrest info --output=json` of the stack scenario's repository (a full backup and
    an incremental); the ages count from each backup's stop time."""
    text = (SAMPLES / "pgbackrest-info.json").read_text()
    stanza = json.loads(text)[0]
    stops = {b["type"]: b["timestamp"]["stop"] for b in stanza["backup"]}
    now = max(stops.values()) + 100
    metrics = by_key(ex.parse_pgbackrest_info(text, now))
    name = stanza["name"]
    assert metrics[(name, "gauge", "status")] == (0,)
    assert metrics[(name, "count", "backups")] == (len(stanza["backup"]),)
    assert metrics[(name, "duration", "last_backup")] == (100.0,)
    assert metrics[(name, "duration", "last_full")] == (now - stops["full"],)


def test_pgbackrest_stanza_without_backup_has_no_age():
    text = json.dumps(
        [{"name": "site", "backup": [], "status": {"code": 2, "message": "no valid backups"}}]
    )
    metrics = by_key(ex.parse_pgbackrest_info(text, 1_000_000))
    assert metrics == {("site", "gauge", "status"): (2,), ("site", "count", "backups"): (0,)}


# --- systemd units -------------------------------------------------------------------------


def test_unit_states_failed_and_not():
    text = (
        "Id=hpd-pgbackrest-backup@full.service\nActiveState=inactive\nResult=success\n\n"
        "Id=hpd-pgbackrest-backup@diff.service\nActiveState=failed\nResult=exit-code\n\n"
        "Id=hpd-postgresql-restore-check.service\nActiveState=inactive\nResult=timeout\n\n"
        "Id=never-run.service\nActiveState=inactive\nResult=\n"
    )
    metrics = by_key(ex.parse_unit_states(text))
    assert metrics == {
        ("hpd-pgbackrest-backup@full", "gauge", "failed"): (0,),
        ("hpd-pgbackrest-backup@diff", "gauge", "failed"): (1,),
        ("hpd-postgresql-restore-check", "gauge", "failed"): (1,),
        ("never-run", "gauge", "failed"): (0,),
    }
    line = ex.putval(
        "mon1", "units", ex.Metric("hpd-pgbackrest-backup@diff", "gauge", "failed", (1,)), 10
    )
    assert line == 'PUTVAL "mon1/units-hpd-pgbackrest-backup_diff/gauge-failed" interval=10 N:1'


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    """A TLS server on 127.0.0.1 presenting a self-signed certificate valid for 10 days."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "10", "-subj", "/CN=www.example.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def test_days_left_on_the_served_certificate(tls_server):
    der = ex.read_served_certificate(tls_server, "www.example.test", 5)
    left = ex.days_left(ex.certificate_end_date(der, 5), time.time())
    assert 9.9 < left <= 10.0


def test_days_left_is_negative_once_expired():
    assert ex.days_left("notAfter=Jan  1 00:00:00 2020 GMT\n", 1577923200) == -1.0


# --- The loop ----------------------------------------------------------------------------


def test_run_once_prints_putval_and_logs_errors(monkeypatch, capsys):
    monkeypatch.setenv("COLLECTD_HOSTNAME", "web1")
    monkeypatch.setenv("COLLECTD_INTERVAL", "10.000")
    ex.run_forever("celery", lambda: [ex.Metric("", "queue_length", "default", (2,))], once=True)
    out = capsys.readouterr()
    assert out.out == 'PUTVAL "web1/celery/queue_length-default" interval=10 N:2\n'

    def broken():
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    ex.run_forever("celery", broken, once=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert "celery: ConnectionRefusedError" in out.err
