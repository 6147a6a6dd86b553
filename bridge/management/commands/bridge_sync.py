"""manage.py bridge_sync: every periodic job once, now (for cron-style deployments and operators)."""

from django.core.management.base import BaseCommand

from bridge import delivery, periodic


class Command(BaseCommand):
    help = "Poll endpoints, retry due deliveries, flag stuck handovers and close idle ones, once, now."

    def handle(self, *args, **options) -> None:
        result = periodic.tick(inline=True, poll_all=True)
        drained = delivery.drain()
        self.stdout.write(f"{result}; {drained} deliveries carried out")
