from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from chat import events, queries, services
from chat.forms import JoinForm, MessageForm, RoomForm, RoomImageForm
from chat.models import ChatRoom, ChatRoomJoinRequest
from ops import ratelimit

View = Callable[..., HttpResponse]

JOIN_LIMITS = (
    ratelimit.Limit("join.account", ratelimit.user_key),
    ratelimit.Limit("join.ip", ratelimit.ip_key),
)
# Messages and images share these counters: both are writes that fan out to every member.
POST_LIMITS = (
    ratelimit.Limit("post.account", ratelimit.user_key),
    ratelimit.Limit("post.ip", ratelimit.ip_key),
)


def private_page(view: View) -> View:
    """Per-user pages: no shared cache may keep them; they differ per session cookie."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        patch_cache_control(response, private=True, no_cache=True, must_revalidate=True)
        patch_vary_headers(response, ["Cookie"])
        return response

    return wrapper


def public_page(view: View) -> View:
    """Anonymous, shareable pages (Varnish caches them). The view and its template must
    not touch the session, the user or the CSRF token, so no cookie is ever set."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 200:
            patch_cache_control(response, public=True, max_age=settings.CHAT_TRANSCRIPT_MAX_AGE)
        return response

    return wrapper


def wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _get_room_for_member(request: HttpRequest, room_id: int) -> ChatRoom:
    room = get_object_or_404(ChatRoom.objects.select_related("owner"), pk=room_id)
    if not services.is_member(request.user, room):
        raise PermissionDenied("Only members of this room may do that.")
    return room


# --- public, cacheable pages ---------------------------------------------------------


@require_safe
@public_page
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/index.html", {"public_rooms": queries.public_rooms()})


@require_safe
@public_page
def transcript(request: HttpRequest, room_id: int) -> HttpResponse:
    room = ChatRoom.objects.filter(pk=room_id, is_public=True).first()
    if room is None:
        raise Http404("No public room with that number.")
    return render(
        request,
        "chat/transcript.html",
        {"room": room, "chat_messages": lambda: queries.recent_messages(room)},
    )


# --- per-user pages --------------------------------------------------------------------


@require_safe
@login_required
@private_page
def home(request: HttpRequest) -> HttpResponse:
    # Capture the timepoint before reading: anything that changes after this moment
    # is replayed to the page's socket.
    timepoint = events.current_timepoint(events.user_stream(request.user.pk))
    return render(
        request,
        "chat/home.html",
        {
            "rooms": queries.user_room_list(request.user),
            "timepoint": timepoint,
            "join_form": JoinForm(),
            "page_config": {
                "userId": request.user.pk,
                "timepoint": timepoint,
                "roomUrlTemplate": reverse("chat:room", kwargs={"room_id": 0}),
            },
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@private_page
def create_room(request: HttpRequest) -> HttpResponse:
    form = RoomForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            room = services.create_room(
                request.user, form.cleaned_data["title"], form.cleaned_data["is_public"]
            )
            return redirect(room)
        return render(request, "chat/create_room.html", {"form": form}, status=400)
    return render(request, "chat/create_room.html", {"form": form})


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@private_page
@ratelimit.limited(*JOIN_LIMITS)
def join_by_code(request: HttpRequest) -> HttpResponse:
    form = JoinForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            room = ChatRoom.objects.filter(join_code=form.cleaned_data["code"]).first()
            if room is None:
                form.add_error("code", "No room has that join code. Check it and try again.")
            else:
                join_request = services.request_to_join(request.user, room)
                if join_request is None:  # already a member
                    return redirect(room)
                return redirect("chat:home")
        return render(request, "chat/join.html", {"form": form}, status=400)
    return render(request, "chat/join.html", {"form": form})


@require_safe
@login_required
@private_page
def room_page(request: HttpRequest, room_id: int) -> HttpResponse:
    timepoint = events.current_timepoint(events.room_stream(room_id))
    room = get_object_or_404(ChatRoom.objects.select_related("owner"), pk=room_id)
    if not services.is_member(request.user, room):
        if room.is_public:
            return HttpResponseRedirect(room.get_transcript_url())
        raise PermissionDenied("This room is private. Ask its owner for the join code.")
    return _render_room(request, room, timepoint)


def _render_room(
    request: HttpRequest,
    room: ChatRoom,
    timepoint: str,
    *,
    message_form: MessageForm | None = None,
    image_form: RoomImageForm | None = None,
    status: int = 200,
) -> HttpResponse:
    is_owner = room.owner_id == request.user.pk
    context = {
        "room": room,
        "is_owner": is_owner,
        "timepoint": timepoint,
        "chat_messages": lambda: queries.recent_messages(room),
        "members": queries.room_members(room),
        "pending_requests": queries.pending_requests(room) if is_owner else [],
        "message_form": message_form or MessageForm(),
        "image_form": image_form or RoomImageForm(),
        "page_config": {
            "roomId": room.pk,
            "isOwner": is_owner,
            "timepoint": timepoint,
            "decideUrlTemplate": reverse(
                "chat:decide_request",
                kwargs={"room_id": room.pk, "request_id": 0, "decision": "admit"},
            ),
        },
    }
    return render(request, "chat/room.html", context, status=status)


@require_POST
@login_required
@private_page
@ratelimit.limited(*POST_LIMITS, as_json=wants_json)
def post_message(request: HttpRequest, room_id: int) -> HttpResponse:
    room = _get_room_for_member(request, room_id)
    form = MessageForm(request.POST)
    if not form.is_valid():
        if wants_json(request):
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        timepoint = events.current_timepoint(events.room_stream(room.pk))
        return _render_room(request, room, timepoint, message_form=form, status=400)
    message = services.post_message(room, request.user, form.cleaned_data["message"])
    if wants_json(request):
        return JsonResponse({"message": message.as_event()}, status=201)
    return HttpResponseRedirect(room.get_absolute_url(), status=303)


@require_POST
@login_required
@private_page
def decide_request(
    request: HttpRequest, room_id: int, request_id: int, decision: str
) -> HttpResponse:
    room = get_object_or_404(ChatRoom, pk=room_id)
    if room.owner_id != request.user.pk:
        raise PermissionDenied("Only the room's owner may admit or deny requests.")
    join_request = get_object_or_404(ChatRoomJoinRequest, pk=request_id, room=room)
    changed = services.decide_join_request(join_request, admit=decision == "admit")
    if wants_json(request):
        return JsonResponse(
            {"id": join_request.pk, "status": join_request.status, "changed": changed}
        )
    return HttpResponseRedirect(room.get_absolute_url(), status=303)


@require_POST
@login_required
@private_page
@ratelimit.limited(*POST_LIMITS)
def upload_image(request: HttpRequest, room_id: int) -> HttpResponse:
    room = get_object_or_404(ChatRoom.objects.select_related("owner"), pk=room_id)
    if room.owner_id != request.user.pk:
        raise PermissionDenied("Only the room's owner may change its image.")
    form = RoomImageForm(request.POST, request.FILES)
    if not form.is_valid():
        timepoint = events.current_timepoint(events.room_stream(room.pk))
        return _render_room(request, room, timepoint, image_form=form, status=400)
    services.set_room_image(room, form.cleaned_data["image"])
    return HttpResponseRedirect(reverse("chat:room", kwargs={"room_id": room.pk}), status=303)
