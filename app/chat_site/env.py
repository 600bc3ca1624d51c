"""Read configuration from the process environment (and an optional .env file).

Every secret and every address the app needs comes through these helpers, so the
deployment (uWSGI ``env =`` lines, systemd ``EnvironmentFile=``, or a ``.env`` file
beside ``manage.py``) is the single source of truth.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def load_dotenv_file(default_path: Path) -> Path | None:
    """Load ``ENV_FILE`` (default: ``.env`` beside manage.py) without overriding
    variables that are already set. ``ENV_FILE=`` (empty) disables the file."""
    from dotenv import load_dotenv

    raw = os.environ.get("ENV_FILE")
    path = default_path if raw is None else (Path(raw) if raw else None)
    if path is not None and path.is_file():
        load_dotenv(path, override=False)
        return path
    return None


def apply_env_file(path: str | Path, *, override: bool) -> None:
    """Load a deployment environment file: ``KEY=value`` lines taken literally (no quoting),
    as uWSGI's ``for-readline`` and the release's ``manage`` read them; ``#`` starts a
    comment line. With ``override=False`` variables already set win."""
    with open(path, encoding="utf-8") as env_file:
        for raw in env_file:
            line = raw.rstrip("\n")
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if override or key not in os.environ:
                os.environ[key] = value


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Comma- or whitespace-separated list."""
    value = os.environ.get(name)
    if value is None:
        return list(default or [])
    return [item for item in value.replace(",", " ").split() if item]


def database_config(prefix: str = "DATABASE") -> dict[str, Any]:
    """A Django DATABASES entry for PostgreSQL (psycopg 3).

    Either ``DATABASE_URL=postgres://user:password@host:port/name?sslmode=require``
    or the separate ``DATABASE_HOST/PORT/NAME/USER/PASSWORD`` variables (which win
    over the URL when both are given, so a password can be kept out of the URL).
    """
    config: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "chat",
        "USER": "chat",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "OPTIONS": {},
    }
    url = os.environ.get(f"{prefix}_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
            raise ImproperlyConfigured(f"{prefix}_URL must be a postgres:// URL.")
        config.update(
            NAME=unquote(parts.path.lstrip("/")) or config["NAME"],
            USER=unquote(parts.username or "") or config["USER"],
            PASSWORD=unquote(parts.password or ""),
            HOST=parts.hostname or config["HOST"],
            PORT=str(parts.port or config["PORT"]),
        )
        config["OPTIONS"].update(dict(parse_qsl(parts.query)))
    for key in ("HOST", "PORT", "NAME", "USER", "PASSWORD"):
        value = os.environ.get(f"{prefix}_{key}")
        if value is not None:
            config[key] = value
    sslmode = os.environ.get(f"{prefix}_SSLMODE")
    if sslmode:
        config["OPTIONS"]["sslmode"] = sslmode
    config["CONN_MAX_AGE"] = env_int(f"{prefix}_CONN_MAX_AGE", 60)
    config["CONN_HEALTH_CHECKS"] = True
    config["OPTIONS"].setdefault("connect_timeout", env_int(f"{prefix}_CONNECT_TIMEOUT", 5))
    return config
