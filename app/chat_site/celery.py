"""Celery application. Configuration comes from Django settings (CELERY_* names).

Start a worker per queue group, for example::

    celery -A chat_site worker -Q high,default --concurrency 2
    celery -A chat_site beat        # on exactly one host
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_site.settings.deploy")

app = Celery("chat_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
