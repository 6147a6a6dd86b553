"""manage.py bridge_totp USERNAME: give a console user a TOTP device (the second factor of the console).

Prints the otpauth:// URI and a QR code (text) to scan with an authenticator app, then asks for the code
the app shows, and keeps the device only when that code is right (`--no-confirm` keeps it unconfirmed for
the user to confirm in the console). `--list` shows a user's devices; `--delete NAME` removes one (for a
lost phone). The secret is printed once, here, never logged.
"""

from __future__ import annotations

import io
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Give a console user a TOTP device for the second factor (prints a QR code to scan)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--name", default="authenticator", help="a name for the device (default: authenticator)"
        )
        parser.add_argument(
            "--list", dest="show", action="store_true", help="list the user's devices and exit"
        )
        parser.add_argument("--delete", metavar="NAME", help="delete the user's device NAME and exit")
        parser.add_argument(
            "--no-confirm", action="store_true", help="do not ask for a code; the device stays unconfirmed"
        )

    def handle(
        self, *args, username: str, name: str, show: bool, delete: str | None, no_confirm: bool, **options
    ):
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user {username!r}; create one with createsuperuser first")
        devices = TOTPDevice.objects.filter(user=user)
        if show:
            for device in devices.order_by("id"):
                self.stdout.write(f"{device.name}\t{'confirmed' if device.confirmed else 'unconfirmed'}")
            return
        if delete:
            deleted, _ = devices.filter(name=delete).delete()
            if not deleted:
                raise CommandError(f"{username} has no device named {delete!r}")
            self.stdout.write(f"deleted {username}'s device {delete!r}")
            return
        if devices.filter(name=name).exists():
            raise CommandError(f"{username} already has a device named {name!r}; use --name or --delete")
        with transaction.atomic():
            device = TOTPDevice.objects.create(user=user, name=name, confirmed=False)
            self.stdout.write(
                f"Scan this with an authenticator app, or enter the URI by hand:\n{device.config_url}\n"
            )
            self.stdout.write(self._qr(device.config_url))
            if no_confirm:
                self.stdout.write(f"device {name!r} created unconfirmed for {username}")
                return
            code = self._ask("Code the app shows now: ")
            if not device.verify_token(code):
                transaction.set_rollback(True)
                raise CommandError("that code is not right (check the phone's clock); nothing was saved")
            device.confirmed = True
            device.save(update_fields=["confirmed"])
        self.stdout.write(self.style.SUCCESS(f"device {name!r} confirmed for {username}"))

    def _ask(self, prompt: str) -> str:
        self.stdout.write(prompt, ending="")
        self.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise CommandError("no code given on standard input; nothing was saved")
        return line.strip().replace(" ", "")

    @staticmethod
    def _qr(text: str) -> str:
        import qrcode

        qr = qrcode.QRCode(border=1)
        qr.add_data(text)
        out = io.StringIO()
        qr.print_ascii(out=out, invert=True)
        return out.getvalue()
