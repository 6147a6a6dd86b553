"""The two webhooks: Infobip's (path token) and the contact centers' (per connector; generic: HMAC).

Fault cases of docs/reliability.md: F6 (3 MB body), F7 (conversations never escalated), F16 (wrong
token / bad signature, 1,000 times).
"""

from __future__ import annotations

import json
import random
import string

import pytest

from bridge.api import views
from bridge.models import (
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    HandoverEvent,
    InboundEvent,
    Message,
    State,
)
from bridge.signing import sign
from tests.payloads import load_fixture

pytestmark = pytest.mark.django_db

SECRET = "webhook-test-secret"
THREE_MB = 3 * 1024 * 1024


def infobip_body(name: str) -> dict:
    return load_fixture("infobip", name)


MESSAGE = infobip_body("webhook_account_configuration_message")
CONV = MESSAGE["conversationId"]


def post_json(client, url, body, **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(url, data=data, content_type="application/json", **headers)


def nothing_stored() -> bool:
    return not (Message.objects.exists() or Delivery.objects.exists() or InboundEvent.objects.exists())


@pytest.fixture
def active_link(db):
    return ConversationLink.objects.create(
        conversation_id=CONV, state=State.ACTIVE, interaction_id="int-1", channel="WHATSAPP"
    )


@pytest.fixture
def no_parsing(monkeypatch):
    """Fail loudly if the view gets as far as parsing or storing."""

    def boom(*args, **kwargs):
        raise AssertionError("the body was parsed")

    monkeypatch.setattr(views, "parse_webhook", boom)
    monkeypatch.setattr(views.services, "record_inbound", boom)
    monkeypatch.setattr(views.services, "ingest_events", boom)


# --- Infobip webhook -------------------------------------------------------------------------------
def wrong_tokens(right: str, count: int = 1000) -> list[str]:
    rng = random.Random(16)
    alphabet = string.ascii_letters + string.digits + "-_"
    tokens = {right[:-1], right + "x", right.upper(), right[1:], "x"}
    for i in range(len(right)):  # one character off at every position
        swapped = "A" if right[i] != "A" else "B"
        tokens.add(right[:i] + swapped + right[i + 1 :])
    while len(tokens) < count:
        tokens.add("".join(rng.choice(alphabet) for _ in range(rng.choice([len(right), 8, 64]))))
    tokens.discard(right)
    return sorted(tokens)[:count]


def test_wrong_path_token_is_404(client, no_parsing):
    response = post_json(client, "/webhooks/infobip/wrong-token/", MESSAGE)
    assert response.status_code == 404


def test_a_thousand_wrong_tokens_are_all_404(client, settings, active_link, monkeypatch):
    compared = []
    real = views.tokens_equal
    monkeypatch.setattr(
        views, "tokens_equal", lambda given, expected: compared.append(1) or real(given, expected)
    )
    tokens = wrong_tokens(settings.BRIDGE_INBOUND_TOKEN)
    assert len(tokens) == 1000
    statuses = {post_json(client, f"/webhooks/infobip/{t}/", MESSAGE).status_code for t in tokens}
    assert statuses == {404}
    assert len(compared) == 1000  # every token went through the constant-time comparison
    assert nothing_stored()


def test_message_of_a_handed_over_conversation_is_stored_and_queued(client, inbound_url, active_link):
    response = post_json(client, inbound_url, MESSAGE)
    assert response.status_code == 200
    row = Message.objects.get()
    assert (row.link_id, row.external_id, row.direction, row.content["text"]) == (
        active_link.pk,
        MESSAGE["id"],
        "INBOUND",
        "Hello",
    )
    delivery = Delivery.objects.get()
    assert (delivery.message_id, delivery.lane, delivery.kind) == (row.pk, "TO_CCAAS", "MESSAGE")


def test_duplicate_is_stored_once(client, inbound_url, active_link):
    first = post_json(client, inbound_url, MESSAGE)
    second = post_json(client, inbound_url, MESSAGE)
    assert first.status_code == second.status_code == 200
    assert Message.objects.count() == 1
    assert Delivery.objects.count() == 1


def test_delivery_report_is_ignored(client, inbound_url, active_link):
    response = post_json(client, inbound_url, infobip_body("webhook_delivery_report"))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert nothing_stored()


def test_outbound_echo_is_ignored(client, inbound_url, active_link):
    echo = {**MESSAGE, "direction": "OUTBOUND", "from": MESSAGE["to"], "to": MESSAGE["from"]}
    assert post_json(client, inbound_url, echo).status_code == 200
    assert nothing_stored()


def test_message_of_a_conversation_never_escalated_is_not_kept(client, inbound_url):
    secret_text = "my card number is 4111 1111 1111 1111"
    body = {**MESSAGE, "conversationId": "NEVER-ESCALATED", "content": {"text": secret_text}}
    response = post_json(client, inbound_url, body)
    assert response.status_code == 200
    assert nothing_stored()
    assert not ConversationLink.objects.exists()
    assert not HandoverEvent.objects.filter(text__contains="4111").exists()


def test_message_of_a_closed_handover_is_not_kept(client, inbound_url):
    ConversationLink.objects.create(conversation_id=CONV, state=State.CLOSED)
    assert post_json(client, inbound_url, MESSAGE).status_code == 200
    assert nothing_stored()


def test_three_megabytes_are_refused_before_parsing(client, inbound_url, active_link, no_parsing):
    big = json.dumps({**MESSAGE, "content": {"text": "x" * THREE_MB}}).encode()
    response = post_json(client, inbound_url, big)
    assert response.status_code == 413
    assert "error" in response.json()
    not_json = post_json(client, inbound_url, b"{" * THREE_MB)
    assert not_json.status_code == 413
    assert nothing_stored()


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'"text"', json.dumps({k: v for k, v in MESSAGE.items() if k != "from"}).encode()],
)
def test_malformed_infobip_bodies_are_400(client, inbound_url, active_link, body):
    response = post_json(client, inbound_url, body)
    assert response.status_code == 400
    assert "error" in response.json()
    assert nothing_stored()


