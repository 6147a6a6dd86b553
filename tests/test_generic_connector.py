"""The generic connector speaks docs/protocol.md exactly: paths, bodies, Idempotency-Key, signatures,
polling, and webhook verification and parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge.connectors import get_connector
from bridge.exceptions import (
    PermanentError,
    SignatureError,
    TransientError,
    UpstreamAuthError,
    UpstreamError,
    WebhookError,
)
from bridge.models import CcaasEndpoint
from bridge.signing import sign
from bridge.types import (
    AuthorType,
    CloseReason,
    Customer,
    Direction,
    EventType,
    HandoverContext,
    InfobipMessage,
    InteractionRef,
)

BASE = "https://ccaas.example.test/bridge"
SECRET = "generic-test-secret-4f1c"
API_KEY = "generic-api-key-77aa"
HANDOVER = "0b7f3f0e-4a57-4c0e-9a52-6c1bb8f1e7a1"
CONV = "4461ea29-c09e-4ba8-a751-df86cf0a0eb9"


def endpoint(**credentials) -> CcaasEndpoint:
    return CcaasEndpoint(
        slug="acme",
        kind="generic",
        config={"base_url": BASE + "/", "mode": "webhook"},
        credentials={"secret": SECRET, **credentials},
    )


@pytest.fixture
def connector():
    return get_connector(endpoint())


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def infobip_message(n: int, *, direction=Direction.INBOUND, author=AuthorType.CUSTOMER) -> InfobipMessage:
    inbound = direction == Direction.INBOUND
    return InfobipMessage(
        id=f"ib-{n}",
        conversation_id=CONV,
        channel="WHATSAPP",
        from_="447700900123" if inbound else "447492263897",
        to="447492263897" if inbound else "447700900123",
        direction=direction,
        content_type="TEXT",
        content={"text": f"text {n}"},
        created_at=datetime(2026, 1, 1, 10, 0, n, tzinfo=UTC),
        author_type=author,
    )


def wire_message(n: int, *, direction="INBOUND", author="CUSTOMER") -> dict:
    return {
        "id": f"ib-{n}",
        "direction": direction,
        "authorType": author,
        "contentType": "TEXT",
        "content": {"text": f"text {n}"},
        "createdAt": f"2026-01-01T10:00:{n:02d}+00:00",
    }


def ref() -> InteractionRef:
    return InteractionRef(
        handover_id=HANDOVER,
        conversation_id=CONV,
        interaction_id="int/42",
        channel="WHATSAPP",
        customer=Customer("447700900123", "Ana"),
    )


def expected_signature(ts: str, body: bytes, secret: str = SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()


def assert_signed(request, body: bytes) -> None:
    ts = request.headers["X-Bridge-Timestamp"]
    assert ts.isdigit() and abs(int(ts) - time.time()) < 5
    assert request.headers["X-Bridge-Signature"] == expected_signature(ts, body)


def raw(request) -> bytes:
    body = request.body or b""
    return body.encode() if isinstance(body, str) else body


# --- 1. open -------------------------------------------------------------------------------------
def context(history) -> HandoverContext:
    return HandoverContext(
        handover_id=HANDOVER,
        conversation_id=CONV,
        channel="WHATSAPP",
        customer=Customer("447700900123", None),
        queue="billing",
        priority="HIGH",
        tags=["vip", "billing"],
        metadata={"language": "de"},
        context={"orderId": 17, "nested": {"a": [1, 2]}},
        history=history,
    )


def test_open_posts_the_interaction(connector, mocked):
    mocked.add(responses.POST, f"{BASE}/interactions", json={"id": "int-1"}, status=201)
    history = [
        infobip_message(0),
        infobip_message(1, direction=Direction.OUTBOUND, author=AuthorType.BOT),
        infobip_message(2),
    ]
    result = connector.open_interaction(context(history))
    assert result.interaction_id == "int-1"

    request = mocked.calls[0].request
    assert request.url == f"{BASE}/interactions"
    assert request.headers["Idempotency-Key"] == HANDOVER
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers
    assert_signed(request, raw(request))
    assert json.loads(raw(request)) == {
        "handoverId": HANDOVER,
        "conversationId": CONV,
        "channel": "WHATSAPP",
        "customer": {"address": "447700900123", "displayName": None},
        "queue": "billing",
        "priority": "HIGH",
        "tags": ["vip", "billing"],
        "metadata": {"language": "de"},
        "context": {"orderId": 17, "nested": {"a": [1, 2]}},
        "history": [wire_message(0), wire_message(1, direction="OUTBOUND", author="BOT"), wire_message(2)],
    }


def test_open_answer_200_is_fine_and_an_answer_without_id_is_an_error(connector, mocked):
    mocked.add(responses.POST, f"{BASE}/interactions", json={"id": 99}, status=200)
    mocked.add(responses.POST, f"{BASE}/interactions", json={"status": "ok"}, status=200)
    assert connector.open_interaction(context([])).interaction_id == "99"
    with pytest.raises(UpstreamError):
        connector.open_interaction(context([]))


def test_idempotency_key_is_stable_across_retries(connector, mocked):
    mocked.add(responses.POST, f"{BASE}/interactions", status=503, headers={"Retry-After": "3"})
    mocked.add(responses.POST, f"{BASE}/interactions", json={"id": "int-1"})
    with pytest.raises(TransientError) as caught:
        connector.open_interaction(context([infobip_message(0)]))
    assert caught.value.retry_after == 3
    connector.open_interaction(context([infobip_message(0)]))
    first, second = (c.request for c in mocked.calls)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == HANDOVER
    assert raw(first) == raw(second)


def test_bearer_api_key_only_when_set(mocked):
    connector = get_connector(endpoint(api_key=API_KEY))
    mocked.add(responses.POST, f"{BASE}/interactions", json={"id": "int-1"})
    connector.open_interaction(context([]))
    assert mocked.calls[0].request.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.django_db
def test_a_changed_api_key_is_used_at_once(mocked):
    saved = endpoint(api_key="old-key")
    saved.save()
    mocked.add(responses.POST, f"{BASE}/interactions", json={"id": "int-1"})
    mocked.add(responses.POST, f"{BASE}/interactions", json={"id": "int-1"})
    get_connector(saved).open_interaction(context([]))
    # a change that does not go through save() (no new updated_at) must not reuse the old header
    CcaasEndpoint.objects.filter(pk=saved.pk).update(credentials={"secret": SECRET, "api_key": "new-key"})
    get_connector(CcaasEndpoint.objects.get(pk=saved.pk)).open_interaction(context([]))
    assert [c.request.headers["Authorization"] for c in mocked.calls] == ["Bearer old-key", "Bearer new-key"]


def test_errors_name_no_secret(mocked):
    connector = get_connector(endpoint(api_key=API_KEY))
    mocked.add(responses.POST, f"{BASE}/interactions", status=401, body="denied")
    with pytest.raises(UpstreamAuthError) as caught:
        connector.open_interaction(context([]))
    assert "HTTP 401" in str(caught.value) and "denied" in str(caught.value)
    assert API_KEY not in str(caught.value) and SECRET not in str(caught.value)


def test_4xx_is_permanent(connector, mocked):
    mocked.add(responses.POST, f"{BASE}/interactions", status=422, body='{"error": "bad queue"}')
    with pytest.raises(PermanentError) as caught:
        connector.open_interaction(context([]))
    assert not isinstance(caught.value, TransientError)


# --- 2. messages ---------------------------------------------------------------------------------
def test_customer_message(connector, mocked):
    mocked.add(responses.POST, f"{BASE}/interactions/int%2F42/messages", status=202, body="")
    connector.send_customer_message(ref(), infobip_message(7))
    request = mocked.calls[0].request
    assert request.headers["Idempotency-Key"] == "ib-7"
    assert_signed(request, raw(request))
    assert json.loads(raw(request)) == wire_message(7)


# --- 3. close ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "wire"),
    [
        (CloseReason.CONVERSATION_CLOSED, "CONVERSATION_CLOSED"),
        (CloseReason.IDLE_TIMEOUT, "IDLE_TIMEOUT"),
        (CloseReason.OPERATOR, "OPERATOR"),
        (CloseReason.AGENT, "OPERATOR"),  # not a protocol reason; never sent as is
    ],
)
def test_close(connector, mocked, reason, wire):
    mocked.add(responses.POST, f"{BASE}/interactions/int%2F42/close", status=204)
    connector.close_interaction(ref(), reason)
    request = mocked.calls[0].request
    assert request.headers["Idempotency-Key"] == f"close:{HANDOVER}"
    assert_signed(request, raw(request))
    assert json.loads(raw(request)) == {"reason": wire}


# --- 4. poll -------------------------------------------------------------------------------------
def agent_event(n: int, interaction="int-1") -> dict:
    return {
        "id": f"ev-{n}",
        "type": "agent_message",
        "interactionId": interaction,
        "message": {
            "id": f"am-{n}",
            "contentType": "TEXT",
            "content": {"text": f"agent {n}"},
            "agent": {"id": 5, "name": "Alice"},
        },
    }


def test_first_poll_has_no_after_and_is_signed_over_an_empty_body(connector, mocked):
    mocked.add(responses.GET, f"{BASE}/events", json={"events": [agent_event(1)], "cursor": "c1"})
    result = connector.poll("", [])
    request = mocked.calls[0].request
    assert urlsplit(request.url).query == ""
    assert_signed(request, b"")
    assert not request.body
    assert result.cursor == "c1"
    assert [e.id for e in result.events] == ["ev-1"]


def test_poll_after_a_cursor(connector, mocked):
    mocked.add(
        responses.GET, f"{BASE}/events", json={"events": [agent_event(2), agent_event(3)], "cursor": "c/2&x"}
    )
    mocked.add(responses.GET, f"{BASE}/events", json={"events": []})
    result = connector.poll("c/1&x", [])
    assert parse_qs(urlsplit(mocked.calls[0].request.url).query) == {"after": ["c/1&x"]}
    assert_signed(mocked.calls[0].request, b"")
    assert [e.message.id for e in result.events] == ["am-2", "am-3"]
    # an answer without a cursor keeps ours, so nothing is read twice or skipped
    assert connector.poll(result.cursor, []).cursor == "c/2&x"


def test_poll_answer_without_events_is_an_error(connector, mocked):
    mocked.add(responses.GET, f"{BASE}/events", json={"cursor": "c1"})
    with pytest.raises(UpstreamError):
        connector.poll("", [])


# --- CCaaS -> bridge: verification -----------------------------------------------------------------
BODY = json.dumps({"events": [agent_event(1)]}).encode()


def test_valid_signature_passes(connector):
    connector.verify_webhook(BODY, sign(SECRET, BODY))
    ts = str(int(time.time()))
    connector.verify_webhook(
        BODY, {"X-Bridge-Timestamp": ts, "X-Bridge-Signature": expected_signature(ts, BODY)}
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda: sign("another-secret", BODY), id="wrong secret"),
        pytest.param(lambda: sign(SECRET, BODY + b" "), id="other body"),
        pytest.param(lambda: {"X-Bridge-Timestamp": str(int(time.time()))}, id="no signature"),
        pytest.param(
            lambda: {"X-Bridge-Signature": sign(SECRET, BODY)["X-Bridge-Signature"]}, id="no timestamp"
        ),
        pytest.param(lambda: {}, id="no headers"),
        pytest.param(lambda: sign(SECRET, BODY, timestamp=int(time.time()) - 301), id="301 s old"),
        pytest.param(lambda: sign(SECRET, BODY, timestamp=int(time.time()) + 301), id="301 s ahead"),
        pytest.param(
            lambda: {
                **sign(SECRET, BODY),
                "X-Bridge-Signature": sign(SECRET, BODY)["X-Bridge-Signature"][3:],
            },
            id="no v1 prefix",
        ),
        pytest.param(
            lambda: {"X-Bridge-Timestamp": "soon", "X-Bridge-Signature": "v1=00"}, id="bad timestamp"
        ),
    ],
)
def test_bad_signatures_are_refused(connector, headers):
    with pytest.raises(SignatureError) as caught:
        connector.verify_webhook(BODY, headers())
    assert caught.value.status == 403


def test_a_timestamp_within_300_s_is_accepted(connector):
    connector.verify_webhook(BODY, sign(SECRET, BODY, timestamp=int(time.time()) - 290))


# --- CCaaS -> bridge: parsing ----------------------------------------------------------------------
def test_parse_every_event_type(connector):
    body = json.dumps(
        {
            "events": [
                agent_event(1),
                {"id": "ev-2", "type": "accepted", "interactionId": "int-1"},
                {"id": "ev-3", "type": "closed", "interactionId": "int-1"},
                {"id": "ev-4", "type": "agent_whisper", "interactionId": "int-1", "x": 1},
                {"id": "ev-5", "type": "survey_done"},
            ]
        }
    ).encode()
    events = connector.parse_webhook(body, {})
    assert [e.type for e in events] == [
        EventType.AGENT_MESSAGE,
        EventType.ACCEPTED,
        EventType.CLOSED,
        EventType.UNKNOWN,
        EventType.UNKNOWN,
    ]
    message = events[0].message
    assert (message.id, message.content_type, message.content, message.agent_id, message.agent_name) == (
        "am-1",
        "TEXT",
        {"text": "agent 1"},
        "5",
        "Alice",
    )
    assert events[0].interaction_id == "int-1"
    assert events[3].original_type == "agent_whisper" and events[3].raw["x"] == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"events": {}}',
        b'{"event": []}',
        b'{"events": ["x"]}',
        b'{"events": [{"type": "closed", "interactionId": "i"}]}',
        b'{"events": [{"id": "e", "interactionId": "i"}]}',
        b'{"events": [{"id": "e", "type": "closed"}]}',
        b'{"events": [{"id": "e", "type": "agent_message", "interactionId": "i"}]}',
        b'{"events": [{"id": "e", "type": "agent_message", "interactionId": "i", "message": {"id": "m"}}]}',
        b'{"events": [{"id": "e", "type": "agent_message", "interactionId": "i", "message": {"content": {}}}]}',
    ],
)
def test_malformed_webhooks_are_refused(connector, body):
    with pytest.raises(WebhookError) as caught:
        connector.parse_webhook(body, {})
    assert caught.value.status == 400
