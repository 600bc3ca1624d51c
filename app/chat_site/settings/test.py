"""pytest settings: real PostgreSQL, Redis and Memcached started by run-tests (their
addresses come from the environment like everywhere else)."""

from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = "test-only-" + "x" * 50
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",  # fast for the suite
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",  # what deploy settings verify
]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CACHE_FAILURE_BACKOFF = 1
VARNISH_PURGE_TIMEOUT = 2
