"""The load test's posts of one run, for the fault drills (playbooks/drills.yml, drill
postgresql_restarted): every message whose text carries the run's marker
(loadtest/locustfile.py adds LOADTEST_MARKER after each post's token).

    manage drill_messages --marker M

Prints one JSON line: {"marker": M, "messages": count, "tokens": [token, ...]}; the drill
checks that every post Locust saw accepted is among them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.models import ChatMessage

# As loadtest/locustfile.py writes them: "load test <16 hex digits> <marker>".
TOKEN_RE = re.compile(r"\bload test ([0-9a-f]{16})\b")


class Command(BaseCommand):
    help = "List the tokens of the load test's messages carrying a run's marker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--marker", required=True, help="The drill run's marker")

    def handle(self, *args: Any, **options: Any) -> None:
        marker = options["marker"]
        if len(marker) < 4:
            raise CommandError("--marker must have at least 4 characters (it is searched for).")
        texts = ChatMessage.objects.filter(message__endswith=f" {marker}").values_list(
            "message", flat=True
        )
        tokens = sorted({m.group(1) for text in texts if (m := TOKEN_RE.search(text))})
        self.stdout.write(json.dumps({"marker": marker, "messages": len(texts), "tokens": tokens}))
