from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("chat.urls")),
    path("accounts/", include("accounts.urls")),
    path("-/", include("ops.urls")),
    path("files/", include("filestore.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
]
