from __future__ import annotations

import random

from django.conf import settings
from django.http import HttpRequest


def jitter(seconds: int, variance: float | None = None) -> int:
    """``seconds`` +/- variance (20% by default), so keys written together do not all
    expire together (the thundering herd the book warns about)."""
    variance = settings.CACHE_TTL_JITTER if variance is None else variance
    low = int(seconds * (1 - variance))
    high = int(seconds * (1 + variance))
    return random.randint(max(low, 1), max(high, 1))  # noqa: S311 - not security related


class JitteredTTLs:
    """``{{ ttl.short }}`` etc. in templates: a freshly jittered timeout on each use."""

    def __getitem__(self, name: str) -> int:
        return jitter(settings.CACHE_TTLS[name])


def cache_ttls(request: HttpRequest) -> dict[str, object]:
    return {"ttl": JitteredTTLs()}
