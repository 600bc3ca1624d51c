"""The pre-launch checklist (playbooks/checklist.yml) against the converged staging stack:
broken on purpose in seven separate ways at once, it fails exactly the seven items that match,
each with evidence naming the cause; put back, it passes again.

The breakages are edits of the live configuration (each file kept and put back, each
service reloaded), not converges, so the whole test costs two checklist runs. stack-client
(group clients) is the checklist's probe host, off the admin allowlist."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from hpdtest import address, host, run_playbook, wait_for
from stack import (
    APP_CURRENT,
    CACHE,
    DB,
    LB,
    MONITORING,
    PORTS,
    REACH_FROM_CONTROLLER,
    VARNISH,
    WEB_SERVERS,
    WORKER,
    varnish_backends,
)

RELOAD = "touch /run/uwsgi/{app}.reload"
# The stack skips the first Lynis audits (CPU); the index item fails for the missing report
# on every host that has none. test_data_common runs the audit and checks the index.
NO_LYNIS_REPORT = "no Lynis report"


def checklist(reports: Path, *options: str) -> dict[str, list[dict]]:
    """Warm the cache, then run the checklist from this machine (as `make checklist` does);
    its items by id (one per host where per host)."""
    reach = ["-e", json.dumps(REACH_FROM_CONTROLLER)]
    warm = run_playbook("playbooks/warm.yml", *reach, timeout=120)
    assert warm.returncode == 0, warm.stdout[-2000:]
    result = run_playbook(
        "playbooks/checklist.yml",
        "-e",
        f"checklist_reports_dir={reports}",
        *reach,
        "-e",
        json.dumps({"checklist_testssl_accepted": {"cert_revocation": "the test CA has no CRL"}}),
        *options,
        timeout=600,
    )
    report = reports / "checklist-staging.json"
    assert report.exists(), result.stdout[-3000:]
    (reports / "run.log").write_text(result.stdout + result.stderr)
    items = json.loads(report.read_text())
    by_id: dict[str, list[dict]] = {}
    for item in items:
        by_id.setdefault(item["id"], []).append(item)
    assert by_id, result.stdout[-3000:]
    return by_id


def items_status(reports: Path, item_id: str) -> set[str]:
    items = json.loads((reports / "checklist-staging.json").read_text())
    return {item["status"] for item in items if item["id"] == item_id}


def stops(reports: Path) -> list[str]:
    """The run's failed and unreachable tasks (the checklist-ran items name the host, these
    say why): the lines kept from the run's output."""
    lines = (reports / "run.log").read_text().splitlines()
    return [line[:500] for line in lines if line.startswith("fatal:") or "UNREACHABLE" in line]


