"""WSGI entry point, served by uWSGI (see README.md for the command)."""

import os

from django.core.wsgi import get_wsgi_application

from chat_site.env import apply_env_file

# uWSGI's chain reload forks new workers from a master whose environment dates from its
# own start. Reading the live release's environment file here, in each worker (the vassal
# loads the app per worker), is what lets a deploy or a changed setting reach the workers
# without restarting the master.
if os.environ.get("APP_ENV_FILE"):
    apply_env_file(os.environ["APP_ENV_FILE"], override=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chat_site.settings.deploy")

application = get_wsgi_application()
