from django.contrib import admin

from chat.models import ChatMessage, ChatRoom, ChatRoomJoinRequest


@admin.register(ChatRoom)
class ChatRoomAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "is_public", "join_code", "updated")
    list_filter = ("is_public",)
    search_fields = ("title", "join_code", "owner__username")
    raw_id_fields = ("owner",)
    filter_horizontal = ("members",)
    list_select_related = ("owner",)


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    list_display = ("room", "sender", "posted", "message")
    raw_id_fields = ("room", "sender")
    list_select_related = ("room", "sender")
    date_hierarchy = "posted"


@admin.register(ChatRoomJoinRequest)
class ChatRoomJoinRequestAdmin(admin.ModelAdmin):
    list_display = ("room", "user", "status", "created", "updated")
    list_filter = ("status",)
    raw_id_fields = ("room", "user")
    list_select_related = ("room", "user")
