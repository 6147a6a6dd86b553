"""Chatwoot connector: requests validated against Chatwoot's spec, webhooks (signed and not),
polling, and a whole handover through the real views and the delivery engine."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import responses

from bridge import delivery, periodic
from bridge.connectors import get_connector
from bridge.connectors.chatwoot import ChatwootConnector
from bridge.exceptions import SignatureError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, InboundEvent, Message, State
from bridge.types import EventType
from tests.chatwoot_fake import ACCOUNT, BASE_URL, INBOX, FakeChatwoot, chatwoot_signature
from tests.connector_contract import ConnectorContract, json_bytes, post_webhook
from tests.payloads import fixture_bytes

SECRET = "chatwoot-webhook-secret"
CONFIG = {"base_url": BASE_URL, "account_id": ACCOUNT, "inbox_id": INBOX, "mode": "webhook"}
CREDENTIALS = {"api_access_token": "cw-token", "webhook_secret": SECRET}


def fixture(name: str) -> bytes:
    return fixture_bytes("chatwoot", name)


def make_endpoint(slug="cw", **config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug=slug, kind="chatwoot", config={**CONFIG, **config}, credentials=CREDENTIALS, is_default=True
    )


@pytest.fixture
def chatwoot():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield FakeChatwoot(mock)


class TestChatwootContract(ConnectorContract):
    kind = "chatwoot"

    def make_endpoint(self):
        return make_endpoint()

    def interaction_id(self, endpoint):
        return "123"

    def sign(self, endpoint, body, *, valid=True):
        return chatwoot_signature(SECRET if valid else "wrong-secret", body)

    def unknown_event_body(self, endpoint):
        return fixture("webhook_contact_created.json")

    def agent_message_body(self, endpoint, link):
        return fixture("webhook_message_created.json")

    @contextmanager
    def failing_send(self, endpoint, link, status):
        with responses.RequestsMock() as mock:
            mock.add(
                responses.POST,
                f"{BASE_URL}/api/v1/accounts/{ACCOUNT}/conversations/{link.interaction_id}/messages",
                json={"error": "failing on purpose"},
                status=status,
            )
            yield


# --- webhooks ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_only_public_outgoing_messages_of_human_agents_are_replies():
    connector = get_connector(make_endpoint())
    data = json.loads(fixture("webhook_message_created.json"))
    (event,) = connector.parse_webhook(json_bytes(data), {})
    assert event.type == EventType.AGENT_MESSAGE and event.interaction_id == "123"
    assert event.message.id == "4021" and event.message.agent_name == "Bo Agent"
    for change in (
        {"message_type": "incoming"},
        {"private": True},
        {"sender": {"id": 9, "name": "Helper bot", "type": "agent_bot"}},
    ):
        (ignored,) = connector.parse_webhook(json_bytes({**data, **change}), {})
        assert ignored.type == EventType.UNKNOWN


@pytest.mark.django_db
def test_resolved_closes_and_agent_typing_becomes_a_typing_event():
    connector = get_connector(make_endpoint())
    (closed,) = connector.parse_webhook(fixture("webhook_conversation_status_changed.json"), {})
    assert closed.type == EventType.CLOSED and closed.interaction_id == "123"
    (typing,) = connector.parse_webhook(
        fixture("webhook_conversation_typing_on.json"), {"X-Chatwoot-Delivery": "d1"}
    )
    assert typing.type == EventType.TYPING and typing.id == "d1"


@pytest.mark.django_db
def test_a_refused_signature_says_why_and_checking_can_be_switched_off(client):
    endpoint = make_endpoint()
    body = fixture("webhook_message_created.json")
    with pytest.raises(SignatureError, match="13809"):
        get_connector(endpoint).verify_webhook(body, chatwoot_signature("shown-but-not-the-key", body))
    with pytest.raises(SignatureError, match="300 s"):
        get_connector(endpoint).verify_webhook(body, chatwoot_signature(SECRET, body, timestamp=1))
    endpoint.config = {**CONFIG, "require_signature": False}
    endpoint.save()
    assert post_webhook(client, endpoint, fixture("webhook_contact_created.json"), {}).status_code == 200


def test_validation_wants_a_secret_only_while_signatures_are_required():
    assert any("webhook_secret" in p for p in ChatwootConnector.validate(CONFIG, {"api_access_token": "t"}))
    assert ChatwootConnector.validate({**CONFIG, "require_signature": False}, {"api_access_token": "t"}) == []


@pytest.mark.django_db
def test_check_connection(chatwoot):
    assert "Bridge Bot" in get_connector(make_endpoint()).check_connection()


# --- the five steps ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_five_steps_against_chatwoot(chatwoot, fake_infobip, api, client, inbound_url):
    conv = fake_infobip.add_conversation(tags=["vip customer"], metadata={"language": "en"})
    fake_infobip.message(conv, "I want a human", created_at="2026-01-01T10:00:00.000+00:00")
    fake_infobip.message(
        conv, "Connecting you", direction="OUTBOUND", author="BOT", created_at="2026-01-01T10:00:01.000+00:00"
    )
    endpoint = make_endpoint()

    # 1. escalation -> contact, conversation with attributes, labels and the history in order
    assert (
        api.post(
            "/api/escalations/", {"conversationId": conv, "context": {"displayName": "Ana"}}, format="json"
        ).status_code
        == 202
    )
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    assert link.state == State.ACTIVE
    cid = int(link.interaction_id)
    conversation = chatwoot.conversations[cid]
    assert conversation["status"] == "open" and conversation["labels"] == ["vip_customer"]
    assert conversation["custom_attributes"]["infobip_conversation_id"] == conv
    assert conversation["custom_attributes"]["language"] == "en"
    (contact,) = chatwoot.contacts.values()
    assert contact["name"] == "Ana" and contact["phone_number"] == "+447700900123"
    history = chatwoot.messages[cid]
    assert [(m["content"], m["message_type"], m["private"]) for m in history] == [
        ("I want a human", 0, False),
        ("Bot (10:00 UTC, before the handover): Connecting you", 1, True),
    ]

    # 2. customer messages -> incoming messages, once, in order
    for text in ("one", "two"):
        body = fake_infobip.message(conv, text)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drain()
    assert [m["content"] for m in chatwoot.messages[cid][2:]] == ["one", "two"]

    # everything the bridge wrote comes back as webhooks and is not forwarded
    for own in list(chatwoot.messages[cid]):
        body = json_bytes(chatwoot.webhook_for(own))
        assert post_webhook(client, endpoint, body, chatwoot_signature(SECRET, body)).status_code == 200

    # 3. agent replies -> the customer, once, in order (a private note stays inside)
    replies = [chatwoot.agent_replies(cid, t) for t in ("Hello Ana", "How can I help?")]
    replies.insert(1, chatwoot.agent_replies(cid, "note to colleagues", private=True))
    for reply in replies * 2:
        body = json_bytes(reply)
        assert post_webhook(client, endpoint, body, chatwoot_signature(SECRET, body)).status_code == 200
    delivery.drain()
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(conv)] == [
        "Hello Ana",
        "How can I help?",
    ]

    # 4. resolved -> the Infobip conversation closes
    body = json_bytes(chatwoot.resolve(cid))
    assert post_webhook(client, endpoint, body, chatwoot_signature(SECRET, body)).status_code == 200
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED and fake_infobip.conversations[conv]["status"] == "CLOSED"
    assert Message.objects.filter(link=link, source=Message.Source.CCAAS).count() == 2
    assert InboundEvent.objects.filter(source="ccaas:cw", type="message_created").count() == 7
    assert not Delivery.objects.exclude(state__in=[Delivery.Status.DONE, Delivery.Status.SKIPPED]).exists()


@pytest.mark.django_db
def test_polling_forwards_each_reply_once_and_notices_the_resolve(chatwoot, fake_infobip, api):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "Hello?")
    endpoint = make_endpoint(mode="poll")
    api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    cid = int(ConversationLink.objects.get(conversation_id=conv).interaction_id)
    chatwoot.agent_replies(cid, "Hi from Chatwoot")
    periodic.poll_endpoint(endpoint.pk)
    periodic.poll_endpoint(endpoint.pk)
    chatwoot.agent_replies(cid, "Anything else?")
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(conv)] == [
        "Hi from Chatwoot",
        "Anything else?",
    ]
    assert any("after=" in r[1] for r in chatwoot.requests)
    chatwoot.conversations[cid]["status"] = "resolved"
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    assert ConversationLink.objects.get(conversation_id=conv).state == State.CLOSED


@pytest.mark.django_db
def test_close_on_our_side_resolves_with_a_private_note(chatwoot, fake_infobip, api):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "hello")
    make_endpoint()
    api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    from bridge.services import close_handover

    close_handover(link, actor="operator")
    delivery.drain()
    cid = int(link.interaction_id)
    assert chatwoot.conversations[cid]["status"] == "resolved"
    assert chatwoot.messages[cid][-1]["private"] is True


@pytest.mark.django_db
def test_a_retried_open_reuses_the_conversation_and_skips_history_already_there(chatwoot):
    from datetime import UTC, datetime

    from bridge.types import Customer, Direction, HandoverContext, InfobipMessage

    endpoint = make_endpoint()
    msg = InfobipMessage(
        "m1",
        "conv-r",
        "SMS",
        "447700900123",
        "x",
        Direction.INBOUND,
        "TEXT",
        {"text": "hi"},
        datetime.now(UTC),
    )
    ctx = HandoverContext("h1", "conv-r", "SMS", Customer("447700900123"), "", "NORMAL", [], {}, {}, [msg])
    first = get_connector(endpoint).open_interaction(ctx)
    second = get_connector(endpoint).open_interaction(ctx)
    assert first.interaction_id == second.interaction_id
    assert len(chatwoot.conversations) == 1 and len(chatwoot.messages[int(first.interaction_id)]) == 1
