"""Middleware for operations: health probes, request ids, statsd timings, the admin
allowlist."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ops import metrics
from ops.clientaddr import client_address, client_in
from ops.logging import request_id_var

logger = logging.getLogger("ops.request")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")

Handler = Callable[[HttpRequest], HttpResponse]


class HealthCheckMiddleware:
    """Answers /-/alive/ and /-/health/ before host validation, sessions or CSRF, so
    a load balancer may probe each backend by address and nothing is stored."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from ops import views

        if request.path_info == "/-/alive/":
            return views.alive(request)
        if request.path_info == "/-/health/":
            return views.health(request)
        return self.get_response(request)


class RequestMetricsMiddleware:
    """Per request: honour X-Request-ID (the balancer adds it) for log lines and the
    response; send statsd timings for the view, the SQL and cache time, and a counter
    per response status."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        request_id_var.set(request_id)
        stats = metrics.RequestStats()
        stats_token = metrics.current_stats.set(stats)
        start = time.perf_counter()
        try:
            with ExitStack() as stack:
                timer = metrics.SqlTimer()
                for conn in connections.all(initialized_only=False):
                    stack.enter_context(conn.execute_wrapper(timer))
                response = self.get_response(request)
            elapsed_ms = (time.perf_counter() - start) * 1000
            self._send(request, response, stats, elapsed_ms)
            response["X-Request-ID"] = request_id
            return response
        finally:
            metrics.current_stats.reset(stats_token)
            # The request id stays set until request_finished (ops.apps): Django logs
            # "Not Found" and server errors after the middleware has returned.

    @staticmethod
    def _send(
        request: HttpRequest, response: HttpResponse, stats: metrics.RequestStats, ms: float
    ) -> None:
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None else "unresolved"
        metrics.timing(metrics.metric_name("view", view, request.method or "GET"), ms)
        metrics.timing("request.total_ms", ms)
        metrics.timing("request.sql_ms", stats.sql_seconds * 1000)
        metrics.timing("request.cache_ms", stats.cache_seconds * 1000)
        metrics.incr(f"response.{response.status_code}")
        # One line per request at INFO, carrying the balancer's request id (the log
        # filter adds it), so a request can be followed from HAProxy into Django.
        logger.info(
            "%s %s -> %s in %.1fms (sql %d in %.1fms, cache %d in %.1fms)",
            request.method,
            request.path,
            response.status_code,
            ms,
            stats.sql_queries,
            stats.sql_seconds * 1000,
            stats.cache_calls,
            stats.cache_seconds * 1000,
        )


class AdminAllowlistMiddleware:
    """403 for every view of the admin site unless the client address (ops.clientaddr)
    is in ADMIN_ALLOWLIST.

    It decides in process_view, after URL resolution, on the resolver's answer (the
    ``admin`` application namespace) rather than on the path: whatever spelling reached
    the admin (percent-encoding, repeated slashes, dot segments, its catch-all view) is
    refused alike, and a path change (ADMIN_URL) needs no change here."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Handler, view_args: object, view_kwargs: object
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or "admin" not in match.app_names:
            return None
        if client_in(request, settings.ADMIN_ALLOWLIST):
            return None
        metrics.incr("admin.refused")
        logger.warning(
            "Admin refused to %s (not in ADMIN_ALLOWLIST): %s %s",
            client_address(request),
            request.method,
            request.path,
        )
        return render(
            request,
            "403.html",
            {"exception": "The administration is only reachable from the operators network."},
            status=403,
        )
