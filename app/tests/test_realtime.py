"""WebSockets through the real ASGI application, the real Redis channel layer and the
real Redis event streams (Channels' WebsocketCommunicator drives the protocol)."""

from __future__ import annotations

import asyncio
import json
import re
import socket as sockets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client, override_settings

from chat import events, services
from chat.models import ChatMessage, ChatRoom
from chat_site.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

QUIET = 0.1  # seconds of silence that count as "nothing more arrives"


def _session_cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def open_socket(
    path: str, user: User | None = None, origin: bytes = b"http://testserver"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(_session_cookie)(user)))
    return WebsocketCommunicator(application, path, headers=headers)


async def connect(path: str, user: User | None = None) -> WebsocketCommunicator:
    communicator = await open_socket(path, user)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def close_code(path: str, user: User | None = None) -> int:
    communicator = await open_socket(path, user)
    connected, _ = await communicator.connect()
    assert connected  # accepted first, so browsers can read the close code
    output = await communicator.receive_output(timeout=2)
    assert output["type"] == "websocket.close"
    await communicator.disconnect()
    return output["code"]


async def frames(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    """Everything the socket sends until it has been quiet for QUIET seconds."""
    received = []
    while not await communicator.receive_nothing(timeout=QUIET):
        received.append(await communicator.receive_json_from())
    return received


def page_timepoint(html: str) -> str:
    config = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', html)
    assert config is not None
    return json.loads(config.group(1))["timepoint"]


# --- access control ---------------------------------------------------------------------


async def test_close_codes(room: ChatRoom, member: User, stranger: User) -> None:
    assert await close_code(f"/ws/room/{room.pk}") == 4401
    assert await close_code(f"/ws/user/{member.pk}/0-0") == 4401
    assert await close_code(f"/ws/room/{room.pk}", stranger) == 4403
    assert await close_code(f"/ws/user/{member.pk}/0-0", stranger) == 4403
    assert await close_code("/ws/room/987654321", member) == 4404
    assert await close_code(f"/ws/room/{room.pk}?since=yesterday", member) == 4400


async def test_foreign_origin_is_refused(room: ChatRoom, member: User) -> None:
    communicator = await open_socket(f"/ws/room/{room.pk}", member, origin=b"http://evil.test")
    connected, _ = await communicator.connect()
    assert not connected


async def test_ping_pong(room: ChatRoom, member: User) -> None:
    communicator = await connect(f"/ws/room/{room.pk}", member)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.send_json_to({"type": "something else"})
    assert await communicator.receive_nothing(timeout=QUIET)
    await communicator.disconnect()


# --- delivery -----------------------------------------------------------------------------


async def test_new_messages_reach_every_member(room: ChatRoom, owner: User, member: User) -> None:
    owner_socket = await connect(f"/ws/room/{room.pk}", owner)
    member_socket = await connect(f"/ws/room/{room.pk}", member)
    message = await sync_to_async(services.post_message)(room, member, "<b>hi</b>")
    for socket in (owner_socket, member_socket):
        received = await frames(socket)
        assert [f["type"] for f in received] == ["message.created"]
        assert received[0]["payload"]["id"] == message.pk
        assert received[0]["payload"]["message"] == "<b>hi</b>"  # the client uses textContent
        assert events.is_valid_timepoint(received[0]["timepoint"])
        await socket.disconnect()


async def test_join_request_events_reach_the_owner_and_no_one_else(
    room: ChatRoom, owner: User, member: User, stranger: User
) -> None:
    owner_room = await connect(f"/ws/room/{room.pk}", owner)
    member_room = await connect(f"/ws/room/{room.pk}", member)
    owner_user = await connect(f"/ws/user/{owner.pk}/0-0", owner)
    member_user = await connect(f"/ws/user/{member.pk}/0-0", member)
    requester = await connect(f"/ws/user/{stranger.pk}/0-0", stranger)

    join_request = await sync_to_async(services.request_to_join)(stranger, room)
    created = await frames(owner_room)
    assert [f["type"] for f in created] == ["join_request.created"]
    assert created[0]["payload"]["user"] == {"id": stranger.pk, "username": "sam"}
    assert await frames(member_room) == []
    assert await frames(member_user) == []
    assert await frames(owner_user) == []
    # The requester's own topic follows their request.
    assert [f["type"] for f in await frames(requester)] == ["join_request.created"]

    await sync_to_async(services.decide_join_request)(join_request, admit=True)
    assert [f["type"] for f in await frames(owner_room)] == ["join_request.admitted"]
    assert await frames(member_room) == []
    assert await frames(member_user) == []
    admitted = await frames(requester)
    assert [f["type"] for f in admitted] == ["join_request.admitted"]
    assert admitted[0]["payload"]["room"] == {"id": room.pk, "title": room.title}
    for socket in (owner_room, member_room, owner_user, member_user, requester):
        await socket.disconnect()


@pytest.mark.parametrize("when", ["before_connect", "during_connect"])
async def test_event_between_render_and_connect_is_delivered_once(
    room: ChatRoom, owner: User, member: User, when: str
) -> None:
    """The page is rendered, a message is posted, then (or while) the page's socket
    connects with the timepoint embedded in the page: the message arrives exactly once,
    whether it comes from the replay, the live group, or both."""
    client = Client()
    await sync_to_async(client.force_login)(member)
    page = await sync_to_async(client.get)(f"/rooms/{room.pk}/")
    assert page.status_code == 200
    timepoint = page_timepoint(page.text)
    path = f"/ws/room/{room.pk}?since={timepoint}"

    post = sync_to_async(services.post_message)
    if when == "before_connect":
        message = await post(room, owner, "posted before connect")
        socket = await connect(path, member)
    else:
        socket = await open_socket(path, member)
        (connected, _), message = await asyncio.gather(
            socket.connect(), post(room, owner, "posted during connect")
        )
        assert connected
    received = await frames(socket)
    ids = [f["payload"]["id"] for f in received if f["type"] == "message.created"]
    assert ids == [message.pk]
    assert message.message not in page.text

    # And a message after the connect is delivered once as well.
    later = await post(room, owner, "after connect")
    assert [f["payload"]["id"] for f in await frames(socket)] == [later.pk]
    await socket.disconnect()


async def test_reconnect_replays_from_the_last_timepoint(
    room: ChatRoom, owner: User, member: User
) -> None:
    await sync_to_async(services.post_message)(room, owner, "zero")
    socket = await connect(f"/ws/room/{room.pk}", member)  # no timepoint: live events only
    one = await sync_to_async(services.post_message)(room, owner, "one")
    first = await frames(socket)
    assert [f["payload"]["id"] for f in first] == [one.pk]
    await socket.disconnect()
    last_seen = first[-1]["timepoint"]
    missed = [
        await sync_to_async(services.post_message)(room, owner, text) for text in ("two", "three")
    ]
    socket = await connect(f"/ws/room/{room.pk}?since={last_seen}", member)
    replayed = await frames(socket)
    assert [f["payload"]["id"] for f in replayed] == [m.pk for m in missed]
    await socket.disconnect()


async def test_events_broadcast_out_of_order_arrive_in_stream_order(
    room: ChatRoom, owner: User, member: User
) -> None:
    """Two processes append their events in one order and broadcast them in the other.
    The socket still sends them in stream order, each once, so a client that resumes
    from the newest timepoint it saw has missed nothing."""
    stream, group = events.room_stream(room.pk), events.room_group(room.pk)
    since = await sync_to_async(events.current_timepoint)(stream)
    socket = await connect(f"/ws/room/{room.pk}?since={since}", member)
    append, broadcast = sync_to_async(events.append), sync_to_async(events.broadcast)
    first = await append(stream, "message.created", {"id": 1}, "members")
    second = await append(stream, "message.created", {"id": 2}, "members")
    assert second[1] == first[0]  # each knows the entry before it
    await broadcast(group, "message.created", {"id": 2}, "members", *second)
    await broadcast(group, "message.created", {"id": 1}, "members", *first)
    received = await frames(socket)
    assert [(f["payload"]["id"], f["timepoint"]) for f in received] == [
        (1, first[0]),
        (2, second[0]),
    ]
    await socket.disconnect()


async def test_user_page_replays_what_happened_after_render(
    room: ChatRoom, owner: User, stranger: User
) -> None:
    client = Client()
    await sync_to_async(client.force_login)(stranger)
    join_request = await sync_to_async(services.request_to_join)(stranger, room)
    page = await sync_to_async(client.get)("/home/")
    timepoint = page_timepoint(page.text)
    assert "waiting to be admitted" in page.text
    await sync_to_async(services.decide_join_request)(join_request, admit=False)
    socket = await connect(f"/ws/user/{stranger.pk}/{timepoint}", stranger)
    received = await frames(socket)
    assert [f["type"] for f in received] == ["join_request.denied"]
    await socket.disconnect()


async def test_trimmed_history_asks_the_client_to_reload(
    room: ChatRoom, owner: User, member: User
) -> None:
    timepoint = await sync_to_async(events.current_timepoint)(events.room_stream(room.pk))
    for text in ("a", "b", "c"):
        await sync_to_async(services.post_message)(room, owner, text)
    removed = await sync_to_async(events.trim_streams)(older_than_ms=2**62)
    assert removed == 2  # the newest entry is always kept
    socket = await connect(f"/ws/room/{room.pk}?since={timepoint}", member)
    received = await frames(socket)
    assert received[0]["type"] == "resync"
    await socket.disconnect()
    # A client that is up to date is not asked to reload.
    newest = await sync_to_async(events.current_timepoint)(events.room_stream(room.pk))
    socket = await connect(f"/ws/room/{room.pk}?since={newest}", member)
    assert await frames(socket) == []
    await socket.disconnect()


@contextmanager
def events_redis_unreachable() -> Iterator[None]:
    """Publishing fails for real while inside: the events client points at a closed port."""
    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events.redis_client.cache_clear()
    try:
        with override_settings(CHAT_EVENTS_REDIS_URL=f"redis://127.0.0.1:{port}/0"):
            yield
    finally:
        events.redis_client.cache_clear()


async def test_message_stored_while_redis_was_unreachable_asks_the_client_to_reload(
    room: ChatRoom, owner: User, member: User
) -> None:
    post = sync_to_async(services.post_message)
    await post(room, owner, "published")
    since = await sync_to_async(events.current_timepoint)(events.room_stream(room.pk))
    with events_redis_unreachable():
        unpublished = await post(room, owner, "stored only")
    assert await ChatMessage.objects.filter(pk=unpublished.pk).aexists()
    stream_after = await sync_to_async(events.current_timepoint)(events.room_stream(room.pk))
    assert stream_after == since  # the stream never got it: the replay alone finds no gap
    socket = await connect(f"/ws/room/{room.pk}?since={since}", member)
    received = await frames(socket)
    assert received[0] == {"type": "resync", "timepoint": since, "payload": {}}
    # It is published now, late: live sockets get it, and the reloaded page's timepoint
    # is after it, so the page is not asked to reload again.
    assert [f["payload"]["id"] for f in received[1:]] == [unpublished.pk]
    await socket.disconnect()
    reloaded = await sync_to_async(events.current_timepoint)(events.room_stream(room.pk))
    socket = await connect(f"/ws/room/{room.pk}?since={reloaded}", member)
    assert await frames(socket) == []
    await socket.disconnect()


async def test_reconnect_with_nothing_unpublished_is_not_asked_to_reload(
    room: ChatRoom, owner: User, member: User
) -> None:
    """Messages stored within the check's margin before the timepoint are in the stream:
    the client gets the replay, not a reload."""
    post = sync_to_async(services.post_message)
    await post(room, owner, "before")
    since = await sync_to_async(events.current_timepoint)(events.room_stream(room.pk))
    after = [await post(room, owner, text) for text in ("after 1", "after 2")]
    socket = await connect(f"/ws/room/{room.pk}?since={since}", member)
    received = await frames(socket)
    assert [(f["type"], f["payload"]["id"]) for f in received] == [
        ("message.created", m.pk) for m in after
    ]
    await socket.disconnect()


# --- resilience ---------------------------------------------------------------------------


async def test_sockets_work_after_redis_drops_the_layers_connections(
    room: ChatRoom, owner: User, member: User
) -> None:
    """A partition or a Redis restart leaves dead connections in the layer's pool; the
    next socket must get a fresh one instead of a 500 on its handshake."""
    owner_socket = await connect(f"/ws/room/{room.pk}", owner)
    await owner_socket.disconnect()
    killed = await sync_to_async(events.redis_client().client_kill_filter)(
        _type="normal", skipme=True
    )
    assert killed >= 1
    member_socket = await connect(f"/ws/room/{room.pk}", member)
    message = await sync_to_async(services.post_message)(room, owner, "still here")
    received = await frames(member_socket)
    assert [f["payload"]["id"] for f in received] == [message.pk]
    await member_socket.disconnect()
