from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from ops.health import run_checks


@never_cache
def alive(request: HttpRequest) -> HttpResponse:
    """The process is up and answering. No dependency is touched."""
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


@never_cache
def health(request: HttpRequest) -> HttpResponse:
    """Database, migrations, cache and Redis. 503 when a critical check fails; the JSON
    body names every failing part either way."""
    healthy, results = run_checks()
    critical = set(settings.HEALTH_CRITICAL_CHECKS)
    failing = [r.name for r in results if not r.ok]
    body = {
        "status": "ok" if not failing else ("degraded" if healthy else "fail"),
        "release": settings.APP_RELEASE,
        "failing": failing,
        "failing_critical": [name for name in failing if name in critical],
        "checks": {r.name: r.as_dict() for r in results},
    }
    return JsonResponse(body, status=200 if healthy else 503)
