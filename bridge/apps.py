from django.apps import AppConfig


class BridgeConfig(AppConfig):
    name = "bridge"
    verbose_name = "Handover Bridge"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bridge import checks, metrics, signals  # noqa: F401  (checks: registered; signals: post_migrate schedules)

        metrics.register()
