"""URLconf for the 500-page test: the site's URLs plus a view that fails."""

from django.urls import path

from chat_site.urls import urlpatterns as site_urlpatterns


def boom(request):  # type: ignore[no-untyped-def]
    raise RuntimeError("deliberate failure for the 500 page test")


urlpatterns = [*site_urlpatterns, path("boom/", boom)]
