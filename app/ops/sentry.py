"""sentry-sdk set-up: only when SENTRY_DSN is set (Bugsink or Sentry both accept it)."""

from __future__ import annotations

import sentry_sdk
from django.conf import settings


def init_sentry() -> bool:
    dsn = settings.SENTRY_DSN
    if not dsn:
        return False
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.redis import RedisIntegration

    sentry_sdk.init(
        dsn=dsn,
        release=settings.APP_RELEASE,
        environment=settings.APP_ENVIRONMENT,
        integrations=[DjangoIntegration(), CeleryIntegration(), RedisIntegration()],
        traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
    )
    return True
