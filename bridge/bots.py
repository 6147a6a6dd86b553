"""External-bot mode: the bridge as an Infobip external chatbot (`/ccaas/1/bots`).

Infobip forwards every inbound message of a bot's number or page to the bot's webhook until the
conversation is handed to someone else; the bot answers with Create Message carrying
`x-agent-id: <bot id>`, and hands over with Route conversation or Change conversation assignment.
Here the "bot" is the external contact center: the first message of a conversation opens a handover
on the bot's endpoint (or by routing rules), later ones are forwarded, agent replies go out as the
bot, and the agent's close releases the conversation per the endpoint's `bot_on_close` policy.

References: https://www.infobip.com/docs/api/customer-engagement/conversations/setup-bot,
https://www.infobip.com/docs/conversations/conversations-setup/integrations (external chatbots).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from bridge import delivery as engine
from bridge.exceptions import BridgeError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, InfobipBot, State
from bridge.services import Recorded, begin_close, infobip_client, record_once
from bridge.types import CloseReason, InfobipMessage

logger = logging.getLogger(__name__)

# Endpoint config keys: what the agent's close does to a conversation that came through a bot.
ON_CLOSE = "bot_on_close"  # "close" (default) | "route" | "assign" | "queue"
ON_CLOSE_TARGET = "bot_on_close_target"  # the Infobip agent id ("assign") or queue id ("queue")


class BotError(BridgeError):
    """A bot cannot be registered or changed as asked (shown to the operator)."""

    permanent = True


# --- inbound messages --------------------------------------------------------------------------------
def receive(bot: InfobipBot, messages: Iterable[InfobipMessage]) -> Recorded:
    """Record customer messages Infobip forwarded to the bot; open a handover for a conversation that
    has none. Writes rows only (the open job fetches history and opens the interaction); call inside
    no transaction: each message commits on its own, so a duplicate never rolls back another."""
    result = Recorded()
    for message in messages:
        for _attempt in range(2):  # a concurrent first message of the same conversation: look again
            link = (
                ConversationLink.objects.filter(
                    conversation_id=message.conversation_id, state__in=[State.REQUESTED, State.ACTIVE]
                )
                .only("pk")
                .first()
            )
            if link is not None:
                if record_once(link, message):
                    result.stored += 1
                else:
                    result.duplicates += 1
                break
            if ConversationLink.objects.filter(
                conversation_id=message.conversation_id, state=State.CLOSING
            ).exists():
                # The agent closed; the conversation is being released. Infobip keeps it and shows
                # the message to whoever gets it; the contact center's interaction is over.
                result.ignored += 1
                break
            try:
                _open(bot, message)
            except IntegrityError:
                continue
            result.stored += 1
            break
    InfobipBot.objects.filter(pk=bot.pk).update(last_message_at=timezone.now())
    return result


def _open(bot: InfobipBot, message: InfobipMessage) -> ConversationLink:
    with transaction.atomic():
        link = ConversationLink.objects.create(
            conversation_id=message.conversation_id,
            endpoint=bot.endpoint if bot.endpoint_id and bot.endpoint.enabled else None,
            bot=bot,
            channel=message.channel or bot.channel,
            customer_address=message.from_,
            business_sender=message.to or bot.destination,
        )
        Delivery.objects.create(
            link=link,
            kind=Delivery.Kind.OPEN,
            lane=Delivery.Lane.TO_CCAAS,
            phase=0,
            sort_at=link.escalated_at,
        )
        where = link.endpoint.slug if link.endpoint else "(routing rules)"
        link.note(
            "escalated", f"first message to bot {bot.display_name}; to {where}", actor=f"bot {bot.bot_id}"
        )
        record_once(link, message)
        engine.enqueue_lane(link.pk, Delivery.Lane.TO_CCAAS)
    return link


# --- the agent's close -------------------------------------------------------------------------------
def release(link: ConversationLink) -> str | None:
    """Give a bot conversation back to Infobip per its endpoint's `bot_on_close` policy.

    "close": Update conversation CLOSED; "route": Route conversation (Infobip's routing and agents take
    over, as Infobip documents for bot transfers); "assign": Change assignment to the agent in
    `bot_on_close_target`; "queue": set that queue and unassign the bot. Returns a "skipped" note or
    None; raises the client's errors for the engine to retry or dead-letter.
    """
    config = (link.endpoint.config or {}) if link.endpoint else {}
    policy = str(config.get(ON_CLOSE) or InfobipBot.OnClose.CLOSE)
    target = str(config.get(ON_CLOSE_TARGET) or "")
    client = infobip_client()
    if policy == InfobipBot.OnClose.ROUTE:
        client.route_conversation(link.conversation_id)
        link.note("released", "conversation routed to Infobip's agents")
    elif policy == InfobipBot.OnClose.ASSIGN and target:
        client.change_assignment(link.conversation_id, target)
        link.note("released", f"conversation assigned to Infobip agent {target}")
    elif policy == InfobipBot.OnClose.QUEUE and target:
        client.set_queue(link.conversation_id, target)
        client.unassign(link.conversation_id)
        link.note("released", f"conversation put in Infobip queue {target}")
    else:
        if policy != InfobipBot.OnClose.CLOSE:
            link.note("released", f"bot_on_close {policy!r} needs bot_on_close_target; closing instead")
        return None if client.close_conversation(link.conversation_id) else "already closed on Infobip"
    return None


# --- registration ------------------------------------------------------------------------------------
@dataclass
class BotSpec:
    """What `bridge_bot register` asks for."""

    display_name: str
    channel: str
    destination: str
    endpoint: CcaasEndpoint | None = None
    enabled: bool = True
    session_timeout_seconds: int = 86400
    secret: str | None = None  # None: keep the stored one, or generate one
    extra: dict[str, Any] = field(default_factory=dict)


def infobip_body(bot: InfobipBot) -> dict[str, Any]:
    """The BotApiModel Infobip gets. The secret travels as a static header: Infobip offers nothing
    else for bots. It is sent in both header maps, since Infobip documents `webhookHeaders` as
    deprecated and `webhookEventHeaders` without saying whether it covers the message webhook."""
    headers = {InfobipBot.SECRET_HEADER: bot.secret}
    return {
        "displayName": bot.display_name,
        "webhookUrl": bot.webhook_url(),
        "destination": bot.destination,
        "channel": bot.channel,
        "enabled": bot.enabled,
        "messagePersistencePolicy": "PERSIST_ALL",
        "sessionTimeoutInSec": bot.session_timeout_seconds,
        "webhookHeaders": headers,
        "webhookEventHeaders": headers,
    }


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _matches(remote: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether Infobip's copy shows every field we set (it does not show headers back)."""
    keys = ("displayName", "webhookUrl", "destination", "channel", "enabled", "sessionTimeoutInSec")
    return all(remote.get(k) == body[k] for k in keys if k in remote)


