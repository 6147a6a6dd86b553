"""Genesys Cloud Open Messaging connector: OAuth, signatures, webhook parsing, close detection by
polling, failed receipts, rate limits, and the five steps against a local fake of the Genesys API."""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from bridge import delivery, periodic, services
from bridge.connectors import genesys as genesys_module
from bridge.connectors import get_connector
from bridge.connectors.genesys import GenesysConnector, conversation_ended, signature
from bridge.exceptions import SignatureError, TransientError, UpstreamAuthError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, InboundEvent, Message, State
from bridge.services import close_handover
from bridge.types import AuthorType, Customer, Direction, EventType, HandoverContext, InfobipMessage
from tests.connector_contract import ConnectorContract, json_bytes, post_webhook
from tests.genesys_fake import (
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_ID,
    WEBHOOK_SECRET,
    FakeGenesys,
)
from tests.payloads import fixture_bytes, load_fixture

INBOUND = f"/api/v2/conversations/messages/{INTEGRATION_ID}/inbound/open/message"
CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "webhook_secret": WEBHOOK_SECRET}


def fixture(name: str) -> dict:
    return load_fixture("genesys", name)


def make_endpoint(server: FakeGenesys, slug: str = "genesys", **config) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug=slug,
        kind="genesys",
        config={
            "base_url": server.url,
            "login_url": server.url,
            "integration_id": INTEGRATION_ID,
            "mode": "webhook",
            **config,
        },
        credentials=CREDENTIALS,
        is_default=True,
    )


@pytest.fixture(autouse=True)
def fresh_caches():
    genesys_module.TOKENS.clear()
    genesys_module.RATE.clear()
    yield
    genesys_module.TOKENS.clear()
    genesys_module.RATE.clear()


@pytest.fixture
def genesys():
    server = FakeGenesys().start()
    yield server
    server.stop()


def context(
    handover_id: str = "h-1", history: list[InfobipMessage] | None = None, **extra
) -> HandoverContext:
    when = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    history = (
        history
        if history is not None
        else [
            InfobipMessage(
                "ib-1",
                "conv-1",
                "WHATSAPP",
                "447700900123",
                "447860099299",
                Direction.INBOUND,
                "TEXT",
                {"text": "I want a human"},
                when,
            ),
            InfobipMessage(
                "ib-2",
                "conv-1",
                "WHATSAPP",
                "447860099299",
                "447700900123",
                Direction.OUTBOUND,
                "TEXT",
                {"text": "Connecting you"},
                when + timedelta(seconds=1),
                AuthorType.BOT,
            ),
        ]
    )
    values = {
        "handover_id": handover_id,
        "conversation_id": "conv-1",
        "channel": "WHATSAPP",
        "customer": Customer("447700900123", "Ana"),
        "queue": "billing",
        "priority": "HIGH",
        "tags": ["vip", "billing"],
        "metadata": {"language": "en", "score": 7, "cart": {"items": 2}},
        "context": {"reason": "refund"},
        "history": history,
        **extra,
    }
    return HandoverContext(**values)


# --- the shared contract ---------------------------------------------------------------------------
class TestGenesysContract(ConnectorContract):
    kind = "genesys"

    @pytest.fixture(autouse=True)
    def _server(self):
        self.server = FakeGenesys().start()
        yield
        self.server.stop()

    def make_endpoint(self):
        return make_endpoint(self.server)

    def interaction_id(self, endpoint):
        return "8f7e6d5c-0000-4000-8000-00000000ab01"

    def interaction_data(self, endpoint):
        return {"customer_id": self.interaction_id(endpoint)}

    def sign(self, endpoint, body, *, valid=True):
        return {"X-Hub-Signature-256": signature(WEBHOOK_SECRET if valid else "wrong-secret", body)}

    def unknown_event_body(self, endpoint):
        return json_bytes(fixture("webhook_receipt.json"))

    def agent_message_body(self, endpoint, link):
        data = fixture("webhook_text.json")
        data["channel"]["to"]["id"] = link.interaction_id
        return json_bytes(data)

    @contextmanager
    def failing_send(self, endpoint, link, status):
        self.server.fail("POST", INBOUND, count=10, status=status)
        yield


