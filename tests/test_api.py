"""The escalation API, the handover API and healthz (docs/api.md)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from bridge import heartbeat
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message, State

pytestmark = pytest.mark.django_db

ESCALATIONS = "/api/escalations/"


def make_endpoint(slug, *, rules=(), order=100, default=False, enabled=True) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug=slug,
        kind="generic",
        config={"base_url": f"https://{slug}.example.test/bridge", "mode": "webhook"},
        credentials={"secret": f"{slug}-secret"},
        routing_rules=list(rules),
        routing_order=order,
        is_default=default,
        enabled=enabled,
    )


def escalate(api, **body):
    return api.post(ESCALATIONS, body, format="json")


# --- authentication --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-token",
        "Bearer ",
        "Token test-api-token",
        "test-api-token",
        "Bearer test-api-token-x",
    ],
)
def test_escalation_needs_the_bearer_token(header):
    make_endpoint("acme", default=True)
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(ESCALATIONS, {"conversationId": "c1"}, format="json")
    assert response.status_code == 401
    assert "error" in response.json()
    assert "Bearer" in response["WWW-Authenticate"]
    assert not ConversationLink.objects.exists()


@pytest.mark.parametrize("header", [None, "Bearer wrong-token"])
def test_handover_api_needs_the_bearer_token(header):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    link = ConversationLink.objects.create(conversation_id="c1")
    assert client.get(f"/api/handovers/{link.pk}/").status_code == 401


# --- escalation ------------------------------------------------------------------------------------
def test_escalation_is_accepted_once_per_open_conversation(api):
    make_endpoint("acme", default=True)
    first = escalate(api, conversationId="conv-1", queue="billing", priority="HIGH", context={"a": 1})
    assert first.status_code == 202
    assert set(first.json()) == {"id", "state"}
    assert first.json()["state"] == "REQUESTED"
    link = ConversationLink.objects.get(pk=first.json()["id"])
    assert (link.conversation_id, link.endpoint.slug, link.queue, link.priority, link.context) == (
        "conv-1",
        "acme",
        "billing",
        "HIGH",
        {"a": 1},
    )
    assert Delivery.objects.filter(link=link, kind=Delivery.Kind.OPEN).count() == 1

    again = escalate(api, conversationId="conv-1", priority="LOW")
    assert again.status_code == 200
    assert again.json() == {"id": str(link.pk), "state": "REQUESTED"}
    assert ConversationLink.objects.count() == 1


def test_escalation_after_the_previous_handover_closed_starts_a_new_one(api):
    make_endpoint("acme", default=True)
    first = escalate(api, conversationId="conv-1").json()["id"]
    ConversationLink.objects.filter(pk=first).update(state=State.CLOSED)
    second = escalate(api, conversationId="conv-1")
    assert second.status_code == 202 and second.json()["id"] != first


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "conversationId"),
        ({"conversationId": ""}, "conversationId"),
        ({"conversationId": "c1", "endpoint": "nope"}, "nope"),
        ({"conversationId": "c1", "endpoint": "off"}, "disabled"),
        ({"conversationId": "c1", "priority": "SOMEDAY"}, "priority"),
        ({"conversationId": "c1", "context": "not an object"}, "context"),
    ],
)
def test_bad_escalations_are_400_with_an_error(api, body, needle):
    make_endpoint("acme", default=True)
    make_endpoint("off", enabled=False)
    response = escalate(api, **body)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert not ConversationLink.objects.exists()


def test_malformed_json_is_400(api):
    make_endpoint("acme", default=True)
    response = api.post(ESCALATIONS, data=b"{nope", content_type="application/json")
    assert response.status_code == 400 and "error" in response.json()


def test_no_default_endpoint_is_400(api):
    make_endpoint("acme")
    response = escalate(api, conversationId="c1")
    assert response.status_code == 400 and "default" in response.json()["error"]


def test_explicit_endpoint_wins_over_the_default(api):
    make_endpoint("acme", default=True)
    make_endpoint("other")
    response = escalate(api, conversationId="c1", endpoint="other")
    assert response.status_code == 202
    assert ConversationLink.objects.get().endpoint.slug == "other"


# --- routing ---------------------------------------------------------------------------------------
@pytest.fixture
def routed(fake_infobip):
    """Endpoints with rules; conversations whose tags and metadata come from the Infobip fake."""
    make_endpoint("fallback", default=True)
    make_endpoint("german", rules=[{"metadata": {"language": ["de", "at"]}}], order=20)
    make_endpoint("vip-billing", rules=[{"tags_all": ["vip", "billing"]}], order=10)
    make_endpoint("billing", rules=[{"tags_any": ["billing", "invoice"]}], order=30)
    make_endpoint("aaa-late", rules=[{"tags_any": ["billing"]}], order=40)
    make_endpoint("disabled", rules=[{"tags_any": ["billing"]}], order=1, enabled=False)
    return fake_infobip


@pytest.mark.parametrize(
    ("tags", "metadata", "expected"),
    [
        (["VIP", "billing"], {}, "vip-billing"),  # tags_all, before the tags_any endpoints by order
        (["billing"], {"language": "de"}, "german"),  # order 20 beats order 30
        (["invoice"], {}, "billing"),  # tags_any; "aaa-late" sorts first by slug but comes later by order
        ([], {"language": "at"}, "german"),  # metadata, one of a list
        (["vip"], {"language": "fr"}, "fallback"),  # nothing matches: the default
        ([], {}, "fallback"),
    ],
)
def test_routing_rules_choose_the_endpoint(api, routed, tags, metadata, expected):
    conv = routed.add_conversation(tags=tags, metadata=metadata)
    response = escalate(api, conversationId=conv)
    assert response.status_code == 202, response.content
    assert ConversationLink.objects.get(pk=response.json()["id"]).endpoint.slug == expected
    assert routed.calls("GET", r"/ccaas/1/tags") and routed.calls("GET", r".*/metadata")


def test_no_rule_matches_and_no_default_is_400(api, fake_infobip):
    make_endpoint("german", rules=[{"metadata": {"language": "de"}}])
    conv = fake_infobip.add_conversation(tags=["billing"], metadata={"language": "en"})
    response = escalate(api, conversationId=conv)
    assert response.status_code == 400 and "error" in response.json()
    assert not ConversationLink.objects.exists()


def test_empty_and_unknown_rules_match_nothing(api, fake_infobip):
    make_endpoint("fallback", default=True)
    make_endpoint("broken", rules=[{}, {"channel": "SMS"}], order=1)
    conv = fake_infobip.add_conversation(tags=["billing"])
    response = escalate(api, conversationId=conv)
    assert ConversationLink.objects.get(pk=response.json()["id"]).endpoint.slug == "fallback"


# --- GET handover ----------------------------------------------------------------------------------
HANDOVER_FIELDS = {
    "id",
    "conversationId",
    "endpoint",
    "interactionId",
    "state",
    "stuck",
    "escalatedAt",
    "openedAt",
    "closedAt",
    "messagesFromCustomer",
    "messagesToCustomer",
    "lastError",
}


def test_get_handover_is_a_flat_object(api, settings):
    make_endpoint("acme", default=True)
    handover_id = escalate(api, conversationId="conv-9").json()["id"]
    link = ConversationLink.objects.get(pk=handover_id)
    now = timezone.now()
    Message.objects.create(link=link, direction="INBOUND", external_id="m1", created_at=now)
    Message.objects.create(link=link, direction="INBOUND", external_id="m2", created_at=now)
    Message.objects.create(link=link, source="ccaas", direction="OUTBOUND", external_id="a1", created_at=now)

    data = api.get(f"/api/handovers/{handover_id}/").json()
    assert set(data) >= HANDOVER_FIELDS
    assert not any(isinstance(v, dict | list) for v in data.values())
    assert data["id"] == handover_id and data["conversationId"] == "conv-9" and data["endpoint"] == "acme"
    assert data["state"] == "REQUESTED" and data["stuck"] is False and data["interactionId"] is None
    assert data["messagesFromCustomer"] == 2 and data["messagesToCustomer"] == 1
    assert data["lastError"] is None and data["escalatedAt"] and data["openedAt"] is None


def test_unknown_handover_is_404(api):
    assert api.get("/api/handovers/0b7f3f0e-4a57-4c0e-9a52-6c1bb8f1e7a1/").status_code == 404
    response = api.get("/api/handovers/not-a-uuid/")
    assert response.status_code == 404 and "error" in response.json()


def test_stuck_when_not_active_for_longer_than_the_threshold(api, settings):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 1
    make_endpoint("acme", default=True)
    handover_id = escalate(api, conversationId="conv-stuck").json()["id"]
    assert api.get(f"/api/handovers/{handover_id}/").json()["stuck"] is False
    time.sleep(1.2)
    assert api.get(f"/api/handovers/{handover_id}/").json()["stuck"] is True
    # once active (and nothing failing) it is not stuck
    ConversationLink.objects.filter(pk=handover_id).update(state=State.ACTIVE, interaction_id="i-1")
    data = api.get(f"/api/handovers/{handover_id}/").json()
    assert data["stuck"] is False and data["interactionId"] == "i-1"


def test_stuck_when_a_delivery_fails_for_longer_than_the_threshold(api, settings):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 1
    make_endpoint("acme", default=True)
    link = ConversationLink.objects.create(conversation_id="c-fail", state=State.ACTIVE, interaction_id="i")
    delivery = Delivery.objects.create(
        link=link, kind=Delivery.Kind.MESSAGE, lane=Delivery.Lane.TO_CCAAS, failing_since=timezone.now()
    )
    assert api.get(f"/api/handovers/{link.pk}/").json()["stuck"] is False
    Delivery.objects.filter(pk=delivery.pk).update(failing_since=timezone.now() - timedelta(seconds=2))
    assert api.get(f"/api/handovers/{link.pk}/").json()["stuck"] is True
    Delivery.objects.filter(pk=delivery.pk).update(state=Delivery.Status.DONE)
    assert api.get(f"/api/handovers/{link.pk}/").json()["stuck"] is False


def test_closed_handover_is_never_stuck(api, settings):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 1
    link = ConversationLink.objects.create(
        conversation_id="c-old", state=State.CLOSED, escalated_at=timezone.now() - timedelta(hours=1)
    )
    assert api.get(f"/api/handovers/{link.pk}/").json()["stuck"] is False


# --- healthz ---------------------------------------------------------------------------------------
def test_healthz(client):
    heartbeat.beat(force=True)  # a worker cluster is running
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "worker": "ok",
        "infobip": "configured",
    }