def register(spec: BotSpec) -> tuple[InfobipBot, str]:
    """Create or update, idempotently, the bot for (channel, destination), on Infobip and here.

    Returns (bot, "created" | "adopted" | "updated" | "unchanged"). Unchanged means no write on
    Infobip: the stored fingerprint of what was sent matches, and Infobip's copy still shows it.
    """
    bot = InfobipBot.objects.filter(channel=spec.channel, destination=spec.destination).first()
    if bot is None:
        bot = InfobipBot(
            channel=spec.channel,
            destination=spec.destination,
            webhook_token=secrets.token_urlsafe(32),
            credentials={"secret": spec.secret or secrets.token_urlsafe(32)},
        )
    elif spec.secret:
        bot.credentials = {"secret": spec.secret}
    bot.display_name = spec.display_name
    bot.endpoint = spec.endpoint
    bot.enabled = spec.enabled
    bot.session_timeout_seconds = spec.session_timeout_seconds
    return bot, push(bot)


def push(bot: InfobipBot) -> str:
    """Bring Infobip's copy of the bot in line with ours; save ours. See register()."""
    client = infobip_client()
    body = infobip_body(bot)
    wanted = fingerprint(body)
    remote = client.get_bot(bot.bot_id) if bot.bot_id else None
    adopted = False
    if remote is None and not bot.bot_id:
        # A bot already on Infobip for this number and channel (made in the web interface, or by a
        # run that stopped before saving) is taken over rather than duplicated.
        remote = next(
            (
                b
                for b in client.list_bots()
                if b.get("destination") == bot.destination and b.get("channel") == bot.channel
            ),
            None,
        )
        if remote is not None:
            bot.bot_id, adopted = str(remote["id"]), True
    if remote is None:
        created = client.create_bot(body)
        bot.bot_id, outcome = str(created["id"]), "created"
    elif not adopted and bot.registered_fingerprint == wanted and _matches(remote, body):
        outcome = "unchanged"
    else:
        client.update_bot(bot.bot_id, body)
        outcome = "adopted" if adopted else "updated"
    bot.registered_fingerprint = wanted
    bot.last_checked_at = timezone.now()
    bot.last_error = ""
    bot.save()
    return outcome


