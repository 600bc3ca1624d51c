from django.urls import path

from ops import views

app_name = "ops"

# The middleware answers these first; the routes keep reverse() and tests working
# when the middleware is disabled.
urlpatterns = [
    path("alive/", views.alive, name="alive"),
    path("health/", views.health, name="health"),
    path("error-probe/", views.error_probe, name="error-probe"),
]
