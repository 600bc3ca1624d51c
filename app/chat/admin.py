from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat import services
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
    # Status changes go through the same service as the room page (membership, events),
    # so the field itself is read-only here.
    readonly_fields = ("status", "owner_notified_at")
    actions = ("admit", "deny")

    @admin.action(description="Admit the selected pending requests")
    def admit(self, request: HttpRequest, queryset: QuerySet[ChatRoomJoinRequest]) -> None:
        done = sum(services.decide_join_request(jr, admit=True) for jr in queryset)
        self.message_user(request, f"Admitted {done} request(s).")

    @admin.action(description="Deny the selected pending requests")
    def deny(self, request: HttpRequest, queryset: QuerySet[ChatRoomJoinRequest]) -> None:
        done = sum(services.decide_join_request(jr, admit=False) for jr in queryset)
        self.message_user(request, f"Denied {done} request(s).")
