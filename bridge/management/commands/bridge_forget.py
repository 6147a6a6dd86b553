"""manage.py bridge_forget --customer ADDRESS: erase one customer's message content (right to erasure)."""

from django.core.management.base import BaseCommand, CommandError

from bridge import retention


class Command(BaseCommand):
    help = (
        "Erase one customer's message content, context and address from every ended handover of theirs "
        "(ids, times and counts stay). Refuses while one of their handovers is still in progress."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--customer",
            required=True,
            help="the customer's channel address as Infobip gives it, e.g. 447700900123",
        )

    def handle(self, *args, customer: str, **options) -> None:
        try:
            result = retention.forget_customer(customer, actor="bridge_forget")
        except (retention.OpenHandovers, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if not result.handovers and not result.raw_payloads:
            self.stdout.write("nothing stored for that customer")
            return
        self.stdout.write(f"erased: {result}")
