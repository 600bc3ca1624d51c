from __future__ import annotations

import functools
import hashlib
import random
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest
from django.template import engines


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


@functools.cache
def templates_version() -> str:
    """A digest of every template this process can render. Cached fragments are keyed by
    it, so a release whose templates differ renders afresh, while one with the same
    templates (a code-only deploy) keeps the cache warm; during a rolling deploy the two
    releases never read each other's fragments."""
    digest = hashlib.sha256()
    for directory in engines["django"].template_dirs:
        root = Path(directory)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def templates(request: HttpRequest) -> dict[str, object]:
    return {"templates_version": templates_version()}
