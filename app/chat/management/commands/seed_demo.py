"""Create a small, working chat for a new environment: two users and a public room.

Idempotent: users, the room and its first messages are created once; later runs only
reset the passwords to the ones given and print the same ids. Prints JSON so deploy
tooling and end-to-end tests can read the ids.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from chat import services
from chat.models import ChatRoom

DEMO_ROOM_TITLE = "Welcome"
DEMO_MESSAGES = (
    "Welcome to the chat! This room is public: anyone can read its transcript.",
    "Sign up, create a room of your own, and share its join code with friends.",
)


class Command(BaseCommand):
    help = "Create demo users and a public room with messages (safe to repeat)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", default="demo")
        parser.add_argument("--member", default="guest")
        parser.add_argument("--password", required=True, help="Password for both users")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        with transaction.atomic():
            users = []
            for name in (options["owner"], options["member"]):
                user, _ = user_model.objects.get_or_create(username=name)
                user.set_password(options["password"])
                user.save(update_fields=["password"])
                users.append(user)
            owner, member = users
            room = ChatRoom.objects.filter(owner=owner, title=DEMO_ROOM_TITLE).first()
            created = room is None
            if room is None:
                room = services.create_room(owner, DEMO_ROOM_TITLE, is_public=True)
                for text in DEMO_MESSAGES:
                    services.post_message(room, owner, text)
            room.members.add(member)
        self.stdout.write(
            json.dumps(
                {
                    "room": room.pk,
                    "transcript": room.get_transcript_url(),
                    "owner": owner.username,
                    "member": member.username,
                    # Lets a playbook report "changed" only on the run that seeded.
                    "created": created,
                }
            )
        )
