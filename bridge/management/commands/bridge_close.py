"""manage.py bridge_close ID: close a handover (by handover id or Infobip conversation id) on both sides."""

from django.core.management.base import BaseCommand, CommandError

from bridge import services
from bridge.exceptions import NotFoundError


class Command(BaseCommand):
    help = "Close a handover on both sides, by handover id or Infobip conversation id."

    def add_arguments(self, parser) -> None:
        parser.add_argument("id", help="handover id, or Infobip conversation id (its newest handover)")
        parser.add_argument(
            "--wait", action="store_true", help="carry out the close here instead of by the workers"
        )

    def handle(self, *args, id: str, wait: bool, **options) -> None:
        try:
            link = services.find_handover(id)
        except NotFoundError as exc:
            raise CommandError(str(exc)) from exc
        if not services.close_handover(link, actor="bridge_close"):
            raise CommandError(f"handover {link.pk} is {link.state}; nothing to close")
        if wait:
            from bridge import delivery

            delivery.drain()
        link.refresh_from_db()  # the state after the close, not the one it was found in
        self.stdout.write(f"handover {link.pk} ({link.conversation_id}): {link.state}")
