#!/usr/bin/python3
"""Metrics collectd 5.12 cannot read itself, for collectd's exec plugin.

One subcommand per source (haproxy, uwsgi, varnish, redis, celery, postgresql, pgbackrest,
units, tls). Each loops forever: read the source, print PUTVAL lines (collectd-exec(5)) on
stdout, sleep until the next interval. The interval and host name come from
COLLECTD_INTERVAL and COLLECTD_HOSTNAME, which collectd's exec plugin sets. A source that is
down or answers garbage is logged on stderr (once per distinct error, collectd writes it to
its log) and retried next interval; the loop never exits on its own.

Python standard library only. Parsing is kept in pure functions (parse_*), so the unit
tests feed them real-format samples without any service.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple


class Metric(NamedTuple):
    """One collectd value list: plugin instance, type (from types.db), type instance and
    the values (one per data source of the type)."""

    plugin_instance: str
    type: str
    type_instance: str
    values: tuple[int | float, ...]


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def clean(part: str) -> str:
    """A safe identifier part: anything but letters, digits, _ . - becomes _. The slash
    and quote characters would break the PUTVAL identifier."""
    return _UNSAFE.sub("_", part)


def format_value(value: int | float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def putval(host: str, plugin: str, metric: Metric, interval: float) -> str:
    """The PUTVAL line for one metric. Plugin and type must not contain '-' (collectd
    splits the identifier at the first one)."""
    ident = f"{clean(host)}/{plugin}"
    if metric.plugin_instance:
        ident += f"-{clean(metric.plugin_instance)}"
    ident += f"/{metric.type}"
    if metric.type_instance:
        ident += f"-{clean(metric.type_instance)}"
    values = ":".join(format_value(v) for v in metric.values)
    return f'PUTVAL "{ident}" interval={interval:g} N:{values}'


def _number(text: str) -> int | float | None:
    """An int or float from text, None when empty or not a number."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


# --- HAProxy: "show stat" on the stats socket -----------------------------------------

# CSV column -> (type, type instance); one value each.
HAPROXY_SINGLE = {
    "scur": ("current_sessions", ""),
    "stot": ("total_sessions", ""),
    "qcur": ("queue_length", ""),
    "req_tot": ("total_requests", ""),
    "ereq": ("errors", "request"),
    "econ": ("errors", "connect"),
    "eresp": ("errors", "response"),
    "dreq": ("errors", "denied_request"),
    "hrsp_1xx": ("http_requests", "1xx"),
    "hrsp_2xx": ("http_requests", "2xx"),
    "hrsp_3xx": ("http_requests", "3xx"),
    "hrsp_4xx": ("http_requests", "4xx"),
    "hrsp_5xx": ("http_requests", "5xx"),
    "hrsp_other": ("http_requests", "other"),
}