# --- signatures and parsing ------------------------------------------------------------------------
@pytest.mark.django_db
def test_signature_is_sha256_base64_hmac_of_the_raw_body(genesys):
    connector = get_connector(make_endpoint(genesys))
    body = fixture_bytes("genesys", "webhook_text.json")
    connector.verify_webhook(body, {"X-Hub-Signature-256": signature(WEBHOOK_SECRET, body)})
    import base64
    import hashlib
    import hmac

    expected = (
        "sha256="
        + base64.b64encode(hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    )
    assert signature(WEBHOOK_SECRET, body) == expected
    hex_form = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    for headers in (
        {},
        {"X-Hub-Signature-256": hex_form},
        {"X-Hub-Signature-256": signature("other", body)},
        {"X-Hub-Signature-256": signature(WEBHOOK_SECRET, body + b" ")},
    ):
        with pytest.raises(SignatureError):
            connector.verify_webhook(body, headers)


@pytest.mark.django_db
def test_webhook_text_attachment_typing_and_receipt(genesys):
    connector = get_connector(make_endpoint(genesys))
    customer = "8f7e6d5c-0000-4000-8000-00000000ab01"
    (text,) = connector.parse_webhook(json_bytes(fixture("webhook_text.json")), {})
    assert text.type == EventType.AGENT_MESSAGE and text.interaction_id == customer
    assert text.message.content == {"text": "Hello Ana, I am Ada. How can I help?"}
    assert text.id == text.message.id == "5d8a1b2c3e4f4a5b8c9d0e1f2a3b4c5d"

    words, image = connector.parse_webhook(json_bytes(fixture("webhook_attachment.json")), {})
    assert words.message.content == {"text": "Here is the form"}
    assert image.message.content_type == "IMAGE"
    assert image.message.content == {"url": "https://api.mypurecloud.com/api/v2/downloads/8a8b8c8d8e8f"}
    assert image.message.id == "6e9b2c3d4f5a4b6c9d0e1f2a3b4c5d6e:1"

    (typing,) = connector.parse_webhook(json_bytes(fixture("webhook_typing.json")), {})
    assert typing.type == EventType.TYPING and typing.interaction_id == customer

    (receipt,) = connector.parse_webhook(json_bytes(fixture("webhook_receipt.json")), {})
    assert receipt.type == EventType.UNKNOWN and receipt.original_type == "Receipt"


@pytest.mark.django_db
def test_malformed_webhook_is_400_and_unsigned_is_403(client, genesys):
    endpoint = make_endpoint(genesys)
    body = b"not json"
    assert (
        post_webhook(
            client, endpoint, body, {"X-Hub-Signature-256": signature(WEBHOOK_SECRET, body)}
        ).status_code
        == 400
    )
    good = json_bytes(fixture("webhook_text.json"))
    assert post_webhook(client, endpoint, good, {}).status_code == 403


# --- OAuth -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_token_is_cached_renewed_before_expiry_and_after_a_401(genesys, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint = make_endpoint(genesys)
    connector = get_connector(endpoint)
    for _ in range(3):
        connector.check_connection()
    assert genesys.token_requests == 1
    token_call = genesys.calls("POST", "/oauth/token")[0]
    assert token_call.body == b"grant_type=client_credentials"
    assert token_call.headers["Authorization"].startswith("Basic ")

    # another connector for the same endpoint (another delivery) reuses the token
    get_connector(CcaasEndpoint.objects.get(pk=endpoint.pk)).check_connection()
    assert genesys.token_requests == 1

    # close to its expiry the token is renewed before it is used
    key = next(iter(genesys_module.TOKENS.tokens))
    token = genesys_module.TOKENS.tokens[key][0]
    genesys_module.TOKENS.tokens[key] = (token, time.time() - 86340, time.time() + 60)
    connector.check_connection()
    assert genesys.token_requests == 2

    # a token Genesys no longer accepts is replaced once
    genesys.tokens.clear()
    assert "Infobip bridge" in connector.check_connection()
    assert genesys.token_requests == 3
    assert CLIENT_SECRET not in caplog.text


@pytest.mark.django_db
def test_a_refused_client_is_an_auth_error_that_does_not_show_the_secret(genesys):
    endpoint = make_endpoint(genesys)
    endpoint.credentials = {**CREDENTIALS, "client_secret": "wrong-secret-value"}
    endpoint.save()
    with pytest.raises(UpstreamAuthError) as caught:
        get_connector(endpoint).check_connection()
    assert "401" in str(caught.value) and "wrong-secret-value" not in str(caught.value)


def test_hosts_come_from_the_region_and_validation_wants_one():
    endpoint = CcaasEndpoint(
        slug="g", kind="genesys", config={"region": "mypurecloud.de", "integration_id": "x"}, credentials={}
    )
    connector = GenesysConnector(endpoint)
    assert connector.api_url == "https://api.mypurecloud.de"
    assert connector.login_url == "https://login.mypurecloud.de"
    assert GenesysConnector.validate({"region": "mypurecloud.com", "integration_id": "x"}, CREDENTIALS) == []
    problems = GenesysConnector.validate({"integration_id": "x", "base_url": "https://a.test"}, CREDENTIALS)
    assert any("region" in p for p in problems)
    assert any(
        "history" in p
        for p in GenesysConnector.validate(
            {"region": "r", "integration_id": "x", "history": "all"}, CREDENTIALS
        )
    )


# --- open ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_open_sends_the_transcript_first_with_routing_attributes(genesys):
    connector = get_connector(make_endpoint(genesys))
    result = connector.open_interaction(context())
    assert result.interaction_id == "h-1"
    conversation = genesys.conversation_of("h-1")
    assert result.data["conversation_id"] == conversation["id"]
    (first,) = conversation["messages"]
    channel = first["body"]["channel"]
    assert channel["from"] == {"id": "h-1", "idType": "Opaque", "nickname": "Ana"}
    assert channel["messageId"] == "transcript:h-1:0"
    assert first["text"].splitlines() == [
        "Conversation with the bot before the handover (WHATSAPP):",
        "[10:00 UTC] Ana: I want a human",
        "[10:00 UTC] Bot: Connecting you",
    ]
    attributes = channel["metadata"]["customAttributes"]
    assert attributes["tags"] == "vip,billing" and attributes["language"] == "en"
    assert attributes["score"] == "7" and attributes["cart"] == '{"items":2}'
    assert attributes["infobipConversationId"] == "conv-1" and attributes["queue"] == "billing"
    assert attributes["reason"] == "refund" and attributes["priority"] == "HIGH"


@pytest.mark.django_db
def test_open_can_send_the_history_as_messages_in_order(genesys):
    connector = get_connector(make_endpoint(genesys, history="messages"))
    connector.open_interaction(context("h-2"))
    messages = genesys.conversation_of("h-2")["messages"]
    assert [m["text"] for m in messages] == ["I want a human", "Bot: Connecting you"]
    assert [m["body"]["channel"]["messageId"] for m in messages] == ["ib-1", "ib-2"]
    assert [m["body"]["channel"]["time"] for m in messages] == [
        "2026-01-01T10:00:00.000Z",
        "2026-01-01T10:00:01.000Z",
    ]
    assert "metadata" in messages[0]["body"]["channel"] and "metadata" not in messages[1]["body"]["channel"]


# --- close detection ---------------------------------------------------------------------------------
def test_conversation_end_rules():
    ended = fixture("api_conversation_agent_ended_200.json")
    assert conversation_ended(ended)
    waiting = {
        "participants": [
            {"purpose": "customer", "state": "connected"},
            {"purpose": "acd", "state": "connected"},
        ]
    }
    assert not conversation_ended(waiting)
    transferred = {
        "participants": [
            {"purpose": "customer", "state": "connected"},
            {"purpose": "agent", "state": "disconnected", "disconnectType": "transfer"},
            {"purpose": "acd", "state": "connected"},
        ]
    }
    assert not conversation_ended(transferred)
    agent_left = {
        "participants": [
            {"purpose": "customer", "state": "connected"},
            {"purpose": "acd", "state": "disconnected"},
            {"purpose": "agent", "state": "disconnected", "endTime": "2026-01-01T10:20:00Z"},
        ]
    }
    assert conversation_ended(agent_left)


@pytest.mark.django_db
def test_poll_checks_a_bounded_rotating_batch_and_notices_ends(genesys):
    endpoint = make_endpoint(genesys, poll_batch=2)
    connector = get_connector(endpoint)
    from bridge.types import InteractionRef

    refs = []
    for n in range(5):
        result = connector.open_interaction(context(f"h-{n}"))
        data = dict(result.data)
        if n == 4:
            data.pop("conversation_id")  # looked up by the poll, then kept in the cursor
        refs.append(InteractionRef(f"h-{n}", "conv", result.interaction_id, "WHATSAPP", Customer("1"), data))
    ids = {n: genesys.conversation_of(f"h-{n}")["id"] for n in range(5)}
    for n in (1, 4):
        genesys.agent_joins(ids[n])
        genesys.agent_ends(ids[n])
    genesys.agent_joins(ids[2])
    genesys.agent_transfers_to_queue(ids[2])

    lookups_before = len(genesys.calls("GET", r"/api/v2/conversations/messages/[^/]+/details"))
    cursor, closed, per_cycle = "", [], []
    for _ in range(3):
        before = len(genesys.calls("GET"))
        result = connector.poll(cursor, refs)
        per_cycle.append(len(genesys.calls("GET")) - before)
        cursor = result.cursor
        closed += [(e.type, e.interaction_id) for e in result.events]
    assert sorted(closed) == [(EventType.CLOSED, "h-1"), (EventType.CLOSED, "h-4")]
    assert max(per_cycle) <= 3  # two conversations, plus one id look-up
    assert json.loads(cursor)["conversations"] == {"h-4": ids[4]}
    details = genesys.calls("GET", r"/api/v2/conversations/messages/[^/]+/details")
    assert len(details) - lookups_before == 1  # the looked-up id is kept


# --- failures ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_429_is_transient_with_retry_after(genesys):
    connector = get_connector(make_endpoint(genesys))
    genesys.fail("POST", INBOUND, status=429, headers={"Retry-After": "17"})
    with pytest.raises(TransientError) as caught:
        connector.open_interaction(context())
    assert caught.value.retry_after == 17


@pytest.mark.django_db
def test_requests_per_token_stay_under_the_configured_limit(genesys):
    connector = get_connector(make_endpoint(genesys, rate_limit_per_minute=3))
    for _ in range(3):
        connector.check_connection()
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        connector.check_connection()
    assert time.monotonic() - started < 1 and caught.value.retry_after > 50
    assert len(genesys.calls("GET")) == 3


@pytest.mark.django_db
def test_failed_delivery_posts_a_failed_receipt(genesys):
    from bridge.types import InteractionRef

    connector = get_connector(make_endpoint(genesys))
    ref = InteractionRef("h-1", "conv-1", "h-1", "WHATSAPP", Customer("1"), {})
    connector.acknowledge_failed_delivery(ref, "5d8a1b2c:1", "Infobip answered 400: bad media")
    (receipt,) = genesys.receipts
    assert receipt["id"] == "5d8a1b2c" and receipt["status"] == "Failed"
    assert receipt["direction"] == "Outbound" and receipt["isFinalReceipt"] is True
    assert receipt["channel"]["to"]["id"] == "h-1"
    assert receipt["reasons"] == [{"code": "GeneralError", "message": "Infobip answered 400: bad media"}]


# --- the five steps ----------------------------------------------------------------------------------
def _post(client, endpoint, body: dict):
    raw, headers = FakeGenesys.signed(body)
    return post_webhook(client, endpoint, raw, headers)


@pytest.mark.django_db
def test_five_steps_against_the_genesys_fake(
    genesys, fake_infobip, api, client, inbound_url, fast_retries, django_capture_on_commit_callbacks
):
    conv = fake_infobip.add_conversation(tags=["vip"], metadata={"language": "en"})
    fake_infobip.message(conv, "I want a human", created_at="2026-01-01T10:00:00.000+00:00")
    fake_infobip.message(
        conv, "Connecting you", direction="OUTBOUND", author="BOT", created_at="2026-01-01T10:00:01.000+00:00"
    )
    endpoint = make_endpoint(genesys)
    assert periodic.polls(endpoint), "polled every interval although in webhook mode"

    # 1. open: the transcript starts a Genesys conversation with routing attributes
    response = api.post(
        "/api/escalations/", {"conversationId": conv, "context": {"displayName": "Ana"}}, format="json"
    )
    assert response.status_code == 202
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    assert link.state == State.ACTIVE and link.interaction_id == str(link.pk)
    conversation = genesys.conversation_of(link.interaction_id)
    assert link.interaction_data["conversation_id"] == conversation["id"]
    first = conversation["messages"][0]["body"]["channel"]
    assert first["metadata"]["customAttributes"]["tags"] == "vip"
    assert first["metadata"]["customAttributes"]["language"] == "en"

    # 2. customer messages: once each, in order
    for text in ("one", "two"):
        body = fake_infobip.message(conv, text)
        for _ in range(2):
            assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drain()
    assert genesys.inbound_texts(link.interaction_id)[1:] == ["one", "two"]

    # 3. agent replies (text, attachment, typing): once each, in order
    genesys.agent_joins(conversation["id"])
    replies = [
        genesys.agent_says(conversation["id"], "Hello Ana"),
        genesys.agent_says(
            conversation["id"],
            attachments=[
                {"mediaType": "Image", "url": "https://files.example/form.png", "mime": "image/png"}
            ],
        ),
    ]
    assert _post(client, endpoint, genesys.agent_types(conversation["id"])).status_code == 200
    for reply in replies * 2:
        assert _post(client, endpoint, reply).status_code == 200
    delivery.drain()
    sent = fake_infobip.sent_to_customer(conv)
    assert [(m["contentType"], m["content"]) for m in sent] == [
        ("TEXT", {"text": "Hello Ana"}),
        ("IMAGE", {"url": "https://files.example/form.png"}),
    ]
    typing = InboundEvent.objects.get(source="ccaas:genesys", type="Typing")
    # agent typing is forwarded to Infobip best effort, outside the message lanes
    assert "queued for Infobip" in typing.note
    services.send_typing(link.pk, True)
    (event,) = [r.json for r in fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/events")]
    assert event["type"] == "TYPING_STARTED" and event["to"] == "447700900123"

    # a message Infobip refuses for good is reported back to Genesys as a Failed receipt
    fake_infobip.fail("POST", rf"/ccaas/1/conversations/{conv}/messages", count=1, status=400)
    doomed = genesys.agent_says(conversation["id"], "This one will not arrive")
    assert _post(client, endpoint, doomed).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        delivery.drain()
    assert [r["id"] for r in genesys.receipts if r["status"] == "Failed"] == [doomed["id"]]

    # 4. the agent ends the conversation: the next poll notices, and Infobip is closed
    periodic.poll_endpoint(endpoint.pk)
    assert ConversationLink.objects.get(pk=link.pk).state == State.ACTIVE
    genesys.agent_ends(conversation["id"])
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED and link.close_reason == "AGENT"
    assert fake_infobip.conversations[conv]["status"] == "CLOSED"
    assert Message.objects.filter(link=link, source=Message.Source.CCAAS).count() == 3
    assert not Delivery.objects.filter(
        state__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT]
    ).exists()


@pytest.mark.django_db
def test_close_on_our_side_disconnects_the_genesys_conversation(genesys, fake_infobip, api):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "hello")
    make_endpoint(genesys)
    api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    conversation = genesys.conversation_of(link.interaction_id)
    close_handover(link, actor="operator")
    delivery.drain()
    assert conversation_ended({"participants": conversation["participants"]})
    assert conversation["messages"][-1]["text"] == "An operator closed this conversation."
    assert genesys.calls("PATCH")[0].json == {"state": "disconnected"}
    link.refresh_from_db()
    assert link.state == State.CLOSED
