"""Deploys and rollbacks (playbooks/deploy.yml, rollback.yml) under load, as a team ships:
real releases made as git commits, visitors, members posting and members listening on
WebSockets throughout, from the client container.

The tests run in order and share the environment's state: a broken release is refused
first, then a good one ships, then the environment rolls back to where it started."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from hpdtest import PROJECT_DIR, host, inventory, run_playbook, wait_for
from monitor import Monitoring
from stack import (
    CA,
    LB,
    MONITORING,
    PORTS,
    SITE,
    WEB_SERVERS,
    WORKER,
    contract,
    curl,
    releases_served_by,
)

TOKEN = secrets.token_hex(4)
LOCK = contract("site_app_root") + "/deploy.lock"
# The release change every good deploy here ships: an attribute on the room's message
# list, in a cached fragment, on the cached transcript and on the logged-in room page.
MARKER = f'data-release-check="{TOKEN}"'
# The visitors during a deploy: 53 at once, paced like people (a page every 2 s is still
# quicker than anyone reads it). Unpaced, the clients alone would take most of the two
# cores the whole stack shares in CI, and the deploy would measure that; the closed loop
# of the first test is where the stack is pushed.
VISITORS = {
    "pages": 20,
    "cached": 25,
    "posters": 5,
    "listeners": 3,
    "cached-think": 2,
    "page-think": 2,
    "post-interval": 2,
}


def make_release(tmp_path: Path, name: str, edit) -> tuple[str, str, str]:
    """A release as a developer makes one: a clone of the project with one commit on top.
    Returns the clone, the commit and the release id deploy.yml gives it."""
    clone = tmp_path / name
    subprocess.run(["git", "clone", "-q", str(PROJECT_DIR), str(clone)], check=True)
    edit(clone / "app")
    git = ["git", "-C", str(clone), "-c", "user.name=Stack test", "-c", "user.email=stack@test"]
    subprocess.run([*git, "commit", "-qam", f"{name} {TOKEN}"], check=True)
    commit = subprocess.check_output([*git, "rev-parse", "HEAD"], text=True).strip()
    release = subprocess.check_output(
        [str(PROJECT_DIR / "roles/app/files/release-id"), str(clone), "app", commit], text=True
    ).strip()
    return str(clone), commit, release


def mark_template(app: Path) -> None:
    fragment = app / "chat/templates/chat/_messages.html"
    text = fragment.read_text()
    fragment.write_text(text.replace('class="messages"', f'class="messages" {MARKER}', 1))


def break_health(app: Path) -> None:
    # A release whose health check fails once it runs: the view answers 503 every time.
    views = app / "ops/views.py"
    text = views.read_text()
    views.write_text(text.replace("status=200 if healthy else 503", "status=503"))


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("releases")
    return {
        "start": releases_served_by(WEB_SERVERS[0]).pop(),
        "good": make_release(tmp, "good", mark_template),
        "broken": make_release(tmp, "broken", break_health),
    }


class Load:
    """The chat client's load command running in the client container until stopped."""

    def __init__(self, client, demo, **counts: float) -> None:
        self.client, self.stop_file = client, f"/tmp/load-{secrets.token_hex(4)}.stop"
        self.out = self.stop_file.replace(".stop", ".json")
        options = " ".join(f"--{name} {value}" for name, value in counts.items())
        client.run_expect(
            [0],
            f"nohup python3 /usr/local/bin/chatclient --base {SITE} --ca {CA} load "
            f"{demo['member']} {demo['password']} {demo['room']} {self.stop_file} "
            f"--second-user {demo['owner']} --token {TOKEN} {options} "
            f"> {self.out} 2> {self.out}.err & echo started",
        )
        # Logged in, the listeners' sockets open: the visitors have started.
        ready = self.stop_file + ".ready"
        assert wait_for(lambda: client.run(f"test -e {ready}").rc == 0, timeout=90), client.run(
            f"tail -5 {self.out}.err"
        ).stdout

    def stop(self) -> dict:
        self.client.run_expect([0], f"touch {self.stop_file}")
        assert wait_for(lambda: self.client.run(f"test -s {self.out}").rc == 0, timeout=90), (
            self.client.run(f"tail -5 {self.out}.err").stdout
        )
        return json.loads(self.client.check_output(f"cat {self.out}"))


def balancer_events(since: float) -> str:
    """The balancer's server state changes since a moment: a 503 from the balancer itself
    means it found no server up."""
    changes = host(LB).run(
        f"journalctl -u haproxy --no-pager -o short-iso -S @{int(since)} "
        "| grep -E 'is (DOWN|UP)|going DOWN|leaving' | tail -20"
    )
    return changes.stdout


def assert_no_failure_and_no_lost_event(report: dict) -> None:
    if report["failed"]:
        first = min(failure["at"] for failure in report["failures"])
        pytest.fail(f"{report['failures']}\nbalancer events:\n{balancer_events(first - 60)}")
    assert sum(report["requests"].values()) > 200, report["requests"]
    assert report["posted"], "no message was posted"
    posted = Counter(report["posted"])
    for listener in report["listeners"]:
        received = Counter(t for t in listener["received"] if TOKEN in t)
        missing = posted - received
        doubled = [t for t, n in received.items() if n > 1]
        assert not missing and not doubled, (
            f"missing {list(missing)[:5]}, doubled {doubled[:5]}, {listener['connects']} "
            f"connects, {listener['resyncs']} resyncs, errors {listener['errors'][:3]}"
        )