def parse_haproxy_stat(text: str) -> list[Metric]:
    """Metrics from the CSV `show stat` prints. The plugin instance is
    <proxy>-<server>, server being FRONTEND, BACKEND or a server's name; empty columns
    (not applicable to that row) are skipped."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError("not a 'show stat' answer (no '# pxname,...' header)")
    rows = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    metrics: list[Metric] = []
    for row in rows:
        proxy, server = row.get("pxname") or "", row.get("svname") or ""
        if not proxy or not server:
            continue
        instance = f"{proxy}-{server}"
        for column, (type_, type_instance) in HAPROXY_SINGLE.items():
            value = _number(row.get(column) or "")
            if value is not None:
                metrics.append(Metric(instance, type_, type_instance, (value,)))
        rx, tx = _number(row.get("bin") or ""), _number(row.get("bout") or "")
        if rx is not None and tx is not None:
            metrics.append(Metric(instance, "if_octets", "", (rx, tx)))
        if server != "FRONTEND":
            status = (row.get("status") or "").upper()
            up = status.startswith("UP") or status == "NO CHECK"
            metrics.append(Metric(instance, "gauge", "up", (1 if up else 0,)))
    return metrics


def read_unix(path: str, command: bytes, timeout: float) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command)
        return _read_all(sock).decode("utf-8", "replace")


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# --- uWSGI: the stats server (raw JSON, or JSON over HTTP with stats-http) --------------


def parse_uwsgi_stats(text: str, name: str) -> list[Metric]:
    """Metrics from a uWSGI stats document, with or without the HTTP header that
    `stats-http = true` adds. The plugin instance is the vassal's name."""
    if text.startswith("HTTP/"):
        text = re.split(r"\r?\n\r?\n", text, maxsplit=1)[-1]
    stats = json.loads(text)
    workers = stats.get("workers") or []
    busy = sum(1 for w in workers if w.get("status") == "busy")
    # avg_rt is microseconds per worker; weight by each worker's requests.
    served = [(w.get("avg_rt", 0), w.get("requests", 0)) for w in workers]
    total = sum(requests for _, requests in served)
    mean_rt = sum(rt * requests for rt, requests in served) / total / 1e6 if total else 0.0
    return [
        Metric(name, "queue_length", "listen", (int(stats.get("listen_queue", 0)),)),
        Metric(name, "errors", "listen_queue", (int(stats.get("listen_queue_errors", 0)),)),
        Metric(name, "total_requests", "", (total,)),
        Metric(name, "errors", "exceptions", (sum(w.get("exceptions", 0) for w in workers),)),
        Metric(name, "errors", "harakiri", (sum(w.get("harakiri_count", 0) for w in workers),)),
        Metric(name, "count", "busy_workers", (busy,)),
        Metric(name, "count", "idle_workers", (len(workers) - busy,)),
        Metric(name, "response_time", "", (mean_rt,)),
        Metric(name, "memory", "rss", (sum(w.get("rss", 0) for w in workers),)),
        Metric(name, "total_bytes", "tx", (sum(w.get("tx", 0) for w in workers),)),
    ]


def read_uwsgi(address: str, timeout: float) -> str:
    """The stats document from host:port or a unix socket path. A GET is sent in case
    the server speaks HTTP (stats-http); a raw stats server ignores it."""
    request = b"GET / HTTP/1.0\r\n\r\n"
    if address.startswith("/"):
        return read_unix(address, request, timeout)
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        return _read_all(sock).decode("utf-8", "replace")


# --- Varnish: varnishstat -j --------------------------------------------------------------

# Counter -> (type, type instance). Counters ("c") are rates after StoreRates, gauges
# ("g") are sent as they are.
VARNISH_COUNTERS = {
    "MAIN.client_req": ("total_requests", "client"),
    "MAIN.cache_hit": ("cache_result", "hit"),
    "MAIN.cache_hitpass": ("cache_result", "hitpass"),
    "MAIN.cache_hitmiss": ("cache_result", "hitmiss"),
    "MAIN.cache_miss": ("cache_result", "miss"),
    "MAIN.sess_conn": ("connections", "client"),
    "MAIN.sess_dropped": ("connections", "client_dropped"),
    "MAIN.backend_req": ("total_requests", "backend"),
    "MAIN.backend_conn": ("connections", "backend"),
    "MAIN.backend_fail": ("connections", "backend_fail"),
    "MAIN.backend_unhealthy": ("connections", "backend_unhealthy"),
    "MAIN.fetch_failed": ("errors", "fetch_failed"),
    "MAIN.n_expired": ("total_objects", "expired"),
    "MAIN.n_lru_nuked": ("total_objects", "lru_nuked"),
    "MAIN.bans_added": ("total_operations", "ban"),
    "MAIN.n_purges": ("total_operations", "purge"),
    "MAIN.n_object": ("objects", ""),
    "MAIN.threads": ("threads", "worker"),
    "MAIN.thread_queue_len": ("queue_length", "worker"),
    "MAIN.uptime": ("uptime", ""),
    "SMA.s0.g_bytes": ("bytes", "storage_used"),
    "SMA.s0.g_space": ("bytes", "storage_free"),
}


