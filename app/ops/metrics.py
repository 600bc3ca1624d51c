"""statsd metrics and per-request accounting of time spent in SQL and in the cache.

The accounting uses context variables, so it is correct per thread (uWSGI) and per
task (ASGI) alike."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache

import statsd
from django.conf import settings


@dataclass
class RequestStats:
    sql_seconds: float = 0.0
    sql_queries: int = 0
    cache_seconds: float = 0.0
    cache_calls: int = 0
    cache_misses_forced: int = 0
    extra: dict[str, float] = field(default_factory=dict)


current_stats: ContextVar[RequestStats | None] = ContextVar("current_stats", default=None)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def metric_name(*parts: str) -> str:
    """Join parts into a statsd-safe dotted name (no ':' '|' '@' or spaces)."""
    cleaned = (_UNSAFE.sub("_", p.replace(":", ".")).strip("_.") for p in parts)
    return ".".join(p or "unknown" for p in cleaned)


@lru_cache(maxsize=1)
def client() -> statsd.StatsClient:
    return statsd.StatsClient(
        host=settings.STATSD_HOST, port=settings.STATSD_PORT, prefix=settings.STATSD_PREFIX
    )


def reset_client() -> None:
    client.cache_clear()


def incr(name: str, count: int = 1) -> None:
    # A metric must never break a request: UDP send errors are dropped.
    with suppress(OSError):
        client().incr(name, count)


def timing(name: str, milliseconds: float) -> None:
    with suppress(OSError):
        client().timing(name, milliseconds)


@contextmanager
def track_cache_call() -> Iterator[None]:
    """Add the duration of one cache operation to the current request's total."""
    start = time.perf_counter()
    try:
        yield
    finally:
        stats = current_stats.get()
        if stats is not None:
            stats.cache_seconds += time.perf_counter() - start
            stats.cache_calls += 1


class SqlTimer:
    """A ``connection.execute_wrapper`` that adds each query's time to the request."""

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            stats = current_stats.get()
            if stats is not None:
                stats.sql_seconds += time.perf_counter() - start
                stats.sql_queries += 1
