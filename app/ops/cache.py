"""A Memcached backend (pylibmc) whose failures are cache misses.

The book's advice: losing a cache server should put more load on the database, not
serve error pages. Every operation is wrapped; an error is logged, counted in statsd
(``cache.errors``) and answered as a miss. After a failure the process skips
Memcached for ``CACHE_FAILURE_BACKOFF`` seconds (a small circuit breaker) so a dead or
frozen server does not cost a time-out on every call of every request.

Values are signed (``SignedClient``): pylibmc pickles every value that is not text, bytes
or a number, and unpickling runs code, so anyone able to write to Memcached could run code
in every web process; a planted text value could put HTML into pages. Each stored value
carries an HMAC-SHA256 under a key derived from SECRET_KEY, and a value without a valid
one is a miss (logged, counted as ``cache.bad_signature``). Integers stay plain so that
Memcached's atomic incr/decr keep working; they are parsed as numbers, never unpickled."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pylibmc
from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.memcached import PyLibMCCache

from ops import metrics

logger = logging.getLogger("ops.cache")
T = TypeVar("T")

_breaker_lock = threading.Lock()
_down_until: dict[str, float] = {}


# pylibmc 1.6's flag bits (src/_pylibmcmodule.h): the type of a stored value. Bit 8 is
# zlib compression, which pylibmc undoes before deserialize; any other mix is an error.
FLAG_NONE, FLAG_PICKLE, FLAG_INTEGER, FLAG_LONG, FLAG_TEXT = 0, 1, 2, 4, 16
_TYPE_BITS = FLAG_PICKLE | FLAG_INTEGER | FLAG_LONG | FLAG_TEXT
_NUMBER_TYPES = {FLAG_INTEGER, FLAG_LONG}  # int and bool: incr/decr work on these
_SIGNED_TYPES = {FLAG_NONE, FLAG_PICKLE, FLAG_TEXT}
_SIGNATURE_BYTES = hashlib.sha256().digest_size
_KEY_SALT = "ops.cache.SignedClient"


def signing_key(secret: str) -> bytes:
    # Derived like django.utils.crypto.salted_hmac does, but once per client instead of
    # once per value.
    return hashlib.sha256((_KEY_SALT + secret).encode()).digest()


class SignedClient(pylibmc.Client):
    """A pylibmc client that signs what it stores and refuses unsigned values.

    pylibmc (>= 1.6) calls ``serialize``/``deserialize`` for every value; the flag it
    stores beside the value says how to read it back. Pickles, text and bytes are
    stored as ``HMAC-SHA256(value) + value``; the flag is not trusted either: only a
    clean number flag skips the check, and it is parsed with int(), not unpickled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signing_key = signing_key(settings.SECRET_KEY)

    def _mac(self, data: bytes) -> bytes:
        return hmac.digest(self._signing_key, data, "sha256")

    def serialize(self, value: Any) -> tuple[bytes, int]:
        data, flags = super().serialize(value)
        if flags & _TYPE_BITS in _NUMBER_TYPES:
            return data, flags
        return self._mac(data) + data, flags

    def deserialize(self, data: bytes, flags: int) -> Any:
        kind = flags & _TYPE_BITS
        if kind in _NUMBER_TYPES:
            try:
                return super().deserialize(data, flags)
            except (pylibmc.Error, ValueError):
                return self._refuse(flags, "not a number")
        if kind not in _SIGNED_TYPES:
            return self._refuse(flags, "unknown flags")
        signature, payload = data[:_SIGNATURE_BYTES], data[_SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, self._mac(payload)):
            return self._refuse(flags, "bad or missing signature")
        return super().deserialize(payload, flags)

    @staticmethod
    def _refuse(flags: int, reason: str) -> Any:
        metrics.incr("cache.bad_signature")
        logger.warning("Memcached value refused (%s, flags %d): treated as a miss", reason, flags)
        raise pylibmc.CacheMiss  # pylibmc answers the get as a miss


class FailSafePyLibMCCache(PyLibMCCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SignedClient
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
