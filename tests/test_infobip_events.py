"""The Infobip webhook's Subscriptions events: parsed from spec-shaped payloads, verified, deduplicated
and acted on; the legacy body keeps working; reconciliation heals a dropped webhook."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json

import pytest

from bridge import delivery, reconcile
from bridge.infobip.events import EVENT_TYPES, parse_event
from bridge.models import ConversationLink, InboundEvent, InfobipSubscription, Message, State
from tests.openapi import schema_at, validate_schema
from tests.payloads import load_fixture

pytestmark = pytest.mark.django_db

COMMON = "infobip-common-assets-openapi.json"
MESSAGE_EVENTS = (
    "INBOUND_MESSAGE",
    "OUTBOUND_MESSAGE",
    "INBOUND_MESSAGE_UPDATED",
    "INBOUND_MESSAGE_DELETED",
    "CONVERSATION_MESSAGE_UPDATED",
)


def envelope(kind: str, conv: str, **extra) -> dict:
    """An event built from the spec's own field examples (fixture), for conversation `conv`."""
    body = load_fixture("infobip", "webhook_inbound_message_event")
    body["type"] = kind
    payload = body["payload"]
    payload["id"] = conv
    if kind not in MESSAGE_EVENTS:
        payload.pop("message")
    if "message" in payload:
        payload["message"]["conversationId"] = conv
    if kind == "CONVERSATION_TAG_ADDED":
        payload["addedTag"] = {"id": "t1", "name": "vip"}
    if kind == "CONVERSATION_TAG_REMOVED":
        payload["removedTag"] = {"id": "t2", "name": "escalated"}
    if kind.startswith("CONVERSATION_NOTE"):
        payload["note"] = {"id": "n1", "type": "INTERNAL", "content": {"text": "a note"}}
    if kind == "CONVERSATION_FORM_FIELD_UPDATED":
        payload["field"] = {"id": "f1", "name": "Reason", "value": "billing"}
    if kind == "CONVERSATION_SLA_POLICY_UPDATED":
        payload["policy"] = {
            "policyId": "p1",
            "policyName": "Gold",
            "severityId": "s1",
            "severityName": "High",
        }
    if kind == "CONVERSATION_DELETED":
        payload["formFields"] = []
    if kind == "CONVERSATION_AGENT_STATUS_CHANGED":
        body["payload"] = {
            "id": "a1",
            "userId": "u1",
            "email": "a@example.com",
            "role": "AGENT",
            "status": {"id": "st1", "name": "Available", "group": "ACTIVE"},
            "invoker": {"type": "AGENT", "id": "a1", "name": "Agent"},
        }
    for key, value in extra.items():
        payload[key] = value
    return body


def post(client, url, body, **headers):
    raw = json.dumps(body).encode()
    return client.post(url, data=raw, content_type="application/json", **headers)


@pytest.fixture
def active(api, fake_infobip, fake_ccaas, generic_endpoint):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "I need a human", created_at="2026-01-01T10:00:00.000+00:00")
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    assert response.status_code == 202
    delivery.drain()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.ACTIVE
    return link


def ccaas_texts(fake_ccaas, link):
    return [m["content"].get("text") for m in fake_ccaas.interactions[link.interaction_id]["messages"]]


# --- parsing, from the spec ----------------------------------------------------------------------
def test_discriminator_lists_exactly_the_types_the_parser_knows():
    report = schema_at(
        COMMON, "#/webhooks/conversation-event-webhook/post/requestBody/content/application~1json/schema"
    )
    assert set(report["discriminator"]["mapping"]) == set(EVENT_TYPES)


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_event_type_parses_from_a_spec_valid_payload(kind):
    body = envelope(kind, "b9263ee4-93b9-4352-912a-3b558f751276")
    mapping = schema_at(
        COMMON, "#/webhooks/conversation-event-webhook/post/requestBody/content/application~1json/schema"
    )["discriminator"]["mapping"]
    validate_schema(COMMON, mapping[kind], body)
    event = parse_event(body)
    assert event.type == kind and event.known
    if kind in ("INBOUND_MESSAGE", "OUTBOUND_MESSAGE"):
        assert event.message.content_type == "TEXT"


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_event_type_is_stored_and_answered_200(kind, client, inbound_url, active):
    response = post(client, inbound_url, envelope(kind, active.conversation_id))
    assert response.status_code == 200, response.content
    assert InboundEvent.objects.filter(source="infobip", type=kind).count() == 1


