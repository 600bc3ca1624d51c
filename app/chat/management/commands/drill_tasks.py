"""Celery work whose effect can be counted, for the fault drills (playbooks/drills.yml,
drill celery_worker_killed).

    manage drill_tasks enqueue --marker M --count N [--size PX]
    manage drill_tasks count --marker M
    manage drill_tasks clean --marker M

enqueue: N private rooms titled "drill <M> <n>", owned by the account drill-owner (no
usable password), each given a PX-square noise image through services.set_room_image, which
enqueues one make_room_thumbnail task per room once it commits (private rooms: no purge
tasks). All rooms are made in one transaction, so the N tasks are enqueued together when it
commits: a queue the workers work through for a while, which the drill's kill lands in
(made one by one, each task ran as soon as its room existed, and all were done by the
kill). The task is idempotent (acks_late, reject_on_worker_lost: a worker lost mid-task gets
it redelivered). count: how many of those rooms have their thumbnail (the task's effect).
clean: delete the rooms and their files. Each prints one JSON line.
"""

from __future__ import annotations

import io
import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from PIL import Image

from chat import services
from chat.models import ChatRoom

OWNER = "drill-owner"
# The rooms' titles are "drill <marker> <n>" and titles hold 50 characters.
MARKER_MAX = 30


def noise_png(size: int) -> bytes:
    """A PNG of noise: it does not compress away, so the thumbnail costs real work."""
    out = io.BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def drill_rooms(marker: str):
    return ChatRoom.objects.filter(owner__username=OWNER, title__startswith=f"drill {marker} ")


class Command(BaseCommand):
    help = "Enqueue, count or clean the drills' thumbnail tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["enqueue", "count", "clean"])
        parser.add_argument("--marker", required=True, help="The drill run's name")
        parser.add_argument("--count", type=int, default=20, help="Tasks to enqueue")
        parser.add_argument("--size", type=int, default=1200, help="Image side in pixels")

    def handle(self, *args: Any, **options: Any) -> None:
        marker = options["marker"]
        if not marker or len(marker) > MARKER_MAX or " " in marker:
            raise CommandError(f"--marker must be 1-{MARKER_MAX} characters without spaces.")
        result = getattr(self, options["action"])(marker, options)
        self.stdout.write(json.dumps(result))

    def enqueue(self, marker: str, options: dict[str, Any]) -> dict[str, Any]:
        if options["count"] < 1 or not 16 <= options["size"] <= 4000:
            raise CommandError("--count must be at least 1 and --size 16-4000.")
        owner, _ = get_user_model().objects.get_or_create(username=OWNER)
        if owner.has_usable_password():
            owner.set_unusable_password()
            owner.save(update_fields=["password"])
        png = noise_png(options["size"])
        rooms = []
        with transaction.atomic():
            for n in range(1, options["count"] + 1):
                room = services.create_room(owner, f"drill {marker} {n}", is_public=False)
                services.set_room_image(room, SimpleUploadedFile(f"drill-{marker}-{n}.png", png))
                rooms.append(room.pk)
        return {"marker": marker, "enqueued": len(rooms), "rooms": rooms}

    def count(self, marker: str, options: dict[str, Any]) -> dict[str, Any]:
        rooms = drill_rooms(marker)
        return {
            "marker": marker,
            "rooms": rooms.count(),
            "done": rooms.exclude(thumbnail="").count(),
        }

    def clean(self, marker: str, options: dict[str, Any]) -> dict[str, Any]:
        deleted = 0
        for room in drill_rooms(marker):
            for field in (room.image, room.thumbnail):
                if field:
                    field.storage.delete(field.name)
            room.delete()
            deleted += 1
        return {"marker": marker, "deleted": deleted}
