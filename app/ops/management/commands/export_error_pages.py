"""Write flat, self-contained 404/500/503 pages for HAProxy and Varnish.

The pages are rendered from the same templates Django uses, with an empty context,
so they need no database, cache, session or static file server::

    python manage.py export_error_pages /srv/chat/shared/errors
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.template import loader

PAGES = {"404": "Not Found", "500": "Internal Server Error", "503": "Service Unavailable"}
_EXTERNAL = re.compile(r"""(?:src|href)=["'](?!/["'])(?!#)([^"']+)["']""", re.IGNORECASE)


class Command(BaseCommand):
    help = (
        "Write 404/500/503 pages into a directory: NNN.html (plain HTML, for Varnish and "
        "any web server) and NNN.http (a complete HTTP response, for HAProxy errorfile)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)

    def handle(self, *args: Any, directory: Path, **options: Any) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for code, reason in PAGES.items():
            html = loader.get_template(f"{code}.html").render({})
            external = _EXTERNAL.findall(html)
            if external:
                raise CommandError(f"{code}.html refers to external resources: {external}")
            target = directory / f"{code}.html"
            target.write_text(html, encoding="utf-8")
            body = html.encode("utf-8")
            head = (
                f"HTTP/1.0 {code} {reason}\r\n"
                "Cache-Control: no-cache\r\n"
                "Connection: close\r\n"
                "Content-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode("ascii")
            (directory / f"{code}.http").write_bytes(head + body)
            self.stdout.write(f"wrote {target} and {code}.http")
