"""Request id propagation into log records."""

from __future__ import annotations

import logging
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (the X-Request-ID of the request being served)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def clear_request_id(**kwargs: object) -> None:
    """``request_finished`` receiver: later log lines belong to no request."""
    request_id_var.set("-")
