"""Create (or repair) the operator groups: "Operators (read-only)" and "Operators"."""

from django.core.management.base import BaseCommand

from bridge.permissions import OPERATORS, READ_ONLY, ensure_groups


class Command(BaseCommand):
    help = "Create or repair the operator groups (read-only operators, and operators who may run actions)."

    def handle(self, *args, **options):
        ensure_groups()
        self.stdout.write(f"groups ready: {READ_ONLY!r}, {OPERATORS!r}")