def deploy(*args: str) -> tuple[int, str]:
    """Run deploy.yml; its exit code and its output on one line (Ansible folds messages)."""
    result = run_playbook("playbooks/deploy.yml", *args, timeout=900)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def worker_release() -> set[str]:
    """The release each Celery unit on the worker host runs (its working directory)."""
    out = host(WORKER).check_output(
        "for pid in $(systemctl show --property=MainPID --value 'celery-*'); do "
        "[ $pid -gt 0 ] && basename $(readlink /proc/$pid/cwd); done"
    )
    return set(out.split())


def test_logged_in_pages_under_sustained_load_all_succeed(client, demo) -> None:
    # 30 s, 50 members reloading the room page, no deploy: the Varnish to uWSGI hop must
    # not drop a request (uWSGI closes every connection; Varnish must not reuse one). The
    # deploy tests below keep 20 of them reloading for minutes more, with no failure allowed.
    load = Load(client, demo, pages=50, cached=0, posters=0, listeners=0, **{"max-seconds": 30})
    time.sleep(27)
    report = load.stop()
    assert report["failed"] == 0, report["failures"]
    assert report["requests"]["page"] > 500, report["requests"]


def test_broken_release_stops_after_the_first_host_reverted(client, demo, releases) -> None:
    clone, commit, broken = releases["broken"]
    load = Load(client, demo, **VISITORS)
    returncode, output = deploy("-e", f"app_repository={clone}", "-e", f"app_ref={commit}")
    report = load.stop()
    assert returncode != 0, output[-3000:]
    first = WEB_SERVERS[0]
    assert re.search(rf"stopped on {first}: Health gate", output), output[-3000:]
    assert f"{first} is back on {releases['start']}" in output
    for name in WEB_SERVERS:
        assert releases_served_by(name) == {releases["start"]}, name
    assert worker_release() == {releases["start"]}
    assert host(first).run(f"test -e {LOCK}").rc != 0, "the lock was left behind"
    assert_no_failure_and_no_lost_event(report)


def test_deploy_under_load_switches_every_host_and_loses_nothing(client, demo, releases) -> None:
    clone, commit, good = releases["good"]
    load = Load(client, demo, **VISITORS)
    returncode, output = deploy("-e", f"app_repository={clone}", "-e", f"app_ref={commit}")
    report = load.stop()
    assert returncode == 0, output[-3000:]
    took = re.search(r"Deploy of \S+ done: .* in (\d+) s", output)
    assert took, output[-2000:]
    print(f"deploy of {good} to {len(WEB_SERVERS)} web servers took {took.group(1)} s")
    for name in WEB_SERVERS:
        assert releases_served_by(name) == {good}, name
    assert worker_release() == {good}
    assert_no_failure_and_no_lost_event(report)
    # The changed template is served at once: from the cache (banned), from Memcached's
    # fragments (keyed by the templates' digest) and on the logged-in page.
    _, _, transcript = curl(client, demo["transcript"])
    assert MARKER in transcript
    assert MARKER in client.check_output(
        f"python3 /usr/local/bin/chatclient --base {SITE} --ca {CA} get "
        f"{demo['member']} {demo['password']} /rooms/{demo['room']}/ > /dev/null; "
        f"curl -sS --cacert {CA} {SITE}{demo['transcript']}"
    )


def test_rollback_under_load_and_a_concurrent_deploy_is_refused(
    client, demo, releases, tmp_path
) -> None:
    clone, commit, good = releases["good"]
    load = Load(client, demo, **VISITORS)
    # Into a file, not a pipe: nobody reads a pipe until the rollback ends, and a verbose
    # run fills one (64 KiB) before it takes the lock.
    output = tmp_path / "rollback.log"
    with output.open("w") as log:
        rollback = subprocess.Popen(
            ["ansible-playbook", "-i", inventory(), "playbooks/rollback.yml"],
            cwd=PROJECT_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(
                os.environ, ANSIBLE_ROLES_PATH=str(PROJECT_DIR / "roles"), ANSIBLE_NOCOLOR="1"
            ),
        )
    locked = f"test -e {LOCK}"
    try:
        # The preflight checks of every host come first (about 90 s on a loaded CI machine).
        took_lock = wait_for(lambda: host(WEB_SERVERS[0]).run(locked).rc == 0, timeout=300)
        assert took_lock, output.read_text()[-3000:]
        refused_code, refused = deploy("-e", f"app_repository={clone}", "-e", f"app_ref={commit}")
        rollback.wait(timeout=600)
    finally:
        if rollback.poll() is None:
            rollback.terminate()
            rollback.wait(timeout=60)
    out = output.read_text()
    report = load.stop()
    assert refused_code != 0
    refusal = r"Refused: another deploy or rollback holds the lock .*rollback of"
    assert re.search(refusal, refused), refused[-2000:]
    assert rollback.returncode == 0, out[-3000:]
    for name in WEB_SERVERS:
        assert releases_served_by(name) == {releases["start"]}, name
    assert worker_release() == {releases["start"]}
    assert_no_failure_and_no_lost_event(report)


def test_each_deploy_and_rollback_is_marked_in_graphite_and_bugsink(releases) -> None:
    monitoring = Monitoring(MONITORING, MONITORING)
    events = json.loads(
        host(MONITORING).check_output(
            f"curl -sSf 'http://{monitoring.address}:{PORTS['graphite_web']}"
            "/events/get_data?from=-1h'"
        )
    )
    whats = [event["what"] for event in events]
    good = releases["good"][2]
    assert any(w.startswith(f"deploy of {good}") for w in whats), whats
    assert any(w.startswith(f"rollback of {releases['start']}") for w in whats), whats
    versions = monitoring.bugsink_releases()
    assert good in versions and releases["start"] in versions, versions
    central = "\n".join(monitoring.log_lines(f"deploy of {good}"))
    assert all(name in central for name in WEB_SERVERS), central[-1000:]
