"""What the monitoring host shows, asked the way an operator would: Graphite's render
API, Bugsink's REST API, the mail sink's Maildir and the central log. Used by the stack
scenario's tests; every query runs inside a container of the scenario."""

from __future__ import annotations

import base64
import json
import shlex
import time
import urllib.parse
from dataclasses import dataclass

from hpdtest import address, host, site_default, wait_for

GRAPHITE_PORT = site_default("site_ports")["graphite_web"]
BUGSINK_PORT = site_default("site_ports")["bugsink"]
BUGSINK_TOKEN_FILE = site_default("site_bugsink_api_token_file")
BUGSINK_PROJECT = site_default("site_bugsink_project")
MAILBOX = site_default("site_mail_sink_maildir").rstrip("/")
CENTRAL_LOG = site_default("site_central_log_dir")


@dataclass
class Monitoring:
    """The monitoring host `name`, queried from `client` (its pages are open to the admin
    allowlist only, so tests query them on the host itself)."""

    name: str
    client: str

    @property
    def address(self) -> str:
        return address(self.name)

    # --- Graphite ----------------------------------------------------------------------

    def render(self, target: str, window: str = "-10min") -> list[dict]:
        query = urllib.parse.urlencode({"target": target, "from": window, "format": "json"})
        url = f"http://{self.address}:{GRAPHITE_PORT}/render?{query}"
        return json.loads(host(self.client).check_output(f"curl -sSf {shlex.quote(url)}"))

    def values(self, target: str, window: str = "-10min") -> list[float]:
        """Every non-null datapoint of every series the target matches."""
        return [v for s in self.render(target, window) for v, _ in s["datapoints"] if v is not None]

    def png(self, target: str, window: str = "-10min") -> tuple[str, bytes]:
        """graphite-web's PNG of the target: the Content-Type and the image."""
        query = urllib.parse.urlencode(
            {"target": target, "from": window, "width": 800, "height": 400}
        )
        url = f"http://{self.address}:{GRAPHITE_PORT}/render?{query}"
        out = host(self.client).check_output(
            f"curl -sSf -o /tmp/graph.png -w '%{{content_type}}' {shlex.quote(url)}; echo; "
            "base64 -w0 /tmp/graph.png"
        )
        content_type, _, encoded = out.partition("\n")
        return content_type, base64.b64decode(encoded)

    # --- Bugsink -----------------------------------------------------------------------

    def bugsink(self, path: str) -> object:
        """GET on Bugsink's REST API with the role's token (read on the monitoring host,
        handed to curl on stdin so it is never on a command line)."""
        token = host(self.name).check_output(f"cat {BUGSINK_TOKEN_FILE}").strip()
        url = f"http://{self.address}:{BUGSINK_PORT}/api/canonical/0/{path}"
        out = host(self.client).check_output(
            f"printf 'Authorization: Bearer %s\\n' {shlex.quote(token)} | "
            f"curl -sSf -H @- {shlex.quote(url)}"
        )
        return json.loads(out)

    def bugsink_dsn(self, project: str = BUGSINK_PROJECT) -> str:
        """The project's DSN, as Bugsink itself has it."""
        code = (
            f"from projects.models import Project; print(Project.objects.get(name={project!r}).dsn)"
        )
        return (
            host(self.name)
            .check_output(
                "cd /etc/bugsink && runuser -u bugsink -- /opt/bugsink/venv/bin/bugsink-manage "
                f"shell -v 0 -c {shlex.quote(code)}"
            )
            .strip()
        )

    def bugsink_project(self, name: str = BUGSINK_PROJECT) -> int:
        projects = self.bugsink("projects/")["results"]  # type: ignore[index]
        return next(p["id"] for p in projects if p["name"] == name)

    def bugsink_releases(self, project_name: str = BUGSINK_PROJECT) -> list[str]:
        """The versions of the releases Bugsink knows for the project."""
        project = self.bugsink_project(project_name)
        results = self.bugsink(f"releases/?project={project}")["results"]  # type: ignore[index]
        return [release["version"] for release in results]

    def bugsink_event(
        self, text: str, project_name: str = BUGSINK_PROJECT, timeout: float = 60
    ) -> dict:
        """The newest event of an issue whose title holds `text`, once Bugsink has
        digested it ({} if none appeared in time)."""
        found: dict = {}
        project = self.bugsink_project(project_name)

        def digested() -> bool:
            issues = self.bugsink(f"issues/?project={project}")["results"]  # type: ignore[index]
            matching = [i["id"] for i in issues if text in i["calculated_value"]]
            if not matching:
                return False
            events = self.bugsink(f"events/?issue={matching[0]}")["results"]  # type: ignore[index]
            if not events:
                return False
            found.update(self.bugsink(f"events/{events[0]['id']}/"))  # type: ignore[arg-type]
            return True

        wait_for(digested, timeout=timeout, interval=1)
        return found

    # --- mail sink and central log -----------------------------------------------------

    def mails(self, needle: str) -> list[str]:
        """Every message in the sink's Maildir that contains `needle`."""
        mon = host(self.name)
        found = mon.run(f"grep -rlF -- {shlex.quote(needle)} {MAILBOX}/new {MAILBOX}/cur")
        return [mon.check_output(f"cat {path}") for path in found.stdout.split()]

    def log_lines(self, needle: str) -> list[str]:
        """Lines of the central all.log that contain `needle`."""
        out = host(self.name).run(f"grep -F -- {shlex.quote(needle)} {CENTRAL_LOG}/all.log")
        return out.stdout.splitlines()


def wait_for_values(monitoring: Monitoring, target: str, timeout: float = 60) -> list[float]:
    """Poll the render API until the target has datapoints; return them."""
    values: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        values = monitoring.values(target)
        if values:
            break
        time.sleep(2)
    return values
