"""manage.py bridge_bot register|update|list|check|remove: the bridge as an Infobip external chatbot.

The bot's secret header value never goes on the command line: it is generated, or read from an
environment variable (--secret-env NAME), a file (--secret-file PATH) or standard input (--secret-stdin).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bridge import bots
from bridge.exceptions import BridgeError
from bridge.models import CcaasEndpoint, InfobipBot

# Infobip's MessageChannel values an external bot can serve (Conversations spec, BotApiModel.channel).
CHANNELS = (
    "WHATSAPP",
    "FACEBOOK_MESSENGER",
    "VIBER",
    "VIBER_BOT",
    "LIVE_CHAT",
    "SMS",
    "RCS",
    "TELEGRAM",
    "INSTAGRAM_MESSAGING",
    "LINE",
    "APPLE_BUSINESS_CHAT",
    "KAKAO_SANGDAM",
    "EMAIL",
)


def _secret(options: dict) -> str | None:
    if options.get("secret_env"):
        value = os.environ.get(options["secret_env"], "")
        if not value:
            raise CommandError(f"environment variable {options['secret_env']} is empty or not set")
    elif options.get("secret_file"):
        try:
            value = Path(options["secret_file"]).read_text().strip()
        except OSError as exc:
            raise CommandError(f"cannot read --secret-file: {exc.strerror}") from exc
    elif options.get("secret_stdin"):
        value = sys.stdin.readline().strip()
    else:
        return None
    if len(value) < 24:
        raise CommandError("the bot secret must be at least 24 characters")
    return value


class Command(BaseCommand):
    help = "Register, update, list, check and remove Infobip external bots whose webhook is the bridge."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("register", help="create or update (idempotently) the bot of a number/page")
        p.add_argument("--name", required=True, help="the bot's display name on Infobip")
        p.add_argument("--channel", required=True, choices=CHANNELS)
        p.add_argument("--destination", required=True, help="phone number, Messenger page id or widget id")
        self._common(p)
        p = sub.add_parser("update", help="change a registered bot")
        p.add_argument("bot", help="Infobip bot id or destination")
        p.add_argument("--name")
        p.add_argument("--enable", action="store_true")
        p.add_argument("--disable", action="store_true")
        p.add_argument("--rotate-secret", action="store_true", help="generate a new secret header value")
        self._common(p)
        sub.add_parser("list", help="list the bots (never shows secrets)")
        p = sub.add_parser(
            "check", help="compare with Infobip; a disabled or deleted bot's handovers are closed"
        )
        p.add_argument("bot", nargs="?", help="Infobip bot id or destination; all when omitted")
        p = sub.add_parser("remove", help="delete the bot on Infobip and here")
        p.add_argument("bot", help="Infobip bot id or destination")

    @staticmethod
    def _common(p: CommandParser) -> None:
        p.add_argument("--endpoint", help="endpoint slug; without it, routing rules then the default")
        p.add_argument("--no-endpoint", action="store_true", help="(update) route by rules again")
        p.add_argument("--session-timeout", type=int, help="seconds, 60..86400 (Infobip's default 86400)")
        secret = p.add_mutually_exclusive_group()
        secret.add_argument("--secret-env", metavar="NAME", help="read the secret header value from $NAME")
        secret.add_argument("--secret-file", metavar="PATH", help="read it from a file")
        secret.add_argument("--secret-stdin", action="store_true", help="read it from standard input")

    def handle(self, *args, action: str, **options) -> None:
        try:
            getattr(self, f"_{action}")(**options)
        except BridgeError as exc:
            raise CommandError(str(exc)) from exc

    @staticmethod
    def _endpoint(slug: str | None) -> CcaasEndpoint | None:
        if not slug:
            return None
        endpoint = CcaasEndpoint.objects.filter(slug=slug).first()
        if endpoint is None:
            raise CommandError(f"no endpoint {slug!r}")
        return endpoint

    @staticmethod
    def _bot(key: str) -> InfobipBot:
        bot = (
            InfobipBot.objects.filter(bot_id=key).first()
            or InfobipBot.objects.filter(destination=key).first()
        )
        if bot is None:
            raise CommandError(f"no bot with id or destination {key!r}")
        return bot

    @staticmethod
    def _timeout(value: int | None, default: int) -> int:
        if value is None:
            return default
        if not 60 <= value <= 86400:
            raise CommandError("--session-timeout must be between 60 and 86400 seconds")
        return value

    def _register(self, **o) -> None:
        current = InfobipBot.objects.filter(channel=o["channel"], destination=o["destination"]).first()
        spec = bots.BotSpec(
            display_name=o["name"],
            channel=o["channel"],
            destination=o["destination"],
            endpoint=self._endpoint(o.get("endpoint")),
            enabled=current.enabled if current else True,
            session_timeout_seconds=self._timeout(
                o.get("session_timeout"), current.session_timeout_seconds if current else 86400
            ),
            secret=_secret(o),
        )
        bot, outcome = bots.register(spec)
        self.stdout.write(
            f"{outcome}: bot {bot.bot_id} ({bot.channel} {bot.destination}); webhook {bot.webhook_url()}"
        )

    def _update(self, bot: str, **o) -> None:
        row = self._bot(bot)
        if o.get("name"):
            row.display_name = o["name"]
        if o.get("endpoint"):
            row.endpoint = self._endpoint(o["endpoint"])
        if o.get("no_endpoint"):
            row.endpoint = None
        if o.get("enable"):
            row.enabled = True
        if o.get("disable"):
            row.enabled = False
        row.session_timeout_seconds = self._timeout(o.get("session_timeout"), row.session_timeout_seconds)
        secret = _secret(o)
        if o.get("rotate_secret"):
            import secrets

            secret = secrets.token_urlsafe(32)
        if secret:
            row.credentials = {"secret": secret}
        outcome = bots.push(row)
        self.stdout.write(f"{outcome}: bot {row.bot_id} ({row.channel} {row.destination})")
        if o.get("disable"):
            # Infobip re-routes a disabled bot's conversations; their interactions end here, visibly.
            self.stdout.write(f"check: {bots.check(row)}")

    def _list(self, **o) -> None:
        rows = InfobipBot.objects.select_related("endpoint")
        if not rows:
            self.stdout.write("no bots; register one with: manage.py bridge_bot register --name ... ")
            return
        for b in rows:
            last = b.last_message_at.isoformat() if b.last_message_at else "-"
            self.stdout.write(
                f"{b.bot_id or '-'}\t{b.channel}\t{b.destination}\t{b.display_name}\t"
                f"endpoint={b.endpoint.slug if b.endpoint else '(routing)'}\t"
                f"{'enabled' if b.enabled else 'disabled'}\tlast_message={last}\t"
                f"open_handovers={b.handovers.filter(state__in=['REQUESTED', 'ACTIVE', 'CLOSING']).count()}\t"
                f"last_error={(b.last_error or '-')[:80]}"
            )

    def _check(self, bot: str | None = None, **o) -> None:
        rows = [self._bot(bot)] if bot else list(InfobipBot.objects.all())
        for row in rows:
            self.stdout.write(f"{row.bot_id or '-'} ({row.channel} {row.destination}): {bots.check(row)}")

    def _remove(self, bot: str, **o) -> None:
        row = self._bot(bot)
        label = f"{row.bot_id} ({row.channel} {row.destination})"
        closed = bots.remove(row)
        self.stdout.write(f"removed bot {label}" + (f"; {closed} open handovers closed" if closed else ""))
