"""manage.py bridge_rotate_keys: re-encrypt stored credentials with the first BRIDGE_ENCRYPTION_KEYS key."""

from django.core.management.base import BaseCommand
from django.db import transaction

from bridge.models import CcaasEndpoint


class Command(BaseCommand):
    help = "Re-encrypt every endpoint's credentials with the newest key, so older keys can be removed."

    def handle(self, *args, **options) -> None:
        count = 0
        with transaction.atomic():
            for endpoint in CcaasEndpoint.objects.select_for_update():
                endpoint.save(update_fields=["credentials"])  # decrypts with any key, encrypts with the first
                count += 1
        self.stdout.write(f"re-encrypted the credentials of {count} endpoints")
