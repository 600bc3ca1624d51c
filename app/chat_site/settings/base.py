"""Settings shared by every environment. Environment-specific modules (dev, deploy,
test) import everything from here and override what differs.

Nothing secret or host-specific is written here: it is all read from the
environment (see README.md for the table of variables)."""

from __future__ import annotations

from pathlib import Path

import redis.exceptions
from celery.schedules import crontab

from chat_site.env import (
    database_config,
    env_bool,
    env_int,
    env_list,
    env_str,
    load_dotenv_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DOTENV_FILE = load_dotenv_file(BASE_DIR / ".env")

SECRET_KEY = env_str("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

APP_RELEASE = env_str("APP_RELEASE", "dev")
APP_ENVIRONMENT = env_str("APP_ENVIRONMENT", "development")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ops",
    "filestore",
    "accounts",
    "chat",
]

MIDDLEWARE = [
    # Health and liveness answer before host validation and sessions, so a load
    # balancer can probe a backend by its address.
    "ops.middleware.HealthCheckMiddleware",
    "ops.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # First among the process_view hooks: refuses the admin before CSRF or sessions do
    # any work for an outsider.
    "ops.middleware.AdminAllowlistMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chat_site.urls"
WSGI_APPLICATION = "chat_site.wsgi.application"
ASGI_APPLICATION = "chat_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.cache_ttls",
                "chat.context_processors.templates",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {"default": database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (sessions, channel layer, event streams, Celery broker) ----------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# --- Caches -----------------------------------------------------------------------
# Memcached holds template fragments and query results. Its backend is wrapped so an
# outage is a logged, counted cache miss and never an error page.
MEMCACHED_SERVERS = env_list("MEMCACHED_SERVERS", ["127.0.0.1:11211"])
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "chat")
# Seconds during which a process skips Memcached after a failure (circuit breaker).
CACHE_FAILURE_BACKOFF = env_int("CACHE_FAILURE_BACKOFF", 10)
CACHES = {
    "default": {
        "BACKEND": "ops.cache.FailSafePyLibMCCache",
        "LOCATION": MEMCACHED_SERVERS,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "TIMEOUT": 300,
        "OPTIONS": {
            "binary": True,
            "behaviors": {
                "tcp_nodelay": True,
                "ketama": True,
                "connect_timeout": 200,  # milliseconds
                "send_timeout": 300_000,  # microseconds
                "receive_timeout": 300_000,  # microseconds
                "_poll_timeout": 300,  # milliseconds
                "retry_timeout": 2,  # seconds before a failed server is retried
                "dead_timeout": 10,
                "remove_failed": 1,
            },
        },
    },
    "sessions": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": env_str("SESSION_REDIS_URL", REDIS_URL),
        "KEY_PREFIX": f"{CACHE_KEY_PREFIX}:sessions",
        "TIMEOUT": None,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    },
}
SESSION_ENGINE = "django.contrib.sessions.backends.cache"
SESSION_CACHE_ALIAS = "sessions"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)

# Fragment/query TTLs in seconds (applied with +/- CACHE_TTL_JITTER variance).
CACHE_TTLS = {
    "short": env_int("CACHE_TTL_SHORT", 60),
    "middle": env_int("CACHE_TTL_MIDDLE", 600),
    "long": env_int("CACHE_TTL_LONG", 3600),
    "forever": env_int("CACHE_TTL_FOREVER", 7 * 24 * 3600),
}
CACHE_TTL_JITTER = 0.2

# --- Channels ---------------------------------------------------------------------
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # A connection whose packets vanish (a partition, a dead peer) must fail and be
            # replaced, not hang: the layer's blocking pops wait at most 5 s, so a read
            # silent for 15 s is a dead connection; keepalive and a health check find
            # idle ones. A pooled connection the server closed (a restart, the end of a
            # partition) is retried once on a new one instead of failing the handshake:
            # channels_redis hands redis-py a pool, whose default is no retry at all.
            "hosts": [
                {
                    "address": env_str("CHANNELS_REDIS_URL", REDIS_URL),
                    "socket_timeout": 15,
                    "socket_connect_timeout": 5,
                    "socket_keepalive": True,
                    "health_check_interval": 10,
                    "retry_on_error": [redis.exceptions.ConnectionError],
                }
            ],
            "prefix": f"{CACHE_KEY_PREFIX}:asgi",
            "capacity": 1000,
            "expiry": 60,
        },
    }
}
# Bounded Redis streams that stamp every real-time event with a timepoint.
CHAT_EVENTS_REDIS_URL = env_str("CHAT_EVENTS_REDIS_URL", REDIS_URL)
CHAT_STREAM_PREFIX = f"{CACHE_KEY_PREFIX}:stream"
CHAT_STREAM_MAXLEN = env_int("CHAT_STREAM_MAXLEN", 1000)
CHAT_STREAM_RETENTION_SECONDS = env_int("CHAT_STREAM_RETENTION_SECONDS", 24 * 3600)
# A room socket resuming from a timepoint checks that every message stored since this long
# before it is in the stream (a publish fails while Redis is down). The margin covers the
# skew between the app hosts' clocks (a message's ``posted``) and Redis's (the timepoint)
# and the time from a message's INSERT to its commit and publish.
CHAT_PUBLISH_CHECK_MARGIN_MS = env_int("CHAT_PUBLISH_CHECK_MARGIN_MS", 5000)

