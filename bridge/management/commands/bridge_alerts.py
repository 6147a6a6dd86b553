"""Evaluate alerts and send the due ones now; with --check-worker also notice a missing worker."""

from django.core.management.base import BaseCommand

from bridge import alerts


class Command(BaseCommand):
    help = (
        "Open and resolve alert incidents and send due alert messages. Run it from cron with "
        "--check-worker: it then also alerts when no worker has run the ticker for "
        "BRIDGE_ALERT_HEARTBEAT_SECONDS (a stopped worker cannot report itself)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check-worker", action="store_true", help="also check the worker heartbeat")

    def handle(self, *args, check_worker=False, **options):
        result, sent = alerts.run(check_worker=check_worker)
        self.stdout.write(
            f"{_n(result.opened, 'incident')} opened, {result.resolved} resolved, "
            f"{_n(result.queued, 'message')} queued, {sent} sent"
        )


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
