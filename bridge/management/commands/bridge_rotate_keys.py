"""manage.py bridge_rotate_keys: re-encrypt every stored secret with the first BRIDGE_ENCRYPTION_KEYS key."""

from django.core.management.base import BaseCommand, CommandError

from bridge import keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (endpoint credentials, the Infobip subscription secret, any "
        "encrypted field) with the first key of BRIDGE_ENCRYPTION_KEYS, so the older keys can be removed. "
        "Changes nothing and exits 1 when a value cannot be decrypted or the keys look oldest-first."
    )

    def handle(self, *args, **options) -> None:
        try:
            result = keys.rotate()
        except keys.RotationRefused as exc:
            raise CommandError(f"nothing re-encrypted: {exc}") from exc
        moved = ", ".join(f"{count} {name}" for name, count in sorted(result.rows.items())) or "nothing"
        self.stdout.write(
            f"re-encrypted with key #1: {moved}; {result.already_current} value(s) already used key #1"
        )
        count = len(keys.configured_keys())
        if count > 1:
            self.stdout.write(
                f"no stored value needs keys #2..#{count} any more: remove them from BRIDGE_ENCRYPTION_KEYS"
            )
