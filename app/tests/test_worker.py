"""One real Celery worker process, consuming the real Redis broker, running the tasks
that the app enqueues on commit (e-mail, thumbnail, Varnish PURGE)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chat import services
from chat.models import ChatRoom
from chat_site.celery import app as celery_app
from tests.conftest import png_bytes
from tests.servers import VENV_BIN, deploy_environment, start, stop, wait_for_text

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_runs_the_enqueued_tasks(
    tmp_path: Path, public_room: ChatRoom, member, stranger, purge_servers
) -> None:
    mail_dir = tmp_path / "mail"
    environ = deploy_environment(
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail_dir),
        VARNISH_PURGE_HOSTS=",".join(f"127.0.0.1:{s.server_port}" for s in purge_servers),
        VARNISH_PURGE_HOST_HEADER="chat.example.org",
    )
    log = tmp_path / "worker.log"
    worker = start(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "chat_site",
            "worker",
            "-Q",
            "high,default",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
            "--hostname",
            "test-worker@%h",
        ],
        environ,
        log,
    )
    celery_app.conf.task_always_eager = False
    try:
        wait_for_text(log, "ready.", worker)
        services.post_message(public_room, member, "for the worker")
        services.request_to_join(stranger, public_room)
        services.set_room_image(
            public_room, SimpleUploadedFile("pic.png", png_bytes(), content_type="image/png")
        )
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            public_room.refresh_from_db()
            mails = list(mail_dir.glob("*.log")) if mail_dir.exists() else []
            purged = all(len(s.requests) >= 2 for s in purge_servers)
            if public_room.thumbnail and mails and purged:
                break
            time.sleep(0.2)
    finally:
        celery_app.conf.task_always_eager = True
        stop(worker)
    output = log.read_text(errors="replace")
    assert public_room.thumbnail.name.startswith("thumbs/"), output[-3000:]
    assert mails, output[-3000:]
    assert "sam asks to join Town square" in mails[0].read_text()
    for server in purge_servers:
        assert ("PURGE", public_room.get_transcript_url(), "chat.example.org") in server.requests
    for task in ("purge_room_urls", "notify_owner_of_join_request", "make_room_thumbnail"):
        assert f"chat.tasks.{task}" in output
        assert "succeeded" in output