def failed(items: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The failed items, leaving out the Lynis items that fail for want of a report, and
    the warm-cache item: the stack's pages live 10 s (CHAT_TRANSCRIPT_MAX_AGE, molecule.yml),
    less than the time from the warm-up to the check."""
    out = {}
    for item_id, entries in items.items():
        bad = [
            e
            for e in entries
            if e["status"] == "FAIL"
            and item_id != "launch-cache-warm"
            and not (item_id == "servers-lynis" and NO_LYNIS_REPORT in e["evidence"]["value"])
        ]
        if bad:
            out[item_id] = bad
    return out


class Breakage:
    """Edits of live files, each kept beside itself and put back, with the reloads."""

    def __init__(self) -> None:
        self.undo: list[tuple[str, str]] = []

    def edit(self, name: str, path: str, sed: str, reload: str) -> None:
        # A copy per edit: a file edited twice is put back in two steps, newest first.
        kept = f"{path}.checklist-{len(self.undo)}"
        # The edit must change the file: a pattern that no longer matches fails here.
        host(name).run_expect(
            [0], f"cp -p {path} {kept} && sed -i {sed} {path} && ! cmp -s {kept} {path} && {reload}"
        )
        self.undo.append((name, f"mv {kept} {path} && {reload}"))

    def run(self, name: str, command: str, undo: str) -> None:
        host(name).run_expect([0], command)
        self.undo.append((name, undo))

    def restore(self) -> None:
        for name, command in reversed(self.undo):
            host(name).run_expect([0], command)
        self.undo.clear()


def release_file(name: str, pattern: str) -> str:
    return host(name).check_output(f"find -L {APP_CURRENT}/ -path '{pattern}' | head -1").strip()


def shows_debug_page(name: str) -> bool:
    """Whether the web server's uWSGI answers a missing page with Django's debug 404 (the
    reload has taken the edited settings) rather than the site's own."""
    out = host(name).run(
        f"curl -s -H 'X-Forwarded-Proto: https' "
        f"http://{address(name)}:{PORTS['uwsgi']}/checklist-test-missing/"
    )
    return "Using the URLconf" in out.stdout


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checklist")


def test_the_checklist_fails_exactly_the_broken_items_and_passes_once_put_back(reports) -> None:
    broken = Breakage()
    try:
        # DEBUG on: the release's deploy settings say so, on every web server.
        for web in WEB_SERVERS:
            settings = release_file(web, "*/site-packages/chat_site/settings/deploy.py")
            broken.edit(
                web, settings, "'s/^DEBUG = False$/DEBUG = True/'", RELOAD.format(app="chat")
            )
        # The admin's restriction dropped at all three layers (the allowlist itself kept, so
        # the health answer, which follows it, stays bare): HAProxy's deny rule deleted, the
        # VCL's admin test made never true, the app's allowlist opened to every address.
        broken.edit(
            LB,
            "/etc/haproxy/haproxy.cfg",
            "'/^    http-request deny deny_status 403 if admin_path !admin_allowed$/d'",
            "systemctl reload haproxy",
        )
        broken.edit(
            VARNISH,
            "/etc/varnish/default.vcl",
            '\'s/^\\(        std.ip(req.http.X-Hpd-Client, "0.0.0.0", false) '
            '!~ admin_allowlist\\)) {$/\\1 \\&\\& req.url == "") {/\'',
            "systemctl reload varnish",
        )
        for web in WEB_SERVERS:
            broken.edit(
                web,
                f"{APP_CURRENT}/app.env",
                "'s#^ADMIN_ALLOWLIST=.*$#ADMIN_ALLOWLIST=0.0.0.0/0,::/0#'",
                RELOAD.format(app="chat"),
            )
        # A placeholder SECRET_KEY where the release's manage command reads it (no reload:
        # the running workers keep the good one, as after an edit nobody deployed).
        placeholder = "CHANGEME" + secrets.token_hex(32)
        broken.edit(
            WEB_SERVERS[0],
            f"{APP_CURRENT}/app.env",
            f"'s#^SECRET_KEY=.*$#SECRET_KEY={placeholder}#'",
            "true",
        )
        # TLS 1.0 (and the SHA-1 suites it needs) at the balancer.
        broken.edit(
            LB,
            "/etc/haproxy/haproxy.cfg",
            "-e 's/ssl-min-ver TLSv1.2/ssl-min-ver TLSv1.0/' "
            "-e 's/^\\(    ssl-default-bind-ciphers .*\\)$/\\1:ECDHE-ECDSA-AES128-SHA:"
            "ECDHE-RSA-AES128-SHA:@SECLEVEL=0/'",
            "systemctl reload haproxy",
        )
        # The mail relay (the monitoring host's MTA) stopped. Put back, the app hosts' MTAs
        # are restarted too: their queue managers hold the relay as dead for minutes.
        for sender in {WEB_SERVERS[0], WORKER}:
            broken.run(sender, "true", "systemctl restart postfix")
        broken.run(MONITORING, "systemctl stop postfix", "systemctl start postfix")
        # Every dump three days old.
        broken.run(
            DB,
            "for f in /var/backups/postgresql-dumps/*; do touch -r $f $f.mtime; "
            "touch -d '3 days ago' $f; done",
            "for f in /var/backups/postgresql-dumps/*.mtime; do touch -r $f ${f%.mtime}; "
            "rm $f; done",
        )
        # Memcached's port opened to everyone.
        broken.run(
            CACHE,
            f"nft insert rule inet filter services tcp dport {PORTS['memcached']} accept",
            "nft -f /etc/nftables.conf",
        )
        assert wait_for(lambda: all(shows_debug_page(web) for web in WEB_SERVERS), timeout=60)

        items = failed(checklist(reports / "broken"))
        # The TLS scan ran and was judged (it once read MANUAL after every scan).
        assert items_status(reports / "broken", "deploy-testssl") & {"PASS", "FAIL"}
        expected = {
            "django-debug-off": "a debug page",
            "deploy-admin-refused-outside": "answered",
            "django-secret-key": "a placeholder",
            "deploy-tls-versions": "tls1 accepted",
            # Every mail path, Bugsink's notification included, goes through the relay.
            "ops-mail": "no sender",
            "ops-backup-recent": "h old",
            "servers-open-ports": f"{CACHE}: {PORTS['memcached']}",
        }
        assert set(items) == set(expected), (
            {k: [e["evidence"]["value"] for e in v] for k, v in items.items()},
            stops(reports / "broken"),
        )
        for item_id, cause in expected.items():
            values = " ".join(e["evidence"]["value"] for e in items[item_id])
            assert cause in values, (item_id, values)
    finally:
        broken.restore()
    assert wait_for(lambda: not any(shows_debug_page(web) for web in WEB_SERVERS), timeout=60)
    # The web servers' reloads failed Varnish's probes meanwhile, and the restored VCL's
    # backends start out sick: until its probes pass again, every uncached page is a 503.
    assert wait_for(lambda: not varnish_backends("sick"), timeout=60)

    # Without the TLS scan this time (its item reads MANUAL): the broken run scanned, and what
    # was broken at TLS, the versions, has an item of its own. It is the slowest check, and
    # CPU the other checks then share on CI's two cores.
    items = failed(checklist(reports / "restored", "-e", "checklist_testssl=false"))
    assert items_status(reports / "restored", "deploy-testssl") == {"MANUAL"}
    assert not items, (
        {k: [e["evidence"] for e in v] for k, v in items.items()},
        stops(reports / "restored"),
    )
