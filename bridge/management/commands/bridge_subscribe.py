"""Register the bridge's webhook with Infobip: the Subscriptions API (--subscriptions) or the
deprecated account configuration (default, kept for accounts that have not migrated)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from bridge.exceptions import BridgeError
from bridge.infobip import subscriptions
from bridge.infobip.client import InfobipClient


class Command(BaseCommand):
    help = "Register <BRIDGE_PUBLIC_URL>/webhooks/infobip/<token>/ with Infobip."

    def add_arguments(self, parser):
        parser.add_argument(
            "--subscriptions",
            action="store_true",
            help="Use the Subscriptions API (CUSTOMER_ENGAGEMENT subscription); created or updated idempotently.",
        )
        parser.add_argument(
            "--security",
            choices=["hmac", "basic", "header", "none"],
            default="hmac",
            help="How Subscriptions webhooks prove themselves (default hmac; the secret is generated and stored encrypted).",
        )
        parser.add_argument("--username", default="", help="Basic auth user (--security basic).")
        parser.add_argument(
            "--password", default="", help="Basic auth password (--security basic); generated if absent."
        )
        parser.add_argument("--rotate", action="store_true", help="Generate a new secret.")

    def handle(self, *args, **options):
        url = subscriptions.webhook_url()
        try:
            if options["subscriptions"]:
                result = subscriptions.subscribe(
                    security=options["security"].upper(),
                    username=options["username"],
                    password=options["password"],
                    rotate=options["rotate"],
                )
                done = ", ".join(f"{k} {v}" for k, v in result.actions.items())
                self.stdout.write(
                    f"subscription {result.subscription_id} ({result.security}) points at the bridge: {done}"
                )
                return
            self.stderr.write(
                "warning: Update Account Configuration is deprecated by Infobip (removal announced for "
                "31 December 2026) and replaces any webhook already set on the account; "
                "prefer --subscriptions."
            )
            InfobipClient().update_account_configuration(url)
        except BridgeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("account configuration webhook set to the bridge (legacy path)")
