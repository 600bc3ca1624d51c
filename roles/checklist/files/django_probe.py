# The deployed release's settings and accounts, for the pre-launch checklist. Run by the
# checklist with the release's `manage shell -c`; reads CHECKLIST_ARGS (base64 JSON:
# placeholders, weak_passwords, site_name, token) and prints one JSON
# object. Never prints a secret: only its length, its variety and whether it is a placeholder.
import base64
import json
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.template import TemplateDoesNotExist
from django.template.loader import get_template

args = json.loads(base64.b64decode(os.environ["CHECKLIST_ARGS"]))
key = settings.SECRET_KEY
placeholders = tuple(prefix.lower() for prefix in args["placeholders"])
loaders = [
    loader if isinstance(loader, str) else loader[0]
    for template in settings.TEMPLATES
    for loader in template.get("OPTIONS", {}).get("loaders") or []
]
# With no loaders set, Django (4.1 and later) wraps its default ones in the cached loader.
admins = []
for user in get_user_model().objects.filter(is_staff=True).order_by("username"):
    candidates = [*args["weak_passwords"], user.get_username(), args["site_name"]]
    admins.append(
        {
            "username": user.get_username(),
            "superuser": user.is_superuser,
            "active": user.is_active,
            "last_login": user.last_login.isoformat() if user.last_login else None,
            "weak": any(user.check_password(candidate) for candidate in candidates),
        }
    )
error_pages = {}
for name in ("404.html", "500.html", "503.html"):
    try:
        error_pages[name] = str(get_template(name).origin.name)
    except TemplateDoesNotExist:
        error_pages[name] = None
# A file through the app's storage, which the checklist fetches back and then deletes.
name = default_storage.save(f"checklist/{args['token']}.txt", ContentFile(args["token"].encode()))
media = {"name": name, "url": default_storage.url(name)}
print(
    json.dumps(
        {
            "debug": settings.DEBUG,
            "secret_key": {
                "length": len(key),
                "distinct": len(set(key)),
                "placeholder": key.lower().startswith(placeholders),
            },
            "allowed_hosts": list(settings.ALLOWED_HOSTS),
            "template_loaders": loaders or ["(Django's defaults, wrapped in the cached loader)"],
            "cached_templates": not loaders or "django.template.loaders.cached.Loader" in loaders,
            "session_engine": settings.SESSION_ENGINE,
            "caches": {name: conf["BACKEND"] for name, conf in settings.CACHES.items()},
            "admins": admins,
            "error_pages": error_pages,
            "media": media,
        }
    )
)
