"""Infobip's custom context card: what the external contact center did with a conversation.

Infobip's agent workspace calls the card's webhook with the conversation's variables and shows the
answer next to the conversation, so an Infobip agent taking a conversation back sees at once whether
it was handed over, where, to whom, how it ended and what was said. Built from the database only:
no outbound call on the request path, and never a credential (endpoint credentials are not loaded).

Reference (configuration fields, variables): https://www.infobip.com/docs/conversations/conversations-setup/integrations
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from bridge import media
from bridge.connectors import connector_class
from bridge.exceptions import ConfigurationError
from bridge.models import ConversationLink, Delivery, Message, State
from bridge.types import Customer, InteractionRef

MAX_HANDOVERS = 10  # newest first; older ones are counted, not listed
TRANSCRIPT_MESSAGES = 8  # the last few messages of the newest handover

# The card variables Infobip documents for the webhook URL (`{{conversation.<name>}}`); any of them
# sent as query parameters (or in a POST body) are echoed back under "variables".
VARIABLES = (
    "conversationId",
    "agentId",
    "agentNumber",
    "channel",
    "customerDisplayName",
    "customerNumber",
    "priority",
    "queueId",
)

STATE_WORDS = {
    State.REQUESTED: "waiting to be opened in the contact center",
    State.ACTIVE: "with the contact center",
    State.CLOSING: "closing",
    State.CLOSED: "closed",
    State.FAILED: "failed: not taken by the contact center",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def safe_link(url: str | None) -> str | None:
    """An http(s) link without user information (a link is shown to people; it never carries a
    password, even one an operator put into a base URL)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def interaction_link(link: ConversationLink) -> str | None:
    """The deep link into the contact center for this handover (see Connector.interaction_url)."""
    endpoint = link.endpoint
    if endpoint is None or not link.interaction_id:
        return None
    try:
        cls = connector_class(endpoint.kind)
    except ConfigurationError:
        return None
    ref = InteractionRef(
        handover_id=str(link.pk),
        conversation_id=link.conversation_id,
        interaction_id=link.interaction_id,
        channel=link.channel,
        customer=Customer(address=link.customer_address),
        data=link.interaction_data or {},
    )
    return safe_link(cls.interaction_url(endpoint.config or {}, ref))


