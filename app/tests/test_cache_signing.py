"""Signed Memcached values: what someone with network access to Memcached plants is a
miss, never code run by the app. Real memcached (run-tests starts one); a raw pylibmc
client stands in for the attacker."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import pylibmc
import pytest
from django.conf import settings
from django.core.cache import caches

from ops.cache import FLAG_INTEGER, FLAG_PICKLE, FLAG_TEXT, SignedClient


@pytest.fixture
def cache():
    backend = caches["default"]
    try:
        backend.ping()
    except Exception as exc:
        pytest.skip(f"no memcached answers at {settings.MEMCACHED_SERVERS}: {exc}")
    return backend


@pytest.fixture
def raw(cache) -> Iterator[pylibmc.Client]:
    """The attacker: a plain pylibmc client on the same server, no signing."""
    client = pylibmc.Client(settings.MEMCACHED_SERVERS, binary=True)
    yield client
    client.disconnect_all()


class Planted:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.path), "w"))


def test_the_cache_uses_the_signing_client(cache) -> None:
    assert isinstance(cache._cache, SignedClient)


def test_values_round_trip(cache) -> None:
    values = {
        "dict": {"id": 7, "body": "hello", "nested": [1, 2.5, None]},
        "list": [{"id": i, "body": f"message {i}"} for i in range(50)],
        "text": "<li>a rendered fragment</li>",
        "bytes": b"\x80\x04raw bytes that look like a pickle",
        "empty": "",
        "tuple": ("a", 1),
        "model-ish": settings.CACHES["default"],
    }
    for key, value in values.items():
        cache.set(key, value)
    for key, value in values.items():
        assert cache.get(key) == value, key
    assert cache.get_many(list(values)) == values


def test_integers_stay_plain_for_incr_and_decr(cache, raw) -> None:
    cache.set("counter", 5)
    assert cache.incr("counter") == 6
    assert cache.decr("counter", 2) == 4
    assert cache.get("counter") == 4
    assert raw.get(cache.make_and_validate_key("counter")) == 4  # stored as a number
    assert cache.add("fresh", 0) is True
    assert cache.incr("fresh") == 1


def test_a_planted_pickle_is_a_miss_and_runs_nothing(
    cache, raw, tmp_path, statsd_listener, caplog
) -> None:
    marker = tmp_path / "pwned"
    key = cache.make_and_validate_key("fragment")
    raw.set(key, Planted(marker))
    caplog.set_level(logging.WARNING, logger="ops.cache")
    assert cache.get("fragment") is None
    assert cache.get("fragment", "default") == "default"
    assert cache.get_many(["fragment"]) == {}
    assert not marker.exists()
    assert "chat.cache.bad_signature:1|c" in statsd_listener.drain()
    assert any("refused" in record.getMessage() for record in caplog.records)
    # A refused value is a miss, not an outage: the cache stays in use.
    assert cache.is_available()
    cache.set("fragment", "mine")
    assert cache.get("fragment") == "mine"
    # What the signature prevents: a plain client would have run the planted pickle.
    raw.set(key, Planted(marker))
    raw.get(key)
    assert marker.exists()


def test_planted_values_of_every_kind_are_misses(cache, raw) -> None:
    key = cache.make_and_validate_key("planted")
    evil = pickle.dumps(["a", "b"])
    # (value, flags) as stored by someone speaking the memcached protocol.
    planted = [
        (evil, FLAG_PICKLE),
        (b"<script>alert(1)</script>", FLAG_TEXT),  # a forged fragment
        (b"raw bytes", 0),
        (evil, FLAG_PICKLE | FLAG_INTEGER),  # a flag mix pylibmc itself rejects
        (b"12abc", FLAG_INTEGER),
        (b"\x00" * 32 + evil, FLAG_PICKLE),  # a signature of the right size, wrong value
    ]
    for data, flags in planted:
        raw.set(key, _Stored(data, flags))
        assert cache.get("planted") is None, flags
    assert cache.is_available()
    # A value signed under another SECRET_KEY is refused too.
    other = SignedClient(settings.MEMCACHED_SERVERS, binary=True)
    other._signing_key = b"k" * 32
    other.set(key, ["a", "b"])
    assert cache.get("planted") is None
    other.disconnect_all()


def test_text_and_bytes_are_never_unpickled(cache, raw, tmp_path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Planted(marker))
    cache.set("as-bytes", payload)
    cache.set("as-text", payload.decode("latin-1"))
    assert cache.get("as-bytes") == payload
    assert cache.get("as-text") == payload.decode("latin-1")
    assert not marker.exists()


class _Stored:
    """Makes a raw pylibmc client store exact bytes under exact flags."""

    def __init__(self, data: bytes, flags: int) -> None:
        self.data, self.flags = data, flags


@pytest.fixture(autouse=True)
def _raw_stores_exact_flags(monkeypatch) -> None:
    original = pylibmc.Client.serialize

    def serialize(self, value):  # type: ignore[no-untyped-def]
        if isinstance(value, _Stored):
            return value.data, value.flags
        return original(self, value)

    # Only plain clients: SignedClient's own serialize still signs what the app stores.
    monkeypatch.setattr(pylibmc.Client, "serialize", serialize)


def test_the_benchmark_runs_both_clients_side_by_side(cache) -> None:
    import subprocess
    import sys

    servers = ",".join(settings.MEMCACHED_SERVERS)
    result = subprocess.run(
        [sys.executable, "-m", "ops.bench_cache", "--servers", servers, "-n", "50"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [
        line.split() for line in result.stdout.splitlines() if "plain" in line or "signed" in line
    ]
    assert len(rows) == 4, result.stdout
    assert all(float(row[-1]) > 0 for row in rows)
