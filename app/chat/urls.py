from django.urls import path, re_path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("home/", views.home, name="home"),
    path("join/", views.join_by_code, name="join"),
    path("rooms/new/", views.create_room, name="create_room"),
    path("rooms/<int:room_id>/", views.room_page, name="room"),
    path("rooms/<int:room_id>/transcript/", views.transcript, name="transcript"),
    path("rooms/<int:room_id>/messages/", views.post_message, name="post_message"),
    path("rooms/<int:room_id>/image/", views.upload_image, name="upload_image"),
    re_path(
        r"^rooms/(?P<room_id>\d+)/requests/(?P<request_id>\d+)/(?P<decision>admit|deny)/$",
        views.decide_request,
        name="decide_request",
    ),
]
