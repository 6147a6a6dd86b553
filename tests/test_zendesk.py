"""Zendesk Support connector: requests validated against Zendesk's spec, webhooks, polling, and a
whole handover through the real views and the delivery engine."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import responses

from bridge import delivery, periodic
from bridge.connectors import get_connector
from bridge.connectors.zendesk import ZendeskConnector
from bridge.exceptions import SignatureError, TransientError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, InboundEvent, Message, State
from bridge.types import EventType
from tests.connector_contract import ConnectorContract, json_bytes, post_webhook
from tests.payloads import fixture_bytes
from tests.zendesk_fake import BASE_URL, FakeZendesk, zendesk_signature

SECRET = "zendesk-webhook-secret"
CONFIG = {
    "subdomain": "acme",
    "mode": "webhook",
    "group_id": 360001,
    "custom_fields": {"conversation_id": 9001, "channel": 9002},
    "tags": ["from bot"],
}
CREDENTIALS = {"email": "bridge@acme.test", "api_token": "tok-123", "webhook_secret": SECRET}


def fixture(name: str) -> bytes:
    return fixture_bytes("zendesk", name)


def make_endpoint(slug="zen", **config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug=slug, kind="zendesk", config={**CONFIG, **config}, credentials=CREDENTIALS, is_default=True
    )


@pytest.fixture
def zendesk():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield FakeZendesk(mock)


class TestZendeskContract(ConnectorContract):
    kind = "zendesk"

    def make_endpoint(self):
        return make_endpoint()

    def interaction_data(self, endpoint):
        return {"requester_id": 8447388090001}

    def sign(self, endpoint, body, *, valid=True):
        return zendesk_signature(SECRET if valid else "wrong-secret", body)

    def unknown_event_body(self, endpoint):
        return fixture("webhook_ticket_priority_changed.json")

    def agent_message_body(self, endpoint, link):
        data = json.loads(fixture("webhook_ticket_comment_added.json"))
        data["detail"]["id"] = link.interaction_id
        return json_bytes(data)

    @contextmanager
    def failing_send(self, endpoint, link, status):
        with responses.RequestsMock() as mock:
            mock.add(
                responses.PUT,
                f"{BASE_URL}/api/v2/tickets/{link.interaction_id}",
                json={"error": "failing on purpose"},
                status=status,
            )
            yield


# --- requests conform to the spec and carry what the issue asks ----------------------------------
@pytest.mark.django_db
def test_open_creates_requester_then_ticket_with_transcript_tags_and_fields(zendesk, fake_infobip, api):
    conv = fake_infobip.add_conversation(tags=["vip customer"], metadata={"language": "en"})
    fake_infobip.message(conv, "Hi, I need a human", created_at="2026-01-01T10:00:00.000+00:00")
    fake_infobip.message(
        conv, "Connecting you", direction="OUTBOUND", author="BOT", created_at="2026-01-01T10:00:01.000+00:00"
    )
    make_endpoint()
    assert (
        api.post(
            "/api/escalations/",
            {"conversationId": conv, "priority": "HIGH", "context": {"displayName": "Ana"}},
            format="json",
        ).status_code
        == 202
    )
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    assert link.state == State.ACTIVE
    ticket = zendesk.tickets[int(link.interaction_id)]
    user = zendesk.users[ticket["requester_id"]]
    assert user["name"] == "Ana" and user["phone"] == "+447700900123"
    assert ticket["external_id"] == conv and ticket["priority"] == "high" and ticket["group_id"] == 360001
    assert ticket["tags"] == ["vip_customer", "from_bot", "infobip"]
    assert ticket["custom_fields"] == [{"id": 9001, "value": conv}, {"id": 9002, "value": "WHATSAPP"}]
    (first,) = zendesk.comments[ticket["id"]]
    assert first["author_id"] == ticket["requester_id"] and first["public"] is True
    assert "[2026-01-01 10:00:00 UTC] Ana: Hi, I need a human" in first["body"]
    assert "[2026-01-01 10:00:01 UTC] Bot: Connecting you" in first["body"]
    assert link.interaction_data == {"requester_id": ticket["requester_id"]}


@pytest.mark.django_db
def test_a_retried_open_reuses_the_ticket_instead_of_creating_a_second(zendesk):
    endpoint = make_endpoint()
    zendesk.tickets[555] = {"id": 555, "external_id": "conv-x", "status": "open", "requester_id": 1}
    from bridge.types import Customer, HandoverContext

    ctx = HandoverContext("h1", "conv-x", "SMS", Customer("447700900123"), "", "NORMAL", [], {}, {}, [])
    result = get_connector(endpoint).open_interaction(ctx)
    assert result.interaction_id == "555"
    assert not [r for r in zendesk.requests if r[0] == "POST" and r[1] == "/api/v2/tickets"]


@pytest.mark.django_db
def test_email_customers_are_requesters_by_email(zendesk):
    from bridge.types import Customer, HandoverContext

    endpoint = make_endpoint()
    ctx = HandoverContext(
        "h1", "conv-m", "EMAIL", Customer("ana@example.com", "Ana"), "", "NORMAL", [], {}, {}, []
    )
    get_connector(endpoint).open_interaction(ctx)
    (user,) = zendesk.users.values()
    assert user["email"] == "ana@example.com" and "phone" not in user


@pytest.mark.django_db
def test_429_with_retry_after_is_transient_and_keeps_the_delay(zendesk):
    endpoint = make_endpoint()
    zendesk.fail_next.append((429, {"Retry-After": "42"}))
    with pytest.raises(TransientError) as caught:
        get_connector(endpoint).check_connection()
    assert caught.value.retry_after == 42


@pytest.mark.django_db
def test_check_connection_names_the_api_user(zendesk):
    assert "Bridge API" in get_connector(make_endpoint()).check_connection()


def test_validation_asks_for_host_credentials_and_webhook_secret():
    problems = ZendeskConnector.validate({"mode": "webhook"}, {"email": "a@b.c"})
    text = " ".join(problems)
    assert "subdomain" in text and "api_token" in text and "webhook_secret" in text
    assert ZendeskConnector.validate({"subdomain": "acme", "mode": "poll"}, {"oauth_token": "x"}) == []


# --- webhooks ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_signature_outside_the_time_window_is_refused():
    connector = get_connector(make_endpoint())
    body = fixture("webhook_ticket_comment_added.json")
    old = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(SignatureError, match="300 s"):
        connector.verify_webhook(body, zendesk_signature(SECRET, body, old))
    connector.verify_webhook(body, zendesk_signature(SECRET, body))


@pytest.mark.django_db
def test_only_public_comments_by_staff_other_than_the_requester_are_agent_replies():
    connector = get_connector(make_endpoint())
    data = json.loads(fixture("webhook_ticket_comment_added.json"))
    (event,) = connector.parse_webhook(json_bytes(data), {})
    assert event.type == EventType.AGENT_MESSAGE and event.interaction_id == "5158"
    assert (
        event.message.content == {"text": "Hello, this is a comment"}
        and event.message.agent_name == "Agent Name"
    )
    for change in (
        {"is_public": False},
        {"author": {"id": data["detail"]["requester_id"], "is_staff": False, "name": "Ana"}},
        {"author": {"id": "123", "is_staff": False, "name": "A CC"}},
    ):
        variant = json.loads(json.dumps(data))
        variant["event"]["comment"].update(change)
        (ignored,) = connector.parse_webhook(json_bytes(variant), {})
        assert ignored.type == EventType.UNKNOWN


@pytest.mark.django_db
def test_solved_status_closes(client):
    connector = get_connector(make_endpoint())
    (event,) = connector.parse_webhook(fixture("webhook_ticket_status_changed.json"), {})
    assert event.type == EventType.CLOSED and event.interaction_id == "5158"


# --- polling -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_polling_forwards_each_agent_comment_once_and_notices_the_solve(zendesk, fake_infobip, api):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "Hello?")
    endpoint = make_endpoint(mode="poll")
    api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    ticket_id = int(link.interaction_id)
    zendesk.agent_comments(ticket_id, "Hi from Zendesk")
    zendesk.agent_comments(ticket_id, "internal only", public=False)
    periodic.poll_endpoint(endpoint.pk)
    periodic.poll_endpoint(endpoint.pk)
    zendesk.agent_comments(ticket_id, "Anything else?")
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(conv)] == [
        "Hi from Zendesk",
        "Anything else?",
    ]
    zendesk.tickets[ticket_id]["status"] = "solved"
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED and fake_infobip.conversations[conv]["status"] == "CLOSED"


# --- the five steps ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_five_steps_against_zendesk(zendesk, fake_infobip, api, client, inbound_url):
    conv = fake_infobip.add_conversation(tags=["vip"])
    fake_infobip.message(conv, "I want a human", created_at="2026-01-01T10:00:00.000+00:00")
    endpoint = make_endpoint()

    # 1. escalation -> ticket with the history
    assert api.post("/api/escalations/", {"conversationId": conv}, format="json").status_code == 202
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    ticket_id = int(link.interaction_id)
    assert "I want a human" in zendesk.comments[ticket_id][0]["body"]

    # 2. customer messages -> public comments by the requester, once, in order
    for text in ("one", "two"):
        body = fake_infobip.message(conv, text)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drain()
    comments = zendesk.comments[ticket_id]
    assert [c["body"] for c in comments[1:]] == ["one", "two"]
    assert {c["author_id"] for c in comments} == {zendesk.tickets[ticket_id]["requester_id"]}

    # the bridge's own comments, echoed by the webhook, are not forwarded
    for own in comments:
        event = zendesk.comment_event(ticket_id, own, is_staff=False)
        body = json_bytes(event)
        assert post_webhook(client, endpoint, body, zendesk_signature(SECRET, body)).status_code == 200

    # 3. agent replies -> the customer, once, in order
    replies = [zendesk.agent_comments(ticket_id, t) for t in ("Hello Ana", "How can I help?")]
    for reply in replies * 2:
        body = json_bytes(zendesk.comment_event(ticket_id, reply))
        assert post_webhook(client, endpoint, body, zendesk_signature(SECRET, body)).status_code == 200
    delivery.drain()
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(conv)] == [
        "Hello Ana",
        "How can I help?",
    ]

    # 4. solved -> the Infobip conversation closes
    body = json_bytes(zendesk.solve_event(ticket_id))
    assert post_webhook(client, endpoint, body, zendesk_signature(SECRET, body)).status_code == 200
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED and fake_infobip.conversations[conv]["status"] == "CLOSED"
    assert Message.objects.filter(link=link, source=Message.Source.CCAAS).count() == 2
    assert (
        InboundEvent.objects.filter(source="ccaas:zen", type="zen:event-type:ticket.comment_added").count()
        == 5
    )
    assert not Delivery.objects.exclude(state__in=[Delivery.Status.DONE, Delivery.Status.SKIPPED]).exists()


@pytest.mark.django_db
def test_close_on_our_side_solves_the_ticket_with_an_internal_note(zendesk, fake_infobip, api):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "hello")
    make_endpoint()
    api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    from bridge.services import close_handover

    close_handover(link, actor="operator")
    delivery.drain()
    ticket_id = int(link.interaction_id)
    assert zendesk.tickets[ticket_id]["status"] == "solved"
    note = zendesk.comments[ticket_id][-1]
    assert note["public"] is False and "operator" in note["body"]


@pytest.mark.django_db
def test_a_backlog_waits_for_the_shared_budget_instead_of_running_into_429s(zendesk):
    from bridge.ratelimit import RateLimited

    endpoint = make_endpoint(requests_per_minute=2)
    connector = get_connector(endpoint)
    connector.check_connection()
    connector.check_connection()
    calls = len(zendesk.requests)
    with pytest.raises(RateLimited) as over:
        connector.check_connection()
    assert len(zendesk.requests) == calls  # nothing was sent over the budget
    assert 0 < over.value.retry_after <= 60 and not over.value.permanent