def _stuck_reason(link: ConversationLink, failing: Delivery | None, now: datetime) -> str:
    minutes = int(settings.BRIDGE_STUCK_AFTER_SECONDS // 60)
    if failing is not None:
        since = int((now - failing.failing_since).total_seconds() // 60) if failing.failing_since else 0
        what = failing.get_kind_display().lower()
        error = failing.last_error or "no answer"
        return f"{what} failing for {since} min ({failing.attempts} attempts): {error}"
    if link.state == State.REQUESTED:
        return f"not opened in the contact center after more than {minutes} min"
    if link.state == State.CLOSING:
        return f"the close is not confirmed after more than {minutes} min"
    return ""


def _handover(link: ConversationLink, stuck_ids: set, now: datetime) -> dict[str, Any]:
    counts = Message.objects.filter(link=link, in_history=False).aggregate(
        inbound=Count("pk", filter=Q(direction=Message.Direction.INBOUND)),
        outbound=Count("pk", filter=Q(direction=Message.Direction.OUTBOUND)),
    )
    agent = (
        Message.objects.filter(link=link, direction=Message.Direction.OUTBOUND, in_history=False)
        .exclude(author_name="")
        .order_by("-created_at", "-pk")
        .values_list("author_name", flat=True)
        .first()
    )
    failing = (
        Delivery.objects.filter(link=link, failing_since__isnull=False)
        .exclude(state__in=(Delivery.Status.DONE, Delivery.Status.SKIPPED))
        .order_by("failing_since")
        .first()
    )
    stuck = link.pk in stuck_ids
    last_error = link.last_error or (failing.last_error if failing else "")
    endpoint = link.endpoint
    bot = link.bot
    return {
        "id": str(link.pk),
        "state": link.state,
        "stateText": STATE_WORDS.get(link.state, link.state.lower()),
        "stuck": stuck,
        "stuckReason": _stuck_reason(link, failing, now) if stuck else None,
        "endpoint": (
            {"slug": endpoint.slug, "name": endpoint.name or endpoint.slug, "kind": endpoint.kind}
            if endpoint
            else None
        ),
        "interactionId": link.interaction_id or None,
        "interactionUrl": interaction_link(link),
        "agentName": agent or None,
        "bot": ({"id": bot.bot_id, "name": bot.display_name} if bot is not None else None),
        "queue": link.queue or None,
        "priority": link.priority,
        "escalatedAt": _iso(link.escalated_at),
        "openedAt": _iso(link.opened_at),
        "acceptedAt": _iso(link.accepted_at),
        "closedAt": _iso(link.closed_at),
        "closeReason": link.close_reason or None,
        "closedBy": link.closed_by or None,
        "messagesFromCustomer": counts["inbound"],
        "messagesToCustomer": counts["outbound"],
        "lastError": last_error[:500] or None,
    }


def _transcript(link: ConversationLink) -> list[dict[str, Any]]:
    rows = list(
        Message.objects.filter(link=link)
        .order_by("-created_at", "-pk")
        .only(
            "direction", "author_type", "author_name", "content_type", "content", "created_at", "in_history"
        )[:TRANSCRIPT_MESSAGES]
    )
    return [
        {
            "direction": row.direction,
            "author": row.author_name
            or {"CUSTOMER": "Customer", "BOT": "Bot", "AGENT": "Agent"}.get(row.author_type, row.author_type),
            "authorType": row.author_type,
            "contentType": row.content_type,
            "text": media.render_text(row.content_type, row.content)[:1000],
            "createdAt": _iso(row.created_at),
            "beforeHandover": row.in_history,
        }
        for row in reversed(rows)
    ]


def _summary(handovers: list[dict[str, Any]]) -> str:
    if not handovers:
        return "Never handed over to the external contact center."
    newest = handovers[0]
    where = newest["endpoint"]["name"] if newest["endpoint"] else "the contact center"
    text = {
        State.REQUESTED: f"Waiting to be opened in {where}.",
        State.ACTIVE: f"With {where}" + (f" (agent {newest['agentName']})." if newest["agentName"] else "."),
        State.CLOSING: f"Being closed in {where}.",
        State.CLOSED: f"Handled in {where}; closed ({(newest['closeReason'] or 'closed').lower()}).",
        State.FAILED: f"{where} could not take it: {newest['lastError'] or 'failed'}.",
    }.get(newest["state"], newest["state"])
    if newest["stuck"]:
        text += f" Stuck: {newest['stuckReason']}."
    return text


def build_card(conversation_id: str, variables: dict[str, str] | None = None) -> dict[str, Any]:
    """The card for one Infobip conversation.

    Shape: {"conversationId", "variables": {name: value echoed}, "handedOver": bool, "open": bool,
    "summary": str, "handoverCount": int, "handovers": [handover, ...] (newest first, at most
    MAX_HANDOVERS), "transcript": [message, ...] (the newest handover's last messages, oldest first),
    "generatedAt"}. An unknown conversation gives handedOver false and empty lists (not an error).
    """
    now = timezone.now()
    links = ConversationLink.objects.filter(conversation_id=conversation_id).select_related("endpoint", "bot")
    links = links.defer("endpoint__credentials", "bot__credentials", "context", "metadata")
    total = links.count()
    newest = list(links.order_by("-escalated_at")[:MAX_HANDOVERS])
    stuck_ids = set(
        ConversationLink.objects.stuck(now).filter(pk__in=[x.pk for x in newest]).values_list("pk", flat=True)
    )
    handovers = [_handover(link, stuck_ids, now) for link in newest]
    return {
        "conversationId": conversation_id,
        "variables": {k: v for k, v in (variables or {}).items() if k in VARIABLES and k != "conversationId"},
        "handedOver": bool(handovers),
        "open": any(h["state"] in (State.REQUESTED, State.ACTIVE, State.CLOSING) for h in handovers),
        "summary": _summary(handovers),
        "handoverCount": total,
        "handovers": handovers,
        "transcript": _transcript(newest[0]) if newest else [],
        "generatedAt": now.isoformat(),
    }