def test_unknown_event_type_is_stored_and_answered_200(client, inbound_url):
    response = post(client, inbound_url, {"type": "SOMETHING_NEW", "timestamp": "x", "payload": {}})
    assert response.status_code == 200
    assert InboundEvent.objects.get(source="infobip").type == "SOMETHING_NEW"


def test_envelope_without_payload_object_is_400(client, inbound_url):
    assert post(client, inbound_url, {"type": "INBOUND_MESSAGE", "payload": "x"}).status_code == 400


# --- acting --------------------------------------------------------------------------------------
def test_inbound_message_event_is_forwarded_once(client, inbound_url, active, fake_ccaas):
    body = envelope("INBOUND_MESSAGE", active.conversation_id)
    body["payload"]["message"]["content"] = {"text": "still there?"}
    assert post(client, inbound_url, body).status_code == 200
    assert post(client, inbound_url, body).json()["status"] == "duplicate"
    delivery.drain()
    assert ccaas_texts(fake_ccaas, active).count("still there?") == 1


def test_inbound_event_whose_content_cannot_tell_its_type_is_fetched(
    client, inbound_url, active, fake_infobip, fake_ccaas, monkeypatch
):
    stored = fake_infobip.message(
        active.conversation_id, "from the API", created_at="2026-01-01T10:05:00.000+00:00"
    )
    queued = []
    monkeypatch.setattr(reconcile, "fetch_later", lambda link_id, ids: queued.append((link_id, ids)))
    body = envelope("INBOUND_MESSAGE", active.conversation_id)
    body["payload"]["message"].update(id=stored["id"], content={"url": "https://cdn.example.com/x"})
    assert post(client, inbound_url, body).status_code == 200
    assert queued == [(active.pk, [stored["id"]])]
    assert reconcile.fetch_messages(active.pk, [stored["id"]]) == 1
    delivery.drain()
    assert "from the API" in ccaas_texts(fake_ccaas, active)


def test_bridge_own_outbound_message_is_not_echoed(client, inbound_url, active, fake_ccaas):
    from bridge import services
    from bridge.connectors import get_connector

    event = fake_ccaas.agent_says(active.interaction_id, "Hello, I am Alice")
    raw = json.dumps({"events": [event]}).encode()
    services.ingest_events(active.endpoint, get_connector(active.endpoint).parse_webhook(raw, {}))
    delivery.drain()
    sent = Message.objects.get(link=active, source=Message.Source.CCAAS)
    assert sent.infobip_message_id
    body = envelope("OUTBOUND_MESSAGE", active.conversation_id)
    body["payload"]["message"].update(id=sent.infobip_message_id, content={"text": "Hello, I am Alice"})
    assert post(client, inbound_url, body).status_code == 200
    delivery.drain()
    assert "Hello, I am Alice" not in ccaas_texts(fake_ccaas, active)


def test_outbound_message_from_an_infobip_agent_reaches_the_transcript(
    client, inbound_url, active, fake_ccaas
):
    body = envelope(
        "OUTBOUND_MESSAGE", active.conversation_id, invoker={"type": "AGENT", "id": "sup", "name": "Sup"}
    )
    body["payload"]["message"]["content"] = {"text": "A supervisor here"}
    assert post(client, inbound_url, body).status_code == 200
    delivery.drain()
    forwarded = [
        m
        for m in fake_ccaas.interactions[active.interaction_id]["messages"]
        if m["content"].get("text") == "A supervisor here"
    ]
    assert forwarded and forwarded[0]["authorType"] == "AGENT" and forwarded[0]["direction"] == "OUTBOUND"


