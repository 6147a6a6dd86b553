"""A contact center answer that means "this interaction is over" ends the handover as the endpoint's
policy says (close it as the agent would, or route the conversation to Infobip's agents): the
customer is never left writing into dead letters, and a dead letter always makes a handover stuck."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import responses
from django.utils import timezone

from bridge import delivery
from bridge.connectors import get_connector
from bridge.connectors.generic import GenericConnector
from bridge.exceptions import InteractionOverError, PermanentError
from bridge.handlers import interaction_ref
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, HandoverEvent, State
from bridge.services import close_handover
from bridge.types import Direction, InfobipMessage
from tests.zendesk_fake import FakeZendesk

pytestmark = pytest.mark.django_db


@pytest.fixture
def zendesk():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield FakeZendesk(mock)


def zendesk_endpoint(**config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug="zen",
        kind="zendesk",
        config={"subdomain": "acme", "mode": "webhook", **config},
        credentials={"email": "b@acme.test", "api_token": "t", "webhook_secret": "s"},
        is_default=True,
    )


def escalate(api, fake_infobip) -> ConversationLink:
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "I need a human")
    assert api.post("/api/escalations/", {"conversationId": conv}, format="json").status_code == 202
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    assert link.state == State.ACTIVE
    return link


def customer_writes(client, inbound_url, fake_infobip, link, *texts) -> list[str]:
    ids = []
    for text in texts:
        body = fake_infobip.message(link.conversation_id, text)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        ids.append(body["id"])
    return ids


# --- the input: a Zendesk ticket closed, its status webhook lost ----------------------------
def test_closed_zendesk_ticket_ends_the_handover_and_closes_the_infobip_conversation(
    zendesk, fake_infobip, api, client, inbound_url, settings
):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 0
    zendesk_endpoint()
    link = escalate(api, fake_infobip)
    zendesk.tickets[int(link.interaction_id)]["status"] = "closed"  # no status webhook arrives
    customer_writes(client, inbound_url, fake_infobip, link, "hello?", "is anyone there?")
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED and link.close_reason == "AGENT"
    assert fake_infobip.conversations[link.conversation_id]["status"] == "CLOSED"
    messages = Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE, lane=Delivery.Lane.TO_CCAAS)
    assert sorted(messages.values_list("state", flat=True)) == ["SKIPPED", "SKIPPED"]
    assert all("interaction is over" in d.last_error for d in messages)
    assert not Delivery.objects.filter(link=link, state=Delivery.Status.DEAD).exists()
    over = HandoverEvent.objects.get(link=link, kind="interaction_over")
    assert f"ticket {link.interaction_id} is closed" in over.text
    assert "2 customer message(s) not delivered there" in over.text


def test_route_to_infobip_policy_hands_the_conversation_to_infobips_agents(
    zendesk, fake_infobip, api, client, inbound_url
):
    zendesk_endpoint(on_interaction_over="route_to_infobip", route_back_tag="ticket_closed")
    link = escalate(api, fake_infobip)
    zendesk.tickets[int(link.interaction_id)]["status"] = "closed"
    customer_writes(client, inbound_url, fake_infobip, link, "hello?")
    delivery.drain()
    link.refresh_from_db()
    conversation = fake_infobip.conversations[link.conversation_id]
    assert link.state == State.CLOSED
    assert conversation["status"] != "CLOSED" and conversation.get("routed") is True
    assert "ticket_closed" in conversation["tags"]
    route = Delivery.objects.get(link=link, kind=Delivery.Kind.ROUTE_BACK)
    assert route.state == Delivery.Status.DONE


def test_a_close_from_the_bridge_on_a_closed_ticket_is_done_not_stuck(zendesk, fake_infobip, api):
    zendesk_endpoint()
    link = escalate(api, fake_infobip)
    zendesk.tickets[int(link.interaction_id)]["status"] = "closed"
    close_handover(link, actor="operator")
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED
    close = Delivery.objects.get(link=link, kind=Delivery.Kind.CLOSE_CCAAS)
    assert close.state == Delivery.Status.SKIPPED and "already over" in close.last_error


# --- what each connector reads as "over" ------------------------------------------------------------
def message() -> InfobipMessage:
    return InfobipMessage(
        "ib-1",
        "c",
        "WHATSAPP",
        "447700900123",
        "447860099299",
        Direction.INBOUND,
        "TEXT",
        {"text": "hi"},
        datetime(2026, 1, 1, tzinfo=UTC),
    )


def link_for(endpoint, interaction_id, data=None) -> ConversationLink:
    return ConversationLink.objects.create(
        conversation_id=f"c-{endpoint.slug}",
        endpoint=endpoint,
        interaction_id=interaction_id,
        interaction_data=data or {},
        state=State.ACTIVE,
        channel="WHATSAPP",
        customer_address="447700900123",
        business_sender="447860099299",
    )


CW = "https://chat.acme.test/api/v1/accounts/1/conversations/123"


def chatwoot_endpoint():
    return CcaasEndpoint.objects.create(
        slug="cw",
        kind="chatwoot",
        config={"base_url": "https://chat.acme.test", "account_id": 1, "inbox_id": 5, "mode": "poll"},
        credentials={"api_access_token": "cw-token"},
    )


@responses.activate
def test_chatwoot_conversation_gone_is_over():
    endpoint = chatwoot_endpoint()
    responses.post(f"{CW}/messages", json={"error": "Resource could not be found"}, status=404)
    with pytest.raises(InteractionOverError, match="gone"):
        get_connector(endpoint).send_customer_message(interaction_ref(link_for(endpoint, "123")), message())


@responses.activate
def test_chatwoot_422_on_a_resolved_conversation_is_over_and_on_an_open_one_is_not():
    endpoint = chatwoot_endpoint()
    ref = interaction_ref(link_for(endpoint, "123"))
    responses.post(f"{CW}/messages", json={"message": "Unprocessable"}, status=422)
    responses.get(CW, json={"id": 123, "status": "resolved"})
    with pytest.raises(InteractionOverError, match="resolved"):
        get_connector(endpoint).send_customer_message(ref, message())
    responses.replace(responses.GET, CW, json={"id": 123, "status": "open"})
    with pytest.raises(PermanentError) as caught:
        get_connector(endpoint).send_customer_message(ref, message())
    assert not isinstance(caught.value, InteractionOverError)


RT = "https://rt.example.test/REST/2.0"


def rt_endpoint():
    return CcaasEndpoint.objects.create(
        slug="rt",
        kind="rt",
        config={"base_url": "https://rt.example.test", "queue": "Support"},
        credentials={"token": "t"},
    )


@pytest.mark.parametrize("status", ["resolved", "rejected"])
@responses.activate
def test_rt_refused_correspondence_on_a_closed_ticket_is_over(status):
    endpoint = rt_endpoint()
    responses.post(f"{RT}/ticket/1001/correspond", json={"message": "Permission Denied"}, status=400)
    responses.get(f"{RT}/ticket/1001", json={"id": 1001, "Status": status})
    with pytest.raises(InteractionOverError, match=status):
        get_connector(endpoint).send_customer_message(interaction_ref(link_for(endpoint, "1001")), message())


@responses.activate
def test_rt_ticket_gone_is_over():
    endpoint = rt_endpoint()
    responses.post(f"{RT}/ticket/1001/correspond", json={"message": "Resource does not exist"}, status=404)
    with pytest.raises(InteractionOverError, match="gone"):
        get_connector(endpoint).send_customer_message(interaction_ref(link_for(endpoint, "1001")), message())


def test_genesys_read_only_session_is_over(settings):
    from bridge.connectors import genesys as genesys_module
    from tests.genesys_fake import CLIENT_ID, CLIENT_SECRET, INTEGRATION_ID, WEBHOOK_SECRET, FakeGenesys

    genesys_module.TOKENS.clear()
    server = FakeGenesys().start()
    try:
        endpoint = CcaasEndpoint.objects.create(
            slug="gc",
            kind="genesys",
            config={"base_url": server.url, "login_url": server.url, "integration_id": INTEGRATION_ID},
            credentials={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "webhook_secret": WEBHOOK_SECRET,
            },
        )
        server.fail(
            "POST",
            rf"/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/message",
            status=400,
            body={"status": 400, "code": "bad.request", "message": "The session is read-only"},
        )
        with pytest.raises(InteractionOverError, match="over"):
            get_connector(endpoint).send_customer_message(
                interaction_ref(link_for(endpoint, "h-1", {"conversation_id": "x"})), message()
            )
    finally:
        server.stop()
        genesys_module.TOKENS.clear()


def test_generic_410_gone_ends_the_handover(
    fake_infobip, fake_ccaas, api, client, inbound_url, generic_endpoint
):
    link = escalate(api, fake_infobip)
    fake_ccaas.fail("POST", rf"/bridge/interactions/{link.interaction_id}/messages", status=410)
    customer_writes(client, inbound_url, fake_infobip, link, "still there?")
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED
    assert fake_infobip.conversations[link.conversation_id]["status"] == "CLOSED"
    assert not Delivery.objects.filter(link=link, state=Delivery.Status.DEAD).exists()


# --- a dead letter always makes the handover stuck ---------------------------------------------------
def test_a_dead_letter_makes_an_active_handover_stuck_at_once(
    fake_infobip, fake_ccaas, api, client, inbound_url, generic_endpoint
):
    link = escalate(api, fake_infobip)
    fake_ccaas.fail("POST", rf"/bridge/interactions/{link.interaction_id}/messages", status=400)
    customer_writes(client, inbound_url, fake_infobip, link, "this one is refused")
    delivery.drain()
    assert Delivery.objects.filter(link=link, state=Delivery.Status.DEAD).count() == 1
    link.refresh_from_db()
    assert link.state == State.ACTIVE
    assert link.is_stuck(), "stuck at once, whatever BRIDGE_STUCK_AFTER_SECONDS says"
    assert ConversationLink.objects.stuck(timezone.now()).filter(pk=link.pk).exists()


def test_an_unknown_policy_is_refused_when_saved():
    problems = GenericConnector.validate(
        {"base_url": "https://cc.example.com", "on_interaction_over": "reopen"}, {"secret": "s"}
    )
    assert problems == ["config: 'on_interaction_over' must be one of close, route_to_infobip"]
