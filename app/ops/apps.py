from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from django.core import checks
        from django.core.signals import request_finished

        from ops import celery_signals  # noqa: F401  (connects the signal handlers)
        from ops.clientaddr import check_address_settings
        from ops.logging import clear_request_id
        from ops.sentry import init_sentry

        request_finished.connect(clear_request_id, dispatch_uid="ops.clear_request_id")
        init_sentry()
        checks.register(check_address_settings)
