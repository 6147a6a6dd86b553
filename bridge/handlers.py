"""The delivery handlers: what each kind of Delivery does when the engine runs it.

Each takes the claimed Delivery, re-reads what it needs, makes its calls (Infobip, the endpoint's
connector), and returns None (done), a note starting with "skipped" (nothing to do), or raises a
Transient/PermanentError for the engine to retry or dead-letter.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bridge import delivery as engine
from bridge import media
from bridge.causes import INFOBIP
from bridge.connectors import get_connector
from bridge.exceptions import ConversationClosedError, InteractionOverError, NotFoundError, PermanentError
from bridge.models import ConversationLink, Delivery, Message, OwnMessage, State, Tag
from bridge.services import ROUTE_BACK_TAG, choose_endpoint, infobip_client, interaction_over
from bridge.types import (
    AuthorType,
    CloseReason,
    Customer,
    Direction,
    HandoverContext,
    InfobipMessage,
    InteractionRef,
)

logger = logging.getLogger(__name__)


# --- the delivery handlers -----------------------------------------------------------------------
def interaction_ref(link: ConversationLink) -> InteractionRef:
    return InteractionRef(
        handover_id=str(link.pk),
        conversation_id=link.conversation_id,
        interaction_id=link.interaction_id,
        channel=link.channel,
        customer=Customer(address=link.customer_address, display_name=link.customer_name or None),
        data=link.interaction_data or {},
    )


def to_infobip_message(row: Message, link: ConversationLink) -> InfobipMessage:
    inbound = row.direction == Message.Direction.INBOUND
    content = row.content if isinstance(row.content, dict) else {}
    reply_id = media.reply_reference(content, row.raw) if inbound else ""
    if reply_id and not isinstance(content.get("replyTo"), dict):
        # The customer answered an earlier message: carry which one, quoted, so the agent sees it.
        quoted = (
            Message.objects.filter(link__conversation_id=link.conversation_id, infobip_message_id=reply_id)
            .order_by("-created_at")
            .first()
        )
        text = media.render_text(quoted.content_type, quoted.content) if quoted else ""
        content = {**content, "replyTo": {"id": reply_id, "text": text}}
    return InfobipMessage(
        id=row.infobip_message_id or row.external_id,
        conversation_id=link.conversation_id,
        channel=link.channel,
        from_=link.customer_address if inbound else link.business_sender,
        to=link.business_sender if inbound else link.customer_address,
        direction=Direction(row.direction),
        content_type=row.content_type,
        content=content,
        created_at=row.created_at,
        author_type=AuthorType(row.author_type)
        if row.author_type in AuthorType.__members__
        else AuthorType.CUSTOMER,
        raw=row.raw,
        recovered=row.recovered,
    )


def _customer_side(history: list[InfobipMessage], link: ConversationLink) -> tuple[str, str, str]:
    """(channel, customer address, business sender) from the newest message that tells."""
    for message in reversed(history):
        if message.direction == Direction.INBOUND:
            return message.channel, message.from_, message.to
    queued = (
        Message.objects.filter(link=link, direction=Message.Direction.INBOUND).order_by("-created_at").first()
    )
    if queued and queued.raw:
        return queued.raw.get("channel", ""), queued.raw.get("from", ""), queued.raw.get("to", "")
    for message in reversed(history):
        return message.channel, message.to, message.from_
    raise PermanentError("the conversation has no messages, so the customer's address is unknown")


def handle_open(delivery: Delivery) -> str | None:
    link = ConversationLink.objects.get(pk=delivery.link_id)
    if link.state != State.REQUESTED:
        return f"skipped: handover is {link.state}"
    client = infobip_client()
    try:
        conversation = client.get_conversation(link.conversation_id)
    except NotFoundError as exc:
        raise NotFoundError(
            f"conversation {link.conversation_id} does not exist on Infobip", service=INFOBIP
        ) from exc
    if str(conversation.get("status", "")).upper() == "CLOSED":
        raise ConversationClosedError(
            f"conversation {link.conversation_id} is already closed on Infobip; nothing was sent",
            service=INFOBIP,
        )
    history = client.get_messages(link.conversation_id)
    tags = client.get_tags(link.conversation_id)
    metadata = client.get_metadata(link.conversation_id)
    channel, customer, sender = _customer_side(history, link)
    endpoint = link.endpoint or choose_endpoint(tags, metadata, channel=channel, destination=sender)
    if endpoint is None:
        raise PermanentError("no routing rule matches this conversation and there is no default endpoint")
    display_name = (link.context or {}).get("displayName") or (link.context or {}).get("customerName")
    with transaction.atomic():
        link.endpoint = endpoint
        link.channel, link.customer_address, link.business_sender = channel, customer, sender
        link.customer_name = str(display_name or "")[:255]
        link.metadata = metadata
        link.save(
            update_fields=[
                "endpoint",
                "channel",
                "customer_address",
                "business_sender",
                "customer_name",
                "metadata",
            ]
        )
        for name in tags:
            Tag.objects.get_or_create(link=link, name=name[:100])
    connector = get_connector(endpoint)
    ctx = HandoverContext(
        handover_id=str(link.pk),
        conversation_id=link.conversation_id,
        channel=channel,
        customer=Customer(address=customer, display_name=link.customer_name or None),
        queue=link.queue,
        priority=link.priority,
        tags=tags,
        metadata=metadata,
        context=link.context or {},
        history=[media.for_connector(m, attachments=connector.capabilities.attachments) for m in history],
    )
    result = connector.open_interaction(ctx)
    if settings.INFOBIP_AGENT_ID and not link.bot_id:
        # In external-bot mode the conversation stays assigned to the bot, which writes as itself.
        client.change_assignment(link.conversation_id, settings.INFOBIP_AGENT_ID)
    now = timezone.now()
    with transaction.atomic():
        ConversationLink.objects.filter(pk=link.pk).update(
            interaction_id=result.interaction_id,
            interaction_data=result.data,
            state=State.ACTIVE,
            opened_at=now,
            last_activity_at=now,
            last_infobip_message_at=history[-1].created_at if history else None,
            last_error="",
        )
        skipped = _record_history(link, history)
        link.note(
            "opened",
            f"interaction {result.interaction_id} on {endpoint.slug} with {len(history)} messages of history"
            + (f"; {skipped} queued messages were part of it" if skipped else ""),
        )
    return None


def _record_history(link: ConversationLink, history: list[InfobipMessage]) -> int:
    """Keep the history as the transcript; a queued message that the history already carried is
    marked delivered, so each customer message reaches the contact center exactly once."""
    skipped = 0
    for message in history:
        row, created = Message.objects.get_or_create(
            link=link,
            source=Message.Source.INFOBIP,
            external_id=message.id,
            defaults={
                "direction": message.direction.value,
                "infobip_message_id": message.id,
                "author_type": message.author_type.value,
                "content_type": message.content_type,
                "content": message.content,
                "created_at": message.created_at,
                "in_history": True,
                "raw": message.raw,
            },
        )
        if not created:
            Message.objects.filter(pk=row.pk).update(in_history=True)
            skipped += Delivery.objects.filter(message=row, state=Delivery.Status.PENDING, attempts=0).update(
                state=Delivery.Status.SKIPPED,
                done_at=timezone.now(),
                last_error="skipped: carried in the opening history",
            )
    return skipped


def handle_message(delivery: Delivery) -> str | None:
    link = delivery.link  # loaded with its endpoint by the claim (delivery.claim_batch)
    row = delivery.message
    if delivery.lane == Delivery.Lane.TO_CCAAS:
        if not link.interaction_id:
            return "skipped: the interaction was never opened"
        if not media.has_content(row.content_type, row.content):
            link.note("skipped", f"customer message {row.external_id} has nothing to show; not sent")
            return "skipped: the customer message has nothing to show"
        return _send_to_ccaas(delivery, link, row)
    return _send_to_customer(delivery, link, row)


def _send_to_ccaas(delivery: Delivery, link: ConversationLink, row: Message) -> str | None:
    """Send a customer message to the interaction: in parts, in order, when it is longer than the
    contact center takes (Connector.text_limit, in its unit). The parts already sent are
    remembered on the delivery, so a retry never repeats one."""
    connector = get_connector(link.endpoint)
    message = media.for_connector(
        to_infobip_message(row, link),
        attachments=connector.capabilities.attachments,
        recovered_field=connector.capabilities.recovered_field,
    )
    unit = connector.capabilities.text_unit
    parts = media.split_for_limit(message, connector.text_limit, unit)
    payload = dict(delivery.payload or {})
    sent = int(payload.get("parts_sent", 0))
    ref = interaction_ref(link)
    for index in range(sent, len(parts)):
        try:
            own_ids = connector.send_customer_message(ref, parts[index]) or []
        except InteractionOverError as exc:
            note = interaction_over(link, str(exc))
            if note is None:
                raise (exc.__cause__ if isinstance(exc.__cause__, PermanentError) else exc) from None
            return note
        for own_id in own_ids:
            remember_own(link, row, OwnMessage.Side.CCAAS, own_id, part=index)
        if len(parts) > 1:
            payload.update(parts_sent=index + 1, parts=len(parts))
            Delivery.objects.filter(pk=delivery.pk).update(payload=payload)
    if len(parts) > 1 and sent < len(parts):
        link.note(
            "split",
            f"customer message {row.external_id} sent in {len(parts)} parts: the contact center "
            f"takes at most {connector.text_limit} {unit} a message",
        )
    return None


def _send_to_customer(delivery: Delivery, link: ConversationLink, row: Message) -> str | None:
    """Create Message on Infobip, one per part: the text (in parts when longer than Infobip's limit),
    then each attachment as Infobip's IMAGE/DOCUMENT/VIDEO/AUDIO. The parts already sent are
    remembered, so a retry never repeats one, and so is every part's Infobip message id, so the
    OUTBOUND_MESSAGE event Infobip sends for each part is known as the bridge's own."""
    parts = media.outbound_parts(row.content_type, row.content)
    if not parts:
        link.note("skipped", f"agent message {row.external_id} has nothing to show; not sent to the customer")
        return "skipped: the agent message has nothing to show (no text, media or attachment)"
    sent = int((delivery.payload or {}).get("parts_sent", 0))
    client = infobip_client()
    if link.bot_id:
        # External-bot mode: "x-agent-id ... is bot id and is used as bots identity" (Infobip's bots
        # documentation); INFOBIP_AGENT_ID does not apply.
        client.agent_id = link.bot.bot_id
    for index in range(sent, len(parts)):
        content_type, content = parts[index]
        answer = client.create_message(
            link.conversation_id,
            channel=link.channel,
            from_=link.business_sender,
            to=link.customer_address,
            content_type=content_type,
            content=content,
        )
        if isinstance(answer, dict) and answer.get("id"):
            remember_own(link, row, OwnMessage.Side.INFOBIP, str(answer["id"]), part=index)
            if index == 0:
                Message.objects.filter(pk=row.pk).update(infobip_message_id=str(answer["id"]))
        engine.save_progress(
            delivery, {**(delivery.payload or {}), "parts_sent": index + 1, "parts": len(parts)}
        )
    return None


def handle_close_ccaas(delivery: Delivery) -> str | None:
    link = ConversationLink.objects.select_related("endpoint").get(pk=delivery.link_id)
    if not link.interaction_id or link.endpoint is None:
        return "skipped: no interaction was opened"
    reason = CloseReason((delivery.payload or {}).get("reason", CloseReason.OPERATOR.value))
    try:
        get_connector(link.endpoint).close_interaction(interaction_ref(link), reason)
    except InteractionOverError as exc:
        return f"skipped: the interaction was already over on the contact center ({exc})"
    return None


def handle_close_infobip(delivery: Delivery) -> str | None:
    link = ConversationLink.objects.select_related("endpoint").get(pk=delivery.link_id)
    if link.bot_id:
        from bridge import bots  # external-bot mode: the endpoint's policy says how to let go

        try:
            return bots.release(link)
        except (NotFoundError, ConversationClosedError):
            return "skipped: the conversation is closed or unknown on Infobip"
    try:
        changed = infobip_client().close_conversation(link.conversation_id)
    except NotFoundError:
        return "skipped: Infobip no longer knows the conversation"
    return None if changed else "already closed on Infobip"


def handle_route_back(delivery: Delivery) -> str | None:
    """Tag the conversation, then Route conversation (Infobip's routing to its own agents). The tag
    step is remembered, so a retry after a failed route does not tag twice."""
    link = ConversationLink.objects.get(pk=delivery.link_id)
    payload = dict(delivery.payload or {})
    over = payload.get("reason") == "interaction_over" and link.state in (State.CLOSING, State.CLOSED)
    if link.state != State.FAILED and not over:
        return f"skipped: handover is {link.state}, not failed"
    tag = str(payload.get("tag") or ROUTE_BACK_TAG)
    client = infobip_client()
    try:
        closed = str(client.get_conversation(link.conversation_id).get("status", "")).upper() == "CLOSED"
        if not closed:
            if not payload.get("tagged"):
                client.add_tag(link.conversation_id, tag)
                payload["tagged"] = True
                engine.save_progress(delivery, payload)
            client.route_conversation(link.conversation_id)
    except ConversationClosedError:
        closed = True
    except NotFoundError:
        link.note("route_back", "not routed: Infobip does not know the conversation")
        return "skipped: Infobip does not know the conversation"
    if closed:
        link.note("route_back", "not routed: the conversation is already closed on Infobip")
        return "skipped: the conversation is closed on Infobip"
    link.note("routed_back", f"conversation routed to Infobip's agents, tagged {tag}")
    return None


def remember_own(link: ConversationLink, row: Message | None, side: str, external_id: str, *, part: int = 0):
    """Remember the id another system gave a message the bridge created there (see OwnMessage)."""
    OwnMessage.objects.get_or_create(
        link=link, side=side, external_id=external_id[:255], defaults={"message": row, "part": part}
    )


HANDLERS = {
    Delivery.Kind.OPEN: handle_open,
    Delivery.Kind.MESSAGE: handle_message,
    Delivery.Kind.CLOSE_CCAAS: handle_close_ccaas,
    Delivery.Kind.CLOSE_INFOBIP: handle_close_infobip,
    Delivery.Kind.ROUTE_BACK: handle_route_back,
}
