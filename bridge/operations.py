"""Operator actions beyond close and retry: hand back to Infobip's agents, move a handover to another
contact center, send one message again. Each is built on the services and the delivery engine, so
the same ordering and retry rules apply as for everything else.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from bridge import delivery as engine
from bridge import http, services
from bridge.connectors import get_connector
from bridge.exceptions import BridgeError
from bridge.models import OPEN_STATES, CcaasEndpoint, ConversationLink, Delivery, Message, State
from bridge.types import CloseReason


class OperationError(services.EscalationError):
    """The operation does not apply to this handover as it is; the text says why."""


def route_to_infobip(link: ConversationLink, *, actor: str) -> None:
    """Give the conversation back to Infobip's own agents and close the contact-center side.

    Infobip is asked first: if it refuses, nothing changes here and the error reaches the operator.
    """
    link = ConversationLink.objects.get(pk=link.pk)
    if link.state not in OPEN_STATES:
        raise OperationError(f"the handover is {link.get_state_display().lower()}; nothing to route back")
    services.infobip_client().route_conversation(link.conversation_id)
    link.note("routed_to_infobip", "conversation sent to Infobip's agents (routing)", actor=actor)
    services.begin_close(link, CloseReason.OPERATOR, actor=actor, close_infobip=False)


def reopen_on_endpoint(link: ConversationLink, endpoint: CcaasEndpoint, *, actor: str) -> ConversationLink:
    """Open the conversation's interaction on another endpoint.

    A handover whose interaction was never opened (waiting or failed) moves to the other endpoint and
    its open and queued customer messages are re-driven there, in order. A closed handover is
    escalated again to that endpoint. An active one must be closed first (its agent is still on it).
    """
    link = ConversationLink.objects.get(pk=link.pk)
    if not endpoint.enabled:
        raise OperationError(f"endpoint {endpoint.slug} is disabled")
    if link.state == State.CLOSED:
        new, _ = services.escalate(
            services.EscalationRequest(
                conversation_id=link.conversation_id,
                endpoint=endpoint.slug,
                queue=link.queue,
                priority=link.priority,
                context=link.context or {},
            ),
            actor=actor,
        )
        link.note("reopened", f"escalated again to {endpoint.slug} as handover {new.pk}", actor=actor)
        return new
    if link.state not in (State.REQUESTED, State.FAILED):
        raise OperationError(
            f"the handover is {link.get_state_display().lower()} on {link.endpoint}; close it first, "
            "then re-open it on another endpoint"
        )
    if link.state == State.FAILED and (
        ConversationLink.objects.open()
        .filter(conversation_id=link.conversation_id)
        .exclude(pk=link.pk)
        .exists()
    ):
        raise OperationError("another handover of this conversation is open; use that one")
    previous = link.endpoint.slug if link.endpoint else "(none)"
    with transaction.atomic():
        ConversationLink.objects.filter(pk=link.pk).update(
            endpoint=endpoint,
            state=State.REQUESTED,
            interaction_id="",
            interaction_data={},
            closed_at=None,
            last_error="",
            stuck_flagged_at=None,
        )
        to_ccaas = Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_CCAAS)
        # Messages the old endpoint never got go to the new one after its open, in their order.
        to_ccaas.filter(kind=Delivery.Kind.OPEN).update(state=Delivery.Status.DEAD)
        engine.retry_dead(to_ccaas.exclude(kind__in=[Delivery.Kind.CLOSE_CCAAS]))
        link.note("moved", f"from {previous} to {endpoint.slug}", actor=actor)
    link.refresh_from_db()
    return link


def resend_message(message: Message, *, actor: str) -> Delivery:
    """Send one message again (to the contact center for a customer message, to the customer for an
    agent message). Its place in the lane is its original one."""
    message = Message.objects.select_related("link").get(pk=message.pk)
    link = message.link
    if link.state not in (State.REQUESTED, State.ACTIVE):
        raise OperationError(
            f"the handover is {link.get_state_display().lower()}; messages are no longer carried"
        )
    lane = Delivery.Lane.TO_CCAAS if message.source == Message.Source.INFOBIP else Delivery.Lane.TO_INFOBIP
    with transaction.atomic():
        row = Delivery.objects.select_for_update().filter(message=message).first()
        if row is None:
            row = Delivery.objects.create(
                link=link,
                message=message,
                kind=Delivery.Kind.MESSAGE,
                lane=lane,
                phase=1,
                sort_at=message.created_at,
            )
        elif row.state == Delivery.Status.IN_FLIGHT:
            raise OperationError("the message is being delivered right now")
        else:
            Delivery.objects.filter(pk=row.pk).update(
                state=Delivery.Status.PENDING,
                attempts=0,
                next_attempt_at=timezone.now(),
                failing_since=None,
                done_at=None,
                nudged_at=None,
                payload={},
            )
        engine.enqueue_lane(link.pk, row.lane)
        link.note("resend", f"message {message.external_id} queued again", actor=actor)
    row.refresh_from_db()
    return row


def test_connection(endpoint: CcaasEndpoint) -> str:
    """Call the contact center once (the connector's check) and record the outcome on the endpoint's
    health like any other call. Returns the connector's answer; raises OperationError with the
    reason when the call failed (recorded as the endpoint's last error)."""
    with http.count_calls():
        try:
            answer = get_connector(endpoint).check_connection()
        except NotImplementedError as exc:
            raise OperationError(f"{endpoint.kind} endpoints have no connection test") from exc
        except BridgeError as exc:
            endpoint.record_failure(exc)
            raise OperationError(f"connection test failed: {exc}") from exc
    endpoint.record_success()
    return str(answer)