def parse_varnishstat(text: str) -> list[Metric]:
    """Metrics from `varnishstat -j`: Varnish 6.5+ nests counters under "counters"
    (with "version": 1), older releases put them at the top level."""
    document = json.loads(text)
    counters = document.get("counters", document)
    metrics = []
    for name, (type_, type_instance) in VARNISH_COUNTERS.items():
        counter = counters.get(name)
        if isinstance(counter, dict) and isinstance(counter.get("value"), int | float):
            metrics.append(Metric("", type_, type_instance, (counter["value"],)))
    if not metrics:
        raise ValueError("varnishstat -j returned none of the expected counters")
    return metrics


def read_varnishstat(instance: str, timeout: float) -> str:
    command = ["varnishstat", "-j"]
    if instance:
        command += ["-n", instance]
    return _run(command, timeout)


def _run(command: list[str], timeout: float) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {done.returncode}: {done.stderr.strip()[:200]}")
    return done.stdout


# --- Redis (INFO) and Celery queues (LLEN): a small RESP client -------------------------


class RedisError(Exception):
    """An error reply (-ERR, -NOPERM, -WRONGPASS ...)."""


class Incomplete(Exception):
    """The buffer ends before the reply does: read more."""


def encode_command(*args: str | int) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse_reply(buffer: bytes, pos: int = 0) -> tuple[object, int]:
    """One RESP reply from buffer at pos: (value, position after it). Error replies are
    returned as RedisError instances (not raised) so a pipeline can go on. Raises
    Incomplete when the buffer ends before the reply does."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, line = buffer[pos : pos + 1], buffer[pos + 1 : end].decode()
    pos = end + 2
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return RedisError(line), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, pos
        if len(buffer) < pos + length + 2:
            raise Incomplete
        return buffer[pos : pos + length].decode("utf-8", "replace"), pos + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse_reply(buffer, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"not a RESP reply: {buffer[pos - len(line) - 3 : pos]!r}")


def redis_pipeline(
    host: str, port: int, commands: list[tuple[str | int, ...]], timeout: float
) -> list[object]:
    """Send every command at once and return one reply per command."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"".join(encode_command(*c) for c in commands))
        buffer, replies, pos = b"", [], 0
        while len(replies) < len(commands):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            buffer += chunk
            while len(replies) < len(commands):
                try:
                    reply, pos = parse_reply(buffer, pos)
                except Incomplete:
                    break
                replies.append(reply)
        return replies


def auth_commands(user: str, password: str, db: int) -> list[tuple[str | int, ...]]:
    commands: list[tuple[str | int, ...]] = []
    if password:
        commands.append(("AUTH", user, password) if user else ("AUTH", password))
    if db:
        commands.append(("SELECT", db))
    return commands


def check_replies(replies: list[object], count: int) -> list[object]:
    """Raise the first error among the AUTH/SELECT replies; return the rest."""
    for reply in replies[:count]:
        if isinstance(reply, RedisError):
            raise reply
    return replies[count:]


# INFO field -> (type, type instance).
REDIS_INFO = {
    "connected_clients": ("current_connections", "clients"),
    "blocked_clients": ("current_connections", "blocked"),
    "total_connections_received": ("total_connections", ""),
    "rejected_connections": ("connections", "rejected"),
    "total_commands_processed": ("total_operations", "commands"),
    "instantaneous_ops_per_sec": ("operations_per_second", ""),
    "used_memory": ("memory", "used"),
    "used_memory_rss": ("memory", "rss"),
    "maxmemory": ("memory", "max"),
    "keyspace_hits": ("cache_result", "hits"),
    "keyspace_misses": ("cache_result", "misses"),
    "expired_keys": ("expired_keys", ""),
    "evicted_keys": ("evicted_keys", ""),
    "changes_since_last_save": ("gauge", "changes_since_last_save"),
    "aof_current_size": ("bytes", "aof"),
    "uptime_in_seconds": ("uptime", ""),
}
_KEYSPACE = re.compile(r"^(db\d+):keys=(\d+),expires=(\d+)")


