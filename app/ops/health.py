"""Dependency checks behind /-/health/."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.db import connections
from django.db.migrations.executor import MigrationExecutor


@dataclass
class CheckResult:
    name: str
    ok: bool
    ms: float
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"ok": self.ok, "ms": round(self.ms, 1)}
        if self.detail:
            data["detail"] = self.detail
        return data


def check_database() -> None:
    conn = connections["default"]
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_migrations() -> None:
    conn = connections["default"]
    executor = MigrationExecutor(conn)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _backwards in plan[:5])
        raise RuntimeError(f"{len(plan)} unapplied migration(s): {names}")


def check_cache() -> None:
    backend = caches["default"]
    ping = getattr(backend, "ping", None)
    if ping is not None:
        ping()
        return
    backend.set("health:ping", "1", 10)  # pragma: no cover - other backends
    if backend.get("health:ping") != "1":  # pragma: no cover
        raise RuntimeError("cache did not return the value just written")


def check_redis() -> None:
    from chat import events

    if not events.redis_client().ping():  # pragma: no cover - ping raises instead
        raise RuntimeError("no PONG")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "migrations": check_migrations,
    "cache": check_cache,
    "redis": check_redis,
}


def run_checks() -> tuple[bool, list[CheckResult]]:
    results: list[CheckResult] = []
    for name, check in CHECKS.items():
        start = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure is a failed check, reported below
            detail = f"{type(exc).__name__}: {exc}".strip()[:300]
            results.append(CheckResult(name, False, (time.perf_counter() - start) * 1000, detail))
            if name == "database":
                # Do not keep a broken connection for the next request.
                connections["default"].close_if_unusable_or_obsolete()
        else:
            results.append(CheckResult(name, True, (time.perf_counter() - start) * 1000))
    critical = set(settings.HEALTH_CRITICAL_CHECKS)
    healthy = all(r.ok for r in results if r.name in critical)
    return healthy, results
