"""Local development: DEBUG on, console email, permissive hosts. Services (PostgreSQL,
Redis, Memcached) are still real; point the variables in .env at them."""

from chat_site.env import env_str

from .base import *  # noqa: F403

DEBUG = True
SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-change-me"  # noqa: F405
ALLOWED_HOSTS = ALLOWED_HOSTS or ["localhost", "127.0.0.1", "[::1]"]  # noqa: F405
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

# Daphne's runserver serves HTTP and WebSockets from one process in development.
INSTALLED_APPS = ["daphne", *INSTALLED_APPS]  # noqa: F405