def test_conversation_closed_on_infobip_closes_the_interaction(client, inbound_url, active, fake_ccaas):
    assert (
        post(
            client,
            inbound_url,
            envelope("CONVERSATION_STATUS_UPDATED", active.conversation_id, status="CLOSED"),
        ).status_code
        == 200
    )
    delivery.drain()
    active.refresh_from_db()
    assert active.state == State.CLOSED and active.close_reason == "CONVERSATION_CLOSED"
    assert fake_ccaas.interactions[active.interaction_id]["closed"] == "CONVERSATION_CLOSED"


def test_takeover_by_an_infobip_agent_releases_the_handover_with_a_note(
    client, inbound_url, active, fake_ccaas, settings
):
    settings.INFOBIP_AGENT_ID = "bridge-agent"
    body = envelope(
        "CONVERSATION_ASSIGNMENT_UPDATED",
        active.conversation_id,
        assignee={"id": "someone-else", "name": "Bob", "role": "AGENT"},
    )
    assert post(client, inbound_url, body).status_code == 200
    delivery.drain()
    active.refresh_from_db()
    assert active.state == State.CLOSED
    assert any("Bob took this conversation over" in (t or "") for t in ccaas_texts(fake_ccaas, active))


def test_takeover_with_keep_policy_keeps_the_handover(client, inbound_url, active, settings):
    settings.INFOBIP_AGENT_ID = "bridge-agent"
    active.endpoint.config = {**active.endpoint.config, "infobip_takeover": "keep"}
    active.endpoint.save()
    body = envelope(
        "CONVERSATION_ASSIGNMENT_UPDATED", active.conversation_id, assignee={"id": "x", "name": "Bob"}
    )
    post(client, inbound_url, body)
    active.refresh_from_db()
    assert active.state == State.ACTIVE and "Bob" in active.last_error


def test_tags_follow_the_conversation(client, inbound_url, active):
    post(client, inbound_url, envelope("CONVERSATION_TAG_ADDED", active.conversation_id))
    assert active.tags.filter(name="vip").exists()
    post(client, inbound_url, envelope("CONVERSATION_TAG_REMOVED", active.conversation_id))
    assert not active.tags.filter(name="escalated").exists()


# --- security ------------------------------------------------------------------------------------
@pytest.fixture
def hmac_subscription(db):
    return InfobipSubscription.objects.create(
        subscription_id="s", profile_id="p", security="HMAC", credentials={"secret": "k" * 40}, notify_url="u"
    )


def test_hmac_signed_event_is_accepted_and_bad_or_missing_signature_refused(
    client, inbound_url, hmac_subscription
):
    raw = json.dumps(envelope("CONVERSATION_CREATED", "c1")).encode()
    digest = hmac.new(b"k" * 40, raw, hashlib.sha256).digest()
    ok = client.post(
        inbound_url, raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256="sha256=" + digest.hex()
    )
    assert ok.status_code == 200
    b64 = client.post(
        inbound_url,
        raw.replace(b'"c1"', b'"c2"'),
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=base64.b64encode(
            hmac.new(b"k" * 40, raw.replace(b'"c1"', b'"c2"'), hashlib.sha256).digest()
        ).decode(),
    )
    assert b64.status_code == 200
    bad = client.post(
        inbound_url, raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256="sha256=" + "0" * 64
    )
    assert bad.status_code == 403
    assert client.post(inbound_url, raw, content_type="application/json").status_code == 401


def test_hmac_header_name_is_configurable(client, inbound_url, hmac_subscription, settings):
    settings.BRIDGE_INFOBIP_HMAC_HEADERS = ["X-Custom-Sig"]
    raw = json.dumps(envelope("CONVERSATION_CREATED", "c1")).encode()
    sig = hmac.new(b"k" * 40, raw, hashlib.sha256).hexdigest()
    assert (
        client.post(inbound_url, raw, content_type="application/json", HTTP_X_CUSTOM_SIG=sig).status_code
        == 200
    )


