"""Create the load test's accounts and room (loadtest/locustfile.py, playbooks/loadtest.yml).

    manage seed_loadtest --members N --newcomers M --password P

Users ``loadtest-member-1..N`` and ``loadtest-newcomer-1..M`` with the given password, and
one public room, "Load test", owned by loadtest-member-1 with every member in it. Newcomers
are not members: they ask to join with the room's code during the test, so the requests
they made in an earlier run are cleared and any of them admitted since is taken out again.

Idempotent: the users and the room are created once; later runs reset the passwords and
the room's members and print the same ids. Prints one JSON line: the room's paths and join
code, the account names, and a new session key logged in as the room's owner (the
logged-in page figures send it as the session cookie).
"""

from __future__ import annotations

import json
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.http import HttpRequest

from chat import services
from chat.models import ChatRoom, ChatRoomJoinRequest

ROOM_TITLE = "Load test"
MEMBER_PREFIX = "loadtest-member-"
NEWCOMER_PREFIX = "loadtest-newcomer-"


def logged_in_session(user: AbstractBaseUser) -> str:
    """A new session logged in as ``user``, made by Django's own login() on a bare request
    (as django.test.Client.force_login does), so the session holds exactly what a login
    through the form leaves there and the auth middleware accepts it. Returns its key."""
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    request.session.save()
    return str(request.session.session_key)


class Command(BaseCommand):
    help = "Create the load test's accounts and public room (safe to repeat)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--members", type=int, default=8, help="Accounts in the room")
        parser.add_argument("--newcomers", type=int, default=2, help="Accounts that ask to join it")
        parser.add_argument("--password", required=True, help="Password for every account")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["members"] < 1:
            raise CommandError("--members must be at least 1: the first member owns the room.")
        if options["newcomers"] < 0:
            raise CommandError("--newcomers cannot be negative.")
        password = options["password"]
        with transaction.atomic():
            members = [
                self.account(f"{MEMBER_PREFIX}{n}", password)
                for n in range(1, options["members"] + 1)
            ]
            newcomers = [
                self.account(f"{NEWCOMER_PREFIX}{n}", password)
                for n in range(1, options["newcomers"] + 1)
            ]
            owner = members[0]
            room = ChatRoom.objects.filter(owner=owner, title=ROOM_TITLE).first()
            created = room is None
            if room is None:
                room = services.create_room(owner, ROOM_TITLE, is_public=True)
            current = set(room.members.values_list("pk", flat=True))
            joining = [user for user in members if user.pk not in current]
            leaving = [user for user in newcomers if user.pk in current]
            services.set_members(room, joining=joining, leaving=leaving)
            ChatRoomJoinRequest.objects.filter(room=room, user__in=newcomers).delete()
        self.stdout.write(
            json.dumps(
                {
                    "room": room.pk,
                    "room_path": room.get_absolute_url(),
                    "transcript": room.get_transcript_url(),
                    "join_code": room.join_code,
                    "members": [user.get_username() for user in members],
                    "newcomers": [user.get_username() for user in newcomers],
                    # New on every run: the password reset above ends the sessions of
                    # earlier runs (their auth hash no longer matches).
                    "session": logged_in_session(owner),
                    # Lets a playbook report "changed" only on the run that seeded.
                    "created": created,
                }
            )
        )

    def account(self, username: str, password: str) -> AbstractBaseUser:
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.save(update_fields=["password"])
        return user
