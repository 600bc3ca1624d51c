from __future__ import annotations

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from ops.clientaddr import client_in, client_ip
from ops.health import run_checks


@never_cache
def alive(request: HttpRequest) -> HttpResponse:
    """The process is up and answering. No dependency is touched."""
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


def may_see_health_detail(request: HttpRequest) -> bool:
    """Loopback, our proxies (their probes connect directly), the deploy's health gate
    (HEALTH_DETAIL_ALLOWLIST) and the operators (ADMIN_ALLOWLIST)."""
    address = client_ip(request)
    if address is not None and address.is_loopback:
        return True
    return client_in(
        request,
        settings.TRUSTED_PROXIES,
        settings.HEALTH_DETAIL_ALLOWLIST,
        settings.ADMIN_ALLOWLIST,
    )


@never_cache
def health(request: HttpRequest) -> HttpResponse:
    """Database, migrations, cache and Redis. 503 when a critical check fails; the JSON
    body names every failing part either way.

    Only for may_see_health_detail(); anyone else gets the answer of /-/alive/: the
    release, versions in error messages and which part is failing are a map for an
    attacker, and the public has no use for them."""
    if not may_see_health_detail(request):
        return alive(request)
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


class ErrorProbe(RuntimeError):
    """Raised on purpose by error_probe, so operators can see an error arrive."""


@never_cache
@staff_member_required
def error_probe(request: HttpRequest) -> HttpResponse:
    """Fails on purpose, for staff only: proves that an unhandled error in a view reaches
    the error tracker with the release and the request id."""
    request_id = getattr(request, "request_id", "-")
    raise ErrorProbe(f"error probe, release {settings.APP_RELEASE}, request {request_id}")
