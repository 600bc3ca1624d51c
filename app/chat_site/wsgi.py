"""WSGI entry point, served by uWSGI (see README.md for the command)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_site.settings.deploy")

application = get_wsgi_application()
