from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.cache import patch_cache_control
from django.utils.http import http_date
from django.views.decorators.http import require_safe

from filestore.models import StoredFile


@require_safe
def serve(request: HttpRequest, name: str) -> HttpResponse:
    """Serve a stored file. Names are never reused, so the response is immutable and
    Varnish and browsers may keep it for a year."""
    etag = f'"{name}"'
    if request.headers.get("If-None-Match") == etag:
        response: HttpResponse = HttpResponseNotModified()
    else:
        row = (
            StoredFile.objects.filter(name=name).only("content", "content_type", "created").first()
        )
        if row is None:
            raise Http404("No such file")
        response = HttpResponse(bytes(row.content), content_type=row.content_type)
        response["Last-Modified"] = http_date(row.created.timestamp())
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Disposition"] = "inline"
    response["ETag"] = etag
    patch_cache_control(response, public=True, max_age=settings.FILESTORE_MAX_AGE, immutable=True)
    return response
