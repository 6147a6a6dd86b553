"""After every migrate: create the periodic schedule, and give the operator groups the permissions of
models added since (idempotently)."""

from __future__ import annotations

from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django_q.signals import post_spawn

TICKER_SCHEDULE = "bridge ticker"


@receiver(post_migrate)
def ensure_schedules(sender, app_config=None, using="default", **kwargs) -> None:
    if app_config is None or app_config.label != "bridge":
        return
    from django_q.models import Schedule

    Schedule.objects.using(using).update_or_create(
        name=TICKER_SCHEDULE,
        defaults={
            "func": "bridge.tasks.run_ticker",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )


@receiver(post_migrate)
def ensure_operator_groups(sender, app_config=None, using="default", **kwargs) -> None:
    if app_config is None or app_config.label != "bridge" or using != "default":
        return
    from bridge.permissions import ensure_groups

    ensure_groups(add_only=True)


@receiver(post_spawn)
def start_ticker(sender, proc_name=None, **kwargs) -> None:
    """Each django-q2 worker process runs a ticker thread; a lease lets one tick at a time."""
    from bridge import periodic

    periodic.start_ticker_thread()
