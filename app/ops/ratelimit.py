"""Abuse limits: django-ratelimit counts, this module answers.

django-ratelimit keeps the counters (fixed windows in the cache named by
RATELIMIT_USE_CACHE, atomic add/incr, so every web server shares them). Its own
``@ratelimit(block=True)`` raises a PermissionDenied that knows neither which limit
tripped nor when it frees, so the views use ``limited`` (or ``check`` and
``too_many_requests``) instead, which answer 429 with Retry-After. Rates are settings
(``RATELIMITS``, from the environment); the per-address key is the client address behind
our proxies (ops.clientaddr), never REMOTE_ADDR.

The app is deliberately not in INSTALLED_APPS: only ``django_ratelimit.core`` is used, and
its system check warns about any cache backend it does not know by name (ours wraps
PyLibMCCache).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage

from ops import metrics
from ops.clientaddr import client_address, client_ip

logger = logging.getLogger("ops.ratelimit")

Key = Callable[[str, HttpRequest], str]


def ip_key(group: str, request: HttpRequest) -> str:
    # One IPv6 user usually holds a whole /64, as django-ratelimit's own "ip" key assumes.
    address = client_ip(request)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return client_address(request)


def user_key(group: str, request: HttpRequest) -> str:
    return str(request.user.pk)


def posted_username_key(group: str, request: HttpRequest) -> str:
    # Case-insensitive, like the attacker's guesses: "Alice" and "alice" share a counter.
    return request.POST.get("username", "").strip().casefold()


@dataclass(frozen=True)
class Limit:
    name: str  # a key of settings.RATELIMITS, e.g. "login.ip"
    key: Key

    @property
    def rate(self) -> str:
        return settings.RATELIMITS[self.name]


@dataclass(frozen=True)
class Refusal:
    limit: Limit
    retry_after: int


def check(request: HttpRequest, limits: list[Limit], *, increment: bool) -> Refusal | None:
    """Count this request against every limit (``increment=True``), or only look
    (``increment=False``: refused once the count has reached the limit). Returns the
    limit that is over, with the seconds until its window ends, or None."""
    refusals = []
    for limit in limits:
        usage = get_usage(
            request, group=limit.name, key=limit.key, rate=limit.rate, increment=increment
        )
        if usage is None:  # RATELIMIT_ENABLE is off
            continue
        over = usage["count"] > usage["limit"] if increment else usage["count"] >= usage["limit"]
        if over:
            refusals.append(Refusal(limit, max(1, usage["time_left"])))
    if not refusals:
        return None
    return max(refusals, key=lambda refusal: refusal.retry_after)


def too_many_requests(request: HttpRequest, refusal: Refusal, *, as_json: bool) -> HttpResponse:
    """HTTP 429 with Retry-After: a page, or JSON for script clients; logged and counted."""
    name = refusal.limit.name
    metrics.incr(metrics.metric_name("ratelimit", name))
    logger.warning(
        "Rate limit %s (%s) refused %s %s from %s; retry in %ds",
        name,
        refusal.limit.rate,
        request.method,
        request.path,
        client_address(request),
        refusal.retry_after,
    )
    if as_json:
        response: HttpResponse = JsonResponse(
            {
                "error": f"Too many attempts, try again in {refusal.retry_after} seconds.",
                "retry_after": refusal.retry_after,
            },
            status=429,
        )
    else:
        response = render(request, "429.html", {"retry_after": refusal.retry_after}, status=429)
    response["Retry-After"] = str(refusal.retry_after)
    return response


def limited(*limits: Limit, as_json: Callable[[HttpRequest], bool] | None = None):  # type: ignore[no-untyped-def]
    """View decorator: count every POST against ``limits``; over any of them, answer 429
    without calling the view. Place it under login_required when a key needs the user."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                refusal = check(request, list(limits), increment=True)
                if refusal is not None:
                    wants_json = as_json is not None and as_json(request)
                    return too_many_requests(request, refusal, as_json=wants_json)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