def remove(bot: InfobipBot) -> int:
    """Delete the bot on Infobip (which re-routes its open conversations) and here; the contact
    center's interactions of its open handovers are closed. Returns how many were closed."""
    if bot.bot_id:
        infobip_client().delete_bot(bot.bot_id)
    closed = _end_handovers(bot, "the bot was removed; Infobip re-routes its conversations")
    bot.delete()
    return closed


def _end_handovers(bot: InfobipBot, why: str) -> int:
    count = 0
    for link in ConversationLink.objects.filter(bot=bot, state__in=[State.REQUESTED, State.ACTIVE]):
        link.note("bot_gone", why)
        if begin_close(link, CloseReason.OPERATOR, actor=f"bot {bot.display_name}", close_infobip=False):
            count += 1
    return count


def check(bot: InfobipBot, remote: dict[str, Any] | bool | None = False) -> str:
    """Compare the bot with Infobip's copy (`remote`: Infobip's bot, or None when it has none; read
    here when not given). A bot disabled or deleted on Infobip no longer receives messages and
    Infobip re-routes its conversations on the next inbound message: its open handovers are closed
    on the contact center's side, visibly. Returns what was seen, in operator words."""
    now = timezone.now()
    if remote is False:
        try:
            remote = infobip_client().get_bot(bot.bot_id) if bot.bot_id else None
        except BridgeError as exc:
            InfobipBot.objects.filter(pk=bot.pk).update(last_error=str(exc)[:2000], last_checked_at=now)
            return f"could not check: {exc}"
    if remote is None:
        state, why = "missing", "the bot no longer exists on Infobip"
    elif not remote.get("enabled", True):
        state, why = "disabled", "the bot is disabled on Infobip"
    else:
        InfobipBot.objects.filter(pk=bot.pk).update(enabled=True, last_error="", last_checked_at=now)
        return "enabled"
    if not bot.enabled and bot.last_error == why:
        InfobipBot.objects.filter(pk=bot.pk).update(last_checked_at=now)
        return f"{state}: {why} (already noticed)"
    closed = _end_handovers(bot, f"{why}; Infobip re-routes its conversations")
    logger.warning("Infobip bot %s (%s %s): %s", bot.bot_id, bot.channel, bot.destination, why)
    InfobipBot.objects.filter(pk=bot.pk).update(enabled=False, last_error=why, last_checked_at=now)
    return f"{state}: {why}" + (f"; {closed} open handovers closed" if closed else "")


def check_all() -> int:
    """Check every registered bot with one Get Bots listing (the ticker runs this every
    BRIDGE_BOT_CHECK_SECONDS while bots exist). Returns how many bots were newly found disabled or gone."""
    bots = list(InfobipBot.objects.exclude(bot_id=""))
    if not bots:
        return 0
    try:
        remote = {str(b.get("id")): b for b in infobip_client().list_bots()}
    except BridgeError as exc:
        logger.warning("Infobip bots could not be checked: %s", exc)
        return 0
    noticed = 0
    for bot in bots:
        was_enabled = bot.enabled
        if check(bot, remote.get(bot.bot_id)) != "enabled" and was_enabled:
            noticed += 1
    return noticed
