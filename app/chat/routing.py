from django.urls import re_path

from chat import consumers

websocket_urlpatterns = [
    re_path(r"^ws/room/(?P<room_id>\d+)/?$", consumers.RoomConsumer.as_asgi()),
    re_path(
        r"^ws/user/(?P<user_id>\d+)/(?P<timepoint>\d+-\d+)/?$",
        consumers.UserConsumer.as_asgi(),
    ),
]
