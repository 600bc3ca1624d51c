"""Celery task counters and timings in statsd, wired through Celery's signals."""

from __future__ import annotations

import time
from typing import Any

from celery import signals

from ops import metrics

_started: dict[str, float] = {}


def _name(task: Any, sender: Any = None) -> str:
    return getattr(task, "name", None) or getattr(sender, "name", None) or "unknown"


@signals.task_prerun.connect
def on_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()
    metrics.incr(metrics.metric_name("celery", _name(task), "started"))


@signals.task_postrun.connect
def on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any
) -> None:
    start = _started.pop(task_id or "", None)
    if start is not None:
        metrics.timing(
            metrics.metric_name("celery", _name(task), "duration_ms"),
            (time.perf_counter() - start) * 1000,
        )
    if state == "SUCCESS":
        metrics.incr(metrics.metric_name("celery", _name(task), "succeeded"))


@signals.task_failure.connect
def on_failure(sender: Any = None, **kwargs: Any) -> None:
    metrics.incr(metrics.metric_name("celery", _name(sender), "failed"))


@signals.task_retry.connect
def on_retry(sender: Any = None, **kwargs: Any) -> None:
    metrics.incr(metrics.metric_name("celery", _name(sender), "retried"))
