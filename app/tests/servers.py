"""Helpers for tests that start real server processes (uWSGI, Daphne, Celery)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

APP_DIR = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def readme_command(name: str) -> str:
    """The shell block that follows ``<!-- smoke-test: NAME -->`` in README.md."""
    text = (APP_DIR / "README.md").read_text()
    match = re.search(rf"<!-- smoke-test: {name} -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"README.md has no smoke-test block {name!r}"
    return match.group(1)


def deploy_environment(**extra: str) -> dict[str, str]:
    """A production-like environment pointing at the test database and services."""
    db = connection.settings_dict
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL"}}
    environ.update(
        PATH=f"{VENV_BIN}:{environ.get('PATH', '')}",
        VIRTUAL_ENV=str(VENV_BIN.parent),
        DJANGO_SETTINGS_MODULE="chat_site.settings.deploy",
        ENV_FILE="",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="chat.example.org,127.0.0.1",
        CSRF_TRUSTED_ORIGINS="https://chat.example.org",
        ADMIN_URL="ops-console/",
        APP_RELEASE="smoke",
        APP_ENVIRONMENT="test",
        DATABASE_HOST=str(db["HOST"]),
        DATABASE_PORT=str(db["PORT"]),
        DATABASE_NAME=str(db["NAME"]),
        DATABASE_USER=str(db["USER"]),
        DATABASE_PASSWORD=str(db["PASSWORD"]),
        PYTHONUNBUFFERED="1",
    )
    environ.update(extra)
    return environ


def start(command: list[str] | str, environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        command,
        cwd=APP_DIR,
        env=environ,
        stdout=handle,
        stderr=subprocess.STDOUT,
        shell=isinstance(command, str),
        executable="/bin/bash" if isinstance(command, str) else None,
        start_new_session=True,  # its own process group, stopped as a whole below
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 40
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited early:\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()[-3000:]}")


def wait_for_text(
    log: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 40
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen:\n{log.read_text(errors='replace')[-3000:]}")
