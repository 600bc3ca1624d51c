from django.urls import path

from filestore import views

app_name = "filestore"

urlpatterns = [path("<path:name>", views.serve, name="serve")]
