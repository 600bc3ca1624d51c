"""A Memcached backend (pylibmc) whose failures are cache misses.

The book's advice: losing a cache server should put more load on the database, not
serve error pages. Every operation is wrapped; an error is logged, counted in statsd
(``cache.errors``) and answered as a miss. After a failure the process skips
Memcached for ``CACHE_FAILURE_BACKOFF`` seconds (a small circuit breaker) so a dead or
frozen server does not cost a time-out on every call of every request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.memcached import PyLibMCCache

from ops import metrics

logger = logging.getLogger("ops.cache")
T = TypeVar("T")

_breaker_lock = threading.Lock()
_down_until: dict[str, float] = {}


class FailSafePyLibMCCache(PyLibMCCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._breaker_key = ",".join(self._servers)

    # -- circuit breaker ------------------------------------------------------------
    def is_available(self) -> bool:
        with _breaker_lock:
            until = _down_until.get(self._breaker_key, 0.0)
        return time.monotonic() >= until

    def _trip(self, operation: str, exc: BaseException) -> None:
        backoff = float(getattr(settings, "CACHE_FAILURE_BACKOFF", 10))
        with _breaker_lock:
            _down_until[self._breaker_key] = time.monotonic() + backoff
        metrics.incr("cache.errors")
        metrics.incr(metrics.metric_name("cache.errors", operation))
        logger.warning(
            "Memcached %s failed on %s (%s: %s); treating as a miss for %.0fs",
            operation,
            self._breaker_key,
            type(exc).__name__,
            exc,
            backoff,
        )

    @staticmethod
    def reset_breakers() -> None:
        with _breaker_lock:
            _down_until.clear()

    def _guard(self, operation: str, call: Callable[[], T], fallback: T) -> T:
        if not self.is_available():
            metrics.incr("cache.skipped")
            return fallback
        with metrics.track_cache_call():
            try:
                return call()
            except Exception as exc:  # pylibmc.Error and socket-level failures
                self._trip(operation, exc)
                return fallback

    # -- wrapped operations ---------------------------------------------------------
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._guard(
            "get", lambda: super(FailSafePyLibMCCache, self).get(key, default, version), default
        )

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        return self._guard(
            "get_many", lambda: super(FailSafePyLibMCCache, self).get_many(keys, version), {}
        )

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._guard(
            "set",
            lambda: super(FailSafePyLibMCCache, self).set(key, value, timeout, version),
            None,
        )

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._guard(
            "add",
            lambda: super(FailSafePyLibMCCache, self).add(key, value, timeout, version),
            False,
        )

    def set_many(
        self, data: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        return self._guard(
            "set_many",
            lambda: super(FailSafePyLibMCCache, self).set_many(data, timeout, version),
            list(data),
        )

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._guard(
            "delete", lambda: super(FailSafePyLibMCCache, self).delete(key, version), False
        )

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        self._guard(
            "delete_many",
            lambda: super(FailSafePyLibMCCache, self).delete_many(keys, version),
            None,
        )

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._guard(
            "touch",
            lambda: super(FailSafePyLibMCCache, self).touch(key, timeout, version),
            False,
        )

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        # A missing key raises ValueError like every Django backend; only server
        # failures are turned into a "missing key" answer.
        if not self.is_available():
            metrics.incr("cache.skipped")
            raise ValueError(f"Key '{key}' not found (cache unavailable)")
        with metrics.track_cache_call():
            try:
                return super().incr(key, delta, version)
            except ValueError:
                raise
            except Exception as exc:
                self._trip("incr", exc)
                raise ValueError(f"Key '{key}' not found (cache unavailable)") from exc

    def decr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self.incr(key, -delta, version)

    def clear(self) -> None:
        self._guard("clear", lambda: super(FailSafePyLibMCCache, self).clear(), None)

    def ping(self) -> None:
        """Raise if Memcached does not answer (for /-/health/); bypasses the breaker."""
        with metrics.track_cache_call():
            self._cache.set(self.make_and_validate_key("health:ping"), "1", 10)
            if self._cache.get(self.make_and_validate_key("health:ping")) != "1":
                raise RuntimeError("memcached did not return the value just written")