# --- Chat -------------------------------------------------------------------------
CHAT_PAGE_MESSAGES = 50
CHAT_TRANSCRIPT_MAX_AGE = env_int("CHAT_TRANSCRIPT_MAX_AGE", 60)
CHAT_IMAGE_MAX_BYTES = env_int("CHAT_IMAGE_MAX_BYTES", 2 * 1024 * 1024)
CHAT_IMAGE_MAX_PIXELS = 40_000_000
CHAT_THUMBNAIL_SIZE = (160, 160)
CHAT_DENIED_REQUEST_RETENTION_DAYS = env_int("CHAT_DENIED_REQUEST_RETENTION_DAYS", 30)
FILESTORE_MAX_AGE = 365 * 24 * 3600

# --- Varnish ----------------------------------------------------------------------
# host:port of every Varnish node; a public room's URLs are PURGEd on each.
VARNISH_PURGE_HOSTS = env_list("VARNISH_PURGE_HOSTS", [])
# Host header sent with PURGE (the public site name Varnish caches under).
VARNISH_PURGE_HOST_HEADER = env_str(
    "VARNISH_PURGE_HOST_HEADER", ALLOWED_HOSTS[0] if ALLOWED_HOSTS else "localhost"
)
VARNISH_PURGE_TIMEOUT = env_int("VARNISH_PURGE_TIMEOUT", 3)

# --- Celery -----------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "chat.tasks.purge_room_urls": {"queue": "high"},
    "chat.tasks.notify_owner_of_join_request": {"queue": "high"},
    "chat.tasks.make_room_thumbnail": {"queue": "default"},
    "chat.tasks.cleanup_denied_requests": {"queue": "default"},
    "chat.tasks.trim_event_streams": {"queue": "default"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE = {
    "cleanup-denied-requests": {
        "task": "chat.tasks.cleanup_denied_requests",
        "schedule": crontab(minute=17, hour=3),
    },
    "trim-event-streams": {
        "task": "chat.tasks.trim_event_streams",
        "schedule": 15 * 60.0,
    },
}

# --- Email ------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", "")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "chat@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Metrics and errors -------------------------------------------------------------
STATSD_HOST = env_str("STATSD_HOST", "127.0.0.1")
STATSD_PORT = env_int("STATSD_PORT", 8125)
STATSD_PREFIX = env_str("STATSD_PREFIX", "chat")
SENTRY_DSN = env_str("SENTRY_DSN", "")
SENTRY_TRACES_SAMPLE_RATE = float(env_str("SENTRY_TRACES_SAMPLE_RATE", "0"))
# Checks whose failure makes /-/health/ answer 503. The cache is left out by default:
# a Memcached outage is a cache miss, and it must not take every web node out of the
# balancer at once. It is still reported in the JSON body.
HEALTH_CRITICAL_CHECKS = env_list("HEALTH_CRITICAL_CHECKS", ["database", "redis", "migrations"])

# --- Client addresses, allowlists and abuse limits ------------------------------------
# Addresses or CIDRs of our own proxies (HAProxy balancers, Varnish hosts). The client of
# a request is the first address from the right of X-Forwarded-For + REMOTE_ADDR that is
# not one of them (ops.clientaddr), so nobody else can forge X-Forwarded-For.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
# Clients that may reach the admin (the admin answers 403 to everyone else).
ADMIN_ALLOWLIST = env_list("ADMIN_ALLOWLIST", ["127.0.0.1/32", "::1/128"])
# Besides loopback, TRUSTED_PROXIES and ADMIN_ALLOWLIST: who gets the detailed
# /-/health/ answer (e.g. the web hosts themselves, for the deploy's health gate).
HEALTH_DETAIL_ALLOWLIST = env_list("HEALTH_DETAIL_ALLOWLIST", [])
# django-ratelimit rates ("count/period", period s, m, h or d with an optional multiple,
# e.g. 10/5m). Counters live in the default cache (Memcached, shared by every web server,
# atomic incr); when it is down the limits are not enforced (FAIL_OPEN) rather than
# refusing everyone.
RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)
RATELIMIT_USE_CACHE = "default"
RATELIMIT_FAIL_OPEN = True
RATELIMITS = {
    # Failed logins only; refused before the password is checked.
    "login.ip": env_str("RATELIMIT_LOGIN_IP", "10/5m"),
    "login.account": env_str("RATELIMIT_LOGIN_ACCOUNT", "30/15m"),
    "signup.ip": env_str("RATELIMIT_SIGNUP_IP", "10/h"),
    "join.account": env_str("RATELIMIT_JOIN_ACCOUNT", "10/h"),
    "join.ip": env_str("RATELIMIT_JOIN_IP", "30/h"),
    # Messages and room images (the load test posts 1 message/s per account).
    "post.account": env_str("RATELIMIT_POST_ACCOUNT", "20/10s"),
    "post.ip": env_str("RATELIMIT_POST_IP", "300/m"),
}

# --- Auth, i18n, static and uploaded files --------------------------------------------
# Deployments get it from the app role's environment file (the site contract's
# site_admin_path); the default matches the contract's default.
ADMIN_URL = env_str("ADMIN_URL", "control-room/").strip("/") + "/"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "chat:index"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Uploaded files live in PostgreSQL (filestore app), so every web server sees them.
MEDIA_URL = "/files/"
STORAGES = {
    "default": {"BACKEND": "filestore.storage.DatabaseStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Logging (stderr; the host forwards it to syslog) --------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "ops.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [req:%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "filters": ["request_id"],
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "django.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
