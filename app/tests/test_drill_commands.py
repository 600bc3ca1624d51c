"""The fault drills' commands: thumbnail tasks whose effects are counted (drill_tasks) and a
run's accepted posts found by marker (drill_messages)."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chat import services
from chat.models import ChatRoom

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict:
    out = StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def test_drill_tasks_enqueue_count_and_clean(django_capture_on_commit_callbacks) -> None:
    before = run("drill_tasks", "count", "--marker=d1")
    assert before == {"marker": "d1", "rooms": 0, "done": 0}
    # Not committed yet in the test's transaction: the tasks have not run.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enqueued = run("drill_tasks", "enqueue", "--marker=d1", "--count=3", "--size=64")
    assert enqueued["enqueued"] == 3
    assert len(callbacks) == 3  # one thumbnail task each
    assert run("drill_tasks", "count", "--marker=d1") == {"marker": "d1", "rooms": 3, "done": 0}
    for callback in callbacks:
        callback()  # the tasks run (eagerly, as the test settings say)
    assert run("drill_tasks", "count", "--marker=d1") == {"marker": "d1", "rooms": 3, "done": 3}
    rooms = ChatRoom.objects.filter(pk__in=enqueued["rooms"])
    assert not any(room.is_public for room in rooms)  # no purge tasks
    assert run("drill_tasks", "count", "--marker=d2")["rooms"] == 0
    assert run("drill_tasks", "clean", "--marker=d1") == {"marker": "d1", "deleted": 3}
    assert run("drill_tasks", "count", "--marker=d1")["rooms"] == 0


def test_drill_tasks_refuse_bad_input() -> None:
    with pytest.raises(CommandError, match="--marker"):
        run("drill_tasks", "count", "--marker=two words")
    with pytest.raises(CommandError, match="--count"):
        run("drill_tasks", "enqueue", "--marker=d1", "--count=0")


def test_drill_messages_finds_a_runs_tokens(room, owner) -> None:
    services.post_message(room, owner, "load test 0123456789abcdef drill-pg-1")
    services.post_message(room, owner, "load test fedcba9876543210 drill-pg-1")
    services.post_message(room, owner, "load test 1111111111111111 drill-pg-2")
    services.post_message(room, owner, "hello drill-pg-1 there")
    found = run("drill_messages", "--marker=drill-pg-1")
    assert found == {
        "marker": "drill-pg-1",
        "messages": 2,
        "tokens": ["0123456789abcdef", "fedcba9876543210"],
    }
    with pytest.raises(CommandError):
        run("drill_messages", "--marker=x")
