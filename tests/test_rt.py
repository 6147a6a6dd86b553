"""The RT connector without a server: payloads recorded from RT 5.0.3 (tests/fixtures/rt/), mocked
with `responses` at the HTTP seam. The whole flow against a real RT is in test_rt_live.py."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
import responses

from bridge.connectors import get_connector
from bridge.connectors.rt import RtConnector, requestor_address, transcript
from bridge.models import CcaasEndpoint
from bridge.types import (
    AuthorType,
    Customer,
    Direction,
    EventType,
    HandoverContext,
    InfobipMessage,
    InteractionRef,
)
from tests.connector_contract import ConnectorContract
from tests.payloads import load_fixture

BASE = "https://rt.example.test"
API = f"{BASE}/REST/2.0"


def fixture(name: str):
    return load_fixture("rt", name)


def make_endpoint(**config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug="rt-offline",
        kind="rt",
        config={
            "base_url": BASE,
            "queue": "Support",
            "custom_fields": {"conversation_id": "Conversation ID", "channel": "Channel"},
            **config,
        },
        credentials={"token": "1-31-secret-token"},
    )


def ref(ticket="1001") -> InteractionRef:
    return InteractionRef(
        handover_id="h1",
        conversation_id="CONV1",
        interaction_id=ticket,
        channel="WHATSAPP",
        customer=Customer(address="447700900123", display_name="Ana"),
        data={"bridge_user": "bridge"},
    )


def msg(text, *, direction=Direction.INBOUND, author=AuthorType.CUSTOMER, at="2026-01-01T10:00:00", **kw):
    return InfobipMessage(
        id=kw.pop("id", f"m-{text}"),
        conversation_id="CONV1",
        channel="WHATSAPP",
        from_="447700900123",
        to="447860099299",
        direction=direction,
        content_type=kw.pop("content_type", "TEXT"),
        content=kw.pop("content", {"text": text}),
        created_at=datetime.fromisoformat(at).replace(tzinfo=UTC),
        author_type=author,
    )


class TestRtContract(ConnectorContract):
    kind = "rt"
    webhook_skip_reason = "Request Tracker has no webhooks; agent replies are polled"

    def make_endpoint(self):
        return make_endpoint()

    def interaction_data(self, endpoint):
        return {"ticket_id": "1001", "bridge_user": "bridge"}

    @contextmanager
    def failing_send(self, endpoint, link, status):
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, f"{API}/ticket/{link.interaction_id}/correspond", status=status, json={})
            yield

    @contextmanager
    def serving_agent_message_poll(self, endpoint, link):
        page = fixture("api_transactions_search_200.json")
        page["items"] = [item for item in page["items"] if item["id"] == "45"]  # the agent's reply only
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.add(responses.POST, f"{API}/transactions", json=page)
            mock.add(responses.POST, f"{API}/attachments", json=fixture("api_attachments_search_200.json"))
            yield


@pytest.mark.django_db
@responses.activate
def test_open_creates_a_ticket_with_readable_history_and_custom_fields():
    endpoint = make_endpoint(
        custom_fields={
            "conversation_id": "Conversation ID",
            "channel": "Channel",
            "tags": "Tags",
            "metadata.language": "Language",
        }
    )
    responses.post(f"{API}/tickets", json={"items": [], "count": 0, "page": 1, "per_page": 1})
    responses.post(f"{API}/ticket", json=fixture("api_ticket_create_201.json"), status=201)
    responses.get(f"{API}/ticket/1001", json={"id": 1001, "Creator": {"id": "bridge", "type": "user"}})
    ctx = HandoverContext(
        handover_id="h1",
        conversation_id="CONV1",
        channel="WHATSAPP",
        customer=Customer(address="447700900123", display_name="Ana"),
        queue="",
        priority="HIGH",
        tags=["vip", "billing"],
        metadata={"language": "de"},
        context={},
        history=[
            msg("Hi, I need a human"),
            msg("One moment", direction=Direction.OUTBOUND, author=AuthorType.BOT, at="2026-01-01T10:00:05"),
        ],
    )
    result = get_connector(endpoint).open_interaction(ctx)
    assert result.interaction_id == "1001" and result.data == {"ticket_id": "1001", "bridge_user": "bridge"}
    search = responses.calls[0].request
    assert parse_qs(search.body)["query"] == [
        "Queue = 'Support' AND 'CF.{Conversation ID}' = 'CONV1' AND Status != 'resolved' AND Status != 'rejected'"
    ]
    sent = json.loads(responses.calls[1].request.body)
    assert responses.calls[1].request.headers["Authorization"] == "token 1-31-secret-token"
    assert sent["Queue"] == "Support" and sent["Requestor"] == "447700900123@whatsapp.invalid"
    assert sent["CustomFields"] == {
        "Conversation ID": "CONV1",
        "Channel": "WHATSAPP",
        "Tags": ["vip", "billing"],
        "Language": "de",
    }
    assert "[2026-01-01 10:00:00 UTC] Ana: Hi, I need a human" in sent["Content"]
    assert "[2026-01-01 10:00:05 UTC] Bot: One moment" in sent["Content"]


@pytest.mark.django_db
@responses.activate
def test_customer_message_is_correspondence_by_default_and_comment_when_configured():
    responses.post(
        f"{API}/ticket/1001/correspond", json=fixture("api_ticket_correspond_201.json"), status=201
    )
    get_connector(make_endpoint()).send_customer_message(ref(), msg("where is my order"))
    assert json.loads(responses.calls[0].request.body) == {
        "Content": "Ana wrote:\n\nwhere is my order\n",
        "ContentType": "text/plain",
    }
    CcaasEndpoint.objects.all().delete()
    responses.post(f"{API}/ticket/1001/comment", json=["Comments added"], status=201)
    get_connector(make_endpoint(customer_messages="comment")).send_customer_message(ref(), msg("again"))
    assert responses.calls[1].request.url == f"{API}/ticket/1001/comment"


@pytest.mark.django_db
@responses.activate
def test_customer_image_is_attached_to_the_ticket():
    responses.get("https://media.example.test/files/cat.png", body=b"\x89PNG-bytes", content_type="image/png")
    responses.post(f"{API}/ticket/1001/correspond", json=["Correspondence added"], status=201)
    image = msg(
        "",
        content_type="IMAGE",
        content={"url": "https://media.example.test/files/cat.png", "caption": "my cat"},
    )
    get_connector(make_endpoint()).send_customer_message(ref(), image)
    body = json.loads(responses.calls[1].request.body)
    assert "my cat" in body["Content"] and "https://media.example.test/files/cat.png" in body["Content"]
    assert body["Attachments"] == [
        {"FileName": "cat.png", "FileType": "image/png", "FileContent": "iVBORy1ieXRlcw=="}
    ]
    assert "Authorization" not in responses.calls[0].request.headers  # the RT token stays with RT


@pytest.mark.django_db
@responses.activate
def test_one_poll_turns_transactions_into_events_without_what_the_bridge_wrote():
    responses.post(f"{API}/transactions", json=fixture("api_transactions_search_200.json"))
    responses.post(f"{API}/attachments", json=fixture("api_attachments_search_200.json"))
    result = get_connector(make_endpoint()).poll("40", [ref()])
    assert len(responses.calls) == 2
    query = parse_qs(responses.calls[0].request.body)["query"][0]
    assert "TicketQueue = 'Support' AND id > 40" in query and "Type = 'Correspond'" in query
    assert [(e.id, e.type) for e in result.events] == [
        ("txn:45", EventType.AGENT_MESSAGE),
        ("txn:47", EventType.ACCEPTED),
        ("txn:49", EventType.CLOSED),
    ]
    agent = result.events[0].message
    assert agent.content == {"text": "Hello Ana, this is Alice\n\n(The agent attached: invoice.txt)"}
    assert agent.agent_name == "Alice Agent" and agent.id == "45"
    assert result.cursor == "49"
    assert json.loads(responses.calls[1].request.body) == [{"field": "TransactionId", "value": 45}]


@pytest.mark.django_db
@responses.activate
def test_transactions_of_tickets_not_handed_over_are_passed_over():
    responses.post(f"{API}/transactions", json=fixture("api_transactions_search_200.json"))
    result = get_connector(make_endpoint()).poll("40", [ref("2002")])
    assert result.events == [] and result.cursor == "49"
    assert len(responses.calls) == 1


@pytest.mark.django_db
@responses.activate
def test_first_poll_starts_at_the_end_of_rts_log_and_costs_one_request():
    responses.post(f"{API}/transactions", json={"items": [{"id": "812", "type": "transaction"}], "page": 1})
    connector = get_connector(make_endpoint())
    assert connector.poll("", []).cursor == "812"
    assert connector.poll("812", []).cursor == "812"  # nothing open: no request at all
    assert len(responses.calls) == 1


@pytest.mark.django_db
def test_first_poll_with_open_tickets_starts_below_the_oldest_ticket():
    with responses.RequestsMock() as mock:
        mock.post(f"{API}/transactions", json={"items": [], "page": 1})
        get_connector(make_endpoint()).poll("", [ref("1001"), ref("990")])
        assert "id > 989" in parse_qs(mock.calls[0].request.body)["query"][0]


@pytest.mark.django_db
@responses.activate
def test_close_from_the_bridge_sets_the_first_closed_status():
    responses.put(f"{API}/ticket/1001", json=["Ticket 1001: Status changed from 'open' to 'rejected'"])
    from bridge.types import CloseReason

    get_connector(make_endpoint(closed_statuses=["rejected"])).close_interaction(
        ref(), CloseReason.IDLE_TIMEOUT
    )
    assert json.loads(responses.calls[0].request.body) == {"Status": "rejected"}


def test_config_validation_names_missing_credentials_and_bad_statuses():
    problems = RtConnector.validate({"base_url": BASE, "queue": "Q", "closed_statuses": "resolved"}, {})
    assert "credentials: give 'token', or 'username' and 'password'" in problems
    assert "config: 'closed_statuses' must be a list of status names" in problems
    assert RtConnector.validate({"base_url": BASE, "queue": "Q"}, {"username": "u", "password": "p"}) == []
    webhook = RtConnector.validate({"base_url": BASE, "queue": "Q", "mode": "webhook"}, {"token": "t"})
    assert "config: rt has no webhooks; use mode 'poll'" in webhook


def test_requestor_is_an_email_address():
    assert requestor_address("WHATSAPP", "447700900123") == "447700900123@whatsapp.invalid"
    assert requestor_address("EMAIL", "ana@example.com") == "ana@example.com"
    assert requestor_address("LIVE_CHAT", "a b/c") == "a_b_c@live_chat.invalid".replace("_chat", "chat")


def test_transcript_says_who_said_what_and_when():
    ctx = HandoverContext(
        handover_id="h",
        conversation_id="C",
        channel="SMS",
        customer=Customer(address="123"),
        queue="",
        priority="NORMAL",
        tags=[],
        metadata={},
        context={},
        history=[msg("hello")],
    )
    assert transcript(ctx).splitlines()[-1] == "[2026-01-01 10:00:00 UTC] Customer: hello"