def parse_redis_info(text: str, instance: str) -> list[Metric]:
    """Metrics from an INFO reply ("field:value" lines in "# Section" blocks)."""
    fields: dict[str, str] = {}
    metrics = []
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        if match := _KEYSPACE.match(line):
            metrics.append(Metric(instance, "records", f"{match[1]}_keys", (int(match[2]),)))
            metrics.append(Metric(instance, "records", f"{match[1]}_expires", (int(match[3]),)))
            continue
        key, _, value = line.partition(":")
        fields[key] = value
    for key, (type_, type_instance) in REDIS_INFO.items():
        value = _number(fields.get(key, ""))
        if value is not None:
            metrics.append(Metric(instance, type_, type_instance, (value,)))
    if not fields:
        raise ValueError("empty INFO reply")
    return metrics


def queue_lengths(queues: list[str], replies: list[object]) -> list[Metric]:
    """queue_length metrics from LLEN replies, one per queue (type instance = queue)."""
    metrics = []
    for queue, reply in zip(queues, replies, strict=True):
        if isinstance(reply, RedisError):
            raise reply
        if not isinstance(reply, int):
            raise ValueError(f"LLEN {queue} answered {reply!r}")
        metrics.append(Metric("", "queue_length", queue, (reply,)))
    return metrics


def read_password(path: str) -> str:
    if not path:
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


# --- PostgreSQL: pg_stat_database through psql (peer authentication as postgres) ---------

POSTGRESQL_QUERY = """
SELECT datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit,
       tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, deadlocks,
       pg_database_size(datid)
  FROM pg_stat_database
 WHERE datname IS NOT NULL AND datname NOT LIKE 'template%'
 ORDER BY datname
"""
POSTGRESQL_COLUMNS = [
    ("pg_numbackends", ""),
    ("pg_xact", "commit"),
    ("pg_xact", "rollback"),
    ("pg_blks", "heap_read"),
    ("pg_blks", "heap_hit"),
    ("pg_n_tup_c", "returned"),
    ("pg_n_tup_c", "fetched"),
    ("pg_n_tup_c", "ins"),
    ("pg_n_tup_c", "upd"),
    ("pg_n_tup_c", "del"),
    ("pg_xact", "deadlocks"),
    ("pg_db_size", ""),
]


def parse_postgresql(text: str) -> list[Metric]:
    """Metrics from psql's unaligned, tab-separated output of POSTGRESQL_QUERY. The
    plugin instance is the database; type names follow collectd's postgresql plugin."""
    metrics = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(POSTGRESQL_COLUMNS) + 1:
            raise ValueError(f"unexpected psql row: {line[:120]!r}")
        database = fields[0]
        for (type_, type_instance), raw in zip(POSTGRESQL_COLUMNS, fields[1:], strict=True):
            value = _number(raw)
            if value is not None:
                metrics.append(Metric(database, type_, type_instance, (value,)))
    return metrics


# The cluster's WAL archiving and replay. Archive lag: how long the oldest finished segment
# has waited for archive_command (0 when none waits), and how many wait. Replay lag, on a
# replica only: 0 while it has replayed everything it received, else the age of the last
# transaction it replayed (the usual measure: it grows while the primary writes and the
# replica does not keep up, or does not receive).
POSTGRESQL_CLUSTER_QUERY = """
SELECT coalesce(extract(epoch FROM now() - min(modification)), 0), count(*),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
  FROM pg_ls_archive_statusdir()
 WHERE name LIKE '%.ready'
"""


def parse_postgresql_cluster(text: str) -> list[Metric]:
    """Metrics from psql's unaligned output of POSTGRESQL_CLUSTER_QUERY (one row)."""
    fields = text.strip("\r\n").split("\t")  # a NULL last column leaves a trailing tab
    if len(fields) != 3:
        raise ValueError(f"unexpected psql row: {text[:120]!r}")
    archive_lag, waiting, replay_lag = (_number(field) for field in fields)
    if archive_lag is None or waiting is None:
        raise ValueError(f"unexpected psql row: {text[:120]!r}")
    metrics = [
        Metric("", "duration", "archive_lag", (max(0.0, float(archive_lag)),)),
        Metric("", "count", "archive_waiting", (waiting,)),
    ]
    if replay_lag is not None:
        metrics.append(Metric("", "duration", "replay_lag", (max(0.0, float(replay_lag)),)))
    return metrics