# --- CCaaS webhook ---------------------------------------------------------------------------------
@pytest.fixture
def endpoint(db):
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": "https://ccaas.example.test/bridge", "mode": "webhook"},
        credentials={"secret": SECRET},
        is_default=True,
    )


def signed_headers(body: bytes, secret: str = SECRET, **kwargs) -> dict[str, str]:
    return {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(secret, body, **kwargs).items()}


def events_body(*events) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def test_unknown_slug_is_404(client, endpoint, no_parsing):
    body = events_body({"id": "e1", "type": "closed", "interactionId": "i"})
    assert post_json(client, "/webhooks/ccaas/nope/", body, **signed_headers(body)).status_code == 404


def test_disabled_endpoint_is_404(client, endpoint, no_parsing):
    CcaasEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    body = events_body({"id": "e1", "type": "closed", "interactionId": "i"})
    assert post_json(client, "/webhooks/ccaas/acme/", body, **signed_headers(body)).status_code == 404


def test_a_thousand_bad_signatures_are_all_403(client, endpoint):
    ConversationLink.objects.create(
        conversation_id="c1", endpoint=endpoint, interaction_id="int-1", state=State.ACTIVE
    )
    rng = random.Random(403)
    statuses = []
    for n in range(1000):
        body = events_body(
            {
                "id": f"e{n}",
                "type": "agent_message",
                "interactionId": "int-1",
                "message": {"id": f"m{n}", "content": {"text": "hi"}},
            }
        )
        kind = n % 4
        if kind == 0:
            headers = signed_headers(body, secret=f"guess-{rng.random()}")
        elif kind == 1:
            headers = signed_headers(body + b" ")
        elif kind == 2:
            good = sign(SECRET, body)
            digest = list(good["X-Bridge-Signature"][3:])
            digest[n % len(digest)] = "0" if digest[n % len(digest)] != "0" else "1"
            headers = {
                "HTTP_X_BRIDGE_TIMESTAMP": good["X-Bridge-Timestamp"],
                "HTTP_X_BRIDGE_SIGNATURE": "v1=" + "".join(digest),
            }
        else:
            headers = {}
        statuses.append(post_json(client, "/webhooks/ccaas/acme/", body, **headers).status_code)
    assert set(statuses) == {403}
    assert nothing_stored()


def test_stale_signature_is_403(client, endpoint):
    import time

    body = events_body({"id": "e1", "type": "closed", "interactionId": "int-1"})
    headers = signed_headers(body, timestamp=int(time.time()) - 301)
    assert post_json(client, "/webhooks/ccaas/acme/", body, **headers).status_code == 403


def test_unknown_event_type_is_stored_and_200(client, endpoint):
    body = events_body({"id": "ev-9", "type": "survey_completed", "interactionId": "int-1", "score": 5})
    response = post_json(client, "/webhooks/ccaas/acme/", body, **signed_headers(body))
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.source, event.event_id, event.type, event.endpoint_id) == (
        "ccaas:acme",
        "ev-9",
        "survey_completed",
        endpoint.pk,
    )
    assert event.payload["score"] == 5
    # redelivered: still 200, still one row
    assert post_json(client, "/webhooks/ccaas/acme/", body, **signed_headers(body)).status_code == 200
    assert InboundEvent.objects.count() == 1


def test_agent_message_is_stored_once_and_queued(client, endpoint):
    link = ConversationLink.objects.create(
        conversation_id="c1", endpoint=endpoint, interaction_id="int-1", state=State.ACTIVE
    )
    body = events_body(
        {
            "id": "ev-1",
            "type": "agent_message",
            "interactionId": "int-1",
            "message": {
                "id": "m1",
                "contentType": "TEXT",
                "content": {"text": "Hello"},
                "agent": {"id": "7"},
            },
        }
    )
    for _ in range(2):
        assert post_json(client, "/webhooks/ccaas/acme/", body, **signed_headers(body)).status_code == 200
    message = Message.objects.get()
    assert (message.link_id, message.direction, message.source) == (link.pk, "OUTBOUND", "ccaas")
    assert Delivery.objects.get().lane == "TO_INFOBIP"


def test_malformed_ccaas_body_is_400(client, endpoint):
    body = b'{"events": "nope"}'
    response = post_json(client, "/webhooks/ccaas/acme/", body, **signed_headers(body))
    assert response.status_code == 400
    assert nothing_stored()


def test_three_megabytes_to_the_ccaas_webhook_are_refused(client, endpoint, no_parsing):
    body = events_body({"id": "e", "type": "x" * THREE_MB})
    response = post_json(client, "/webhooks/ccaas/acme/", body, **signed_headers(body))
    assert response.status_code == 413
