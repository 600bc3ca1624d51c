"""The room listener's answer to a ``resync`` frame: as the page's script, it reads the room
page; the messages shown there count as delivered (late), not lost."""

from __future__ import annotations

import json

import locustfile


class FakeMember:
    """The Member the socket belongs to; its page is what the site would answer."""

    room = 1
    room_path = "/rooms/1/"

    def __init__(self, page: str | None) -> None:
        self.answer = page
        self.read: list[str] = []

    def page(self, path: str, name: str) -> str | None:
        self.read.append(name)
        return self.answer


def room_page(timepoint: str, tokens: list[str]) -> str:
    items = "".join(f'<li class="message">load test {t}</li>' for t in tokens)
    config = json.dumps({"roomId": 1, "timepoint": timepoint})
    script = f'<script id="page-config" type="application/json">{config}</script>'
    return f'<ul id="messages">{items}</ul>{script}'


def test_messages_on_the_reloaded_page_count_as_delivered(monkeypatch):
    deliveries = locustfile.Deliveries()
    monkeypatch.setattr(locustfile, "DELIVERIES", deliveries)
    listener = deliveries.add_listener("loadtest-member-1", covered_since=0.0)
    listener.connected = True
    for token in ("0123456789abcdef", "fedcba9876543210"):
        deliveries.sending(token)
        deliveries.accepted(token)
    user = FakeMember(room_page("200-0", ["0123456789abcdef", "fedcba9876543210"]))
    socket = locustfile.RoomSocket(user, listener, since="100-0")
    socket.handle(json.dumps({"type": "resync", "timepoint": "100-0", "payload": {}}))
    assert user.read == ["GET room page"]
    assert socket.since == "200-0"  # reconnects from the reloaded page's timepoint
    assert socket.ws is None and not listener.connected
    summary = deliveries.summary()
    assert (summary["resyncs"], summary["delivered"], summary["lost"]) == (1, 2, 0)


def test_a_failed_page_read_keeps_the_timepoint():
    user = FakeMember(None)
    listener = locustfile.Deliveries().add_listener("loadtest-member-1", covered_since=0.0)
    socket = locustfile.RoomSocket(user, listener, since="100-0")
    socket.reload()
    assert socket.since == "100-0"