def read_postgresql(port: int, timeout: float, query: str = POSTGRESQL_QUERY) -> str:
    command = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-p", str(port), "-d", "postgres"]
    return _run([*command, "-c", query], timeout)


# --- pgBackRest: the repository's own view (pgbackrest info) ------------------------------


def parse_pgbackrest_info(text: str, now: float) -> list[Metric]:
    """Per stanza (the plugin instance): seconds since the newest backup of any type, and
    since the newest full one, finished; how many backups the repository holds; pgBackRest's
    status code (0: ok). A stanza without a backup has no age series, so a rule watching the
    age for silence sees it."""
    metrics = []
    for stanza in json.loads(text):
        name = stanza["name"]
        backups = [b for b in stanza.get("backup") or [] if not b.get("error")]
        metrics.append(Metric(name, "gauge", "status", (stanza["status"]["code"],)))
        metrics.append(Metric(name, "count", "backups", (len(backups),)))
        for type_instance, kinds in (("last_backup", None), ("last_full", {"full"})):
            stops = [b["timestamp"]["stop"] for b in backups if kinds is None or b["type"] in kinds]
            if stops:
                age = max(0.0, now - max(stops))
                metrics.append(Metric(name, "duration", type_instance, (age,)))
    return metrics


def read_pgbackrest_info(timeout: float) -> str:
    return _run(["pgbackrest", "info", "--output=json"], timeout)


# --- systemd units: whether each one's last run failed --------------------------------------


def parse_unit_states(text: str) -> list[Metric]:
    """Metrics from `systemctl show --property=Id,ActiveState,Result`: 1 when the unit is
    failed or its last run did not succeed, else 0 (a unit never run counts as 0)."""
    metrics = []
    for block in text.strip().split("\n\n"):
        properties = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in properties:
            continue
        result = properties.get("Result") or "success"
        failed = properties.get("ActiveState") == "failed" or result != "success"
        unit = properties["Id"].removesuffix(".service")
        metrics.append(Metric(unit, "gauge", "failed", (int(failed),)))
    return metrics


def read_unit_states(units: list[str], timeout: float) -> str:
    return _run(["systemctl", "show", "--property=Id,ActiveState,Result", *units], timeout)


# --- TLS: days left on the certificate a server presents ------------------------------------


def days_left(not_after: str, now: float) -> float:
    """Days from now to an `openssl x509 -enddate` line (notAfter=Mar  1 12:00:00 2029 GMT)."""
    return (ssl.cert_time_to_seconds(not_after.strip().removeprefix("notAfter=")) - now) / 86400


def read_served_certificate(address: str, server_name: str, timeout: float) -> bytes:
    """The leaf certificate (DER) the server presents for server_name; not verified, since
    the point is to read its dates whoever issued it."""
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, int(port)), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ValueError(f"{address} presented no certificate for {server_name}")
    return der


def certificate_end_date(der: bytes, timeout: float) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-enddate"],
        input=der,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl exited {done.returncode}: {done.stderr.decode()[:200]}")
    return done.stdout.decode()


