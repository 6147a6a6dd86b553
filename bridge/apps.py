from django.apps import AppConfig


class BridgeConfig(AppConfig):
    name = "bridge"
    verbose_name = "Handover Bridge"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bridge import checks, keys, metrics, signals  # noqa: F401  (signals: post_migrate; checks, keys: checks)

        metrics.register()