def test_basic_auth_is_checked(client, inbound_url, db):
    InfobipSubscription.objects.create(
        subscription_id="s",
        profile_id="p",
        security="BASIC",
        credentials={"username": "ib", "password": "pw"},
        notify_url="u",
    )
    raw = json.dumps(envelope("CONVERSATION_CREATED", "c1")).encode()
    good = "Basic " + base64.b64encode(b"ib:pw").decode()
    assert (
        client.post(inbound_url, raw, content_type="application/json", HTTP_AUTHORIZATION=good).status_code
        == 200
    )
    wrong = "Basic " + base64.b64encode(b"ib:nope").decode()
    assert (
        client.post(inbound_url, raw, content_type="application/json", HTTP_AUTHORIZATION=wrong).status_code
        == 403
    )


def test_legacy_body_still_works_without_a_subscription(
    client, inbound_url, active, fake_infobip, fake_ccaas
):
    body = fake_infobip.message(active.conversation_id, "legacy path", store=False)
    assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drain()
    assert "legacy path" in ccaas_texts(fake_ccaas, active)


def test_unsigned_legacy_body_refused_once_hmac_is_configured_unless_allowed(
    client, inbound_url, active, fake_infobip, hmac_subscription, settings
):
    body = fake_infobip.message(active.conversation_id, "legacy", store=False)
    assert client.post(inbound_url, body, content_type="application/json").status_code == 401
    settings.BRIDGE_INFOBIP_ACCEPT_UNSIGNED_LEGACY = True
    assert client.post(inbound_url, body, content_type="application/json").status_code == 200


# --- reconciliation ------------------------------------------------------------------------------
def test_dropped_webhook_is_healed_by_reconciliation_in_order(active, fake_infobip, fake_ccaas):
    fake_infobip.message(active.conversation_id, "lost one", created_at="2026-01-01T10:01:00.000+00:00")
    fake_infobip.message(active.conversation_id, "lost two", created_at="2026-01-01T10:02:00.000+00:00")
    result = reconcile.reconcile_all()
    assert result.recovered == 2
    assert reconcile.reconcile_all().recovered == 0  # nothing twice
    delivery.drain()
    texts = ccaas_texts(fake_ccaas, active)
    assert texts.index("lost one") < texts.index("lost two")
    calls = fake_infobip.calls("GET", r".*/messages")
    assert calls[-1].query.get("orderBy") in ("createdAt:asc", ["createdAt:asc"])
    assert calls[-1].query.get("createdAfter")


def test_tick_runs_reconciliation_once_per_interval(active, fake_infobip, fake_ccaas, settings):
    from bridge import periodic

    settings.BRIDGE_RECONCILE_INTERVAL_SECONDS = 60
    fake_infobip.message(active.conversation_id, "missed", created_at="2026-01-01T10:03:00.000+00:00")
    periodic.tick(inline=True)
    delivery.drain()
    assert "missed" in ccaas_texts(fake_ccaas, active)
    before = len(fake_infobip.calls("GET", r".*/messages"))
    periodic.tick(inline=True)
    assert len(fake_infobip.calls("GET", r".*/messages")) == before


# --- escalation edge cases -----------------------------------------------------------------------
@pytest.mark.parametrize("status", ["CLOSED", None])
def test_escalating_a_closed_or_missing_conversation_fails_with_nothing_sent(
    api, fake_infobip, fake_ccaas, generic_endpoint, status
):
    conv = fake_infobip.add_conversation(status="CLOSED") if status else "does-not-exist"
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.FAILED
    assert ("already closed" if status else "does not exist") in link.last_error
    assert not fake_ccaas.interactions


def test_envelope_copy_is_not_mutated():
    body = envelope("INBOUND_MESSAGE", "c")
    snapshot = copy.deepcopy(body)
    parse_event(body)
    assert body == snapshot