# --- The loop -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_forever(plugin: str, collect: Callable[[], Iterable[Metric]], once: bool = False) -> None:
    """Collect and print every interval; log each new error once, and the recovery."""
    host = os.environ.get("COLLECTD_HOSTNAME") or socket.gethostname()
    interval = float(os.environ.get("COLLECTD_INTERVAL") or 10)
    last_error = ""
    deadline = time.monotonic()
    while True:
        try:
            lines = [putval(host, plugin, m, interval) for m in collect()]
        except Exception as error:  # noqa: BLE001 - any source failure is logged, then retried
            message = f"{plugin}: {type(error).__name__}: {error}"
            if message != last_error:
                log(message)
                last_error = message
        else:
            if last_error:
                log(f"{plugin}: reading again")
                last_error = ""
            if lines:
                print("\n".join(lines), flush=True)
        if once:
            return
        deadline += interval
        time.sleep(max(0.0, deadline - time.monotonic()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-read timeout (s)")
    sub = parser.add_subparsers(dest="source", required=True)
    p = sub.add_parser("haproxy", help="show stat from the stats socket")
    p.add_argument("--socket", default="/run/haproxy/admin.sock")
    p = sub.add_parser("uwsgi", help="a uWSGI stats server")
    p.add_argument("--name", required=True, help="vassal name (plugin instance)")
    p.add_argument("--address", required=True, help="host:port or /path/to/socket")
    p = sub.add_parser("varnish", help="varnishstat -j")
    p.add_argument("--instance", default="", help="varnishd -n name, empty for the default")
    for name in ("redis", "celery"):
        p = sub.add_parser(name, help="Redis INFO" if name == "redis" else "Celery queue LLEN")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=6379)
        p.add_argument("--db", type=int, default=0)
        p.add_argument("--user", default="", help="ACL user; empty authenticates as default")
        p.add_argument("--password-file", default="", help="file holding the password")
        if name == "celery":
            p.add_argument("--queue", action="append", required=True, dest="queues")
    p = sub.add_parser("postgresql", help="pg_stat_database and WAL lags via psql (as postgres)")
    p.add_argument("--port", type=int, default=5432)
    sub.add_parser("pgbackrest", help="pgbackrest info (run as the repository's owner)")
    p = sub.add_parser("units", help="whether systemd units failed")
    p.add_argument("--unit", action="append", required=True, dest="units")
    p = sub.add_parser("tls", help="days left on the certificate a TLS server presents")
    p.add_argument("--address", required=True, help="host:port")
    p.add_argument("--server-name", required=True, help="the name sent in SNI")
    args = parser.parse_args(argv)
    timeout = args.timeout

    if args.source == "haproxy":

        def collect() -> list[Metric]:
            return parse_haproxy_stat(read_unix(args.socket, b"show stat\n", timeout))

    elif args.source == "uwsgi":

        def collect() -> list[Metric]:
            return parse_uwsgi_stats(read_uwsgi(args.address, timeout), args.name)

    elif args.source == "varnish":

        def collect() -> list[Metric]:
            return parse_varnishstat(read_varnishstat(args.instance, timeout))

    elif args.source in ("redis", "celery"):
        password = read_password(args.password_file)
        prefix = auth_commands(args.user, password, args.db)
        if args.source == "redis":
            instance = str(args.port)

            def collect() -> list[Metric]:
                replies = redis_pipeline(args.host, args.port, [*prefix, ("INFO",)], timeout)
                (info,) = check_replies(replies, len(prefix))
                if isinstance(info, RedisError):
                    raise info
                return parse_redis_info(str(info), instance)

        else:
            llen = [("LLEN", queue) for queue in args.queues]

            def collect() -> list[Metric]:
                replies = redis_pipeline(args.host, args.port, [*prefix, *llen], timeout)
                return queue_lengths(args.queues, check_replies(replies, len(prefix)))

    elif args.source == "pgbackrest":

        def collect() -> list[Metric]:
            return parse_pgbackrest_info(read_pgbackrest_info(timeout), time.time())

    elif args.source == "units":

        def collect() -> list[Metric]:
            return parse_unit_states(read_unit_states(args.units, timeout))

    elif args.source == "tls":

        def collect() -> list[Metric]:
            der = read_served_certificate(args.address, args.server_name, timeout)
            left = days_left(certificate_end_date(der, timeout), time.time())
            return [Metric(args.server_name, "gauge", "days_left", (left,))]

    else:

        def collect() -> list[Metric]:
            cluster = read_postgresql(args.port, timeout, POSTGRESQL_CLUSTER_QUERY)
            return [
                *parse_postgresql(read_postgresql(args.port, timeout)),
                *parse_postgresql_cluster(cluster),
            ]

    try:
        run_forever(args.source, collect, once=args.once)
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)


if __name__ == "__main__":
    main()
