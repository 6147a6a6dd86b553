"""An endpoint whose contact center cannot be reached past the retry schedule fails the handover and,
when its config says so, routes the conversation back to Infobip's own agents with a tag."""

from __future__ import annotations

import pytest

from bridge import delivery
from bridge.models import ConversationLink, Delivery, HandoverEvent, State
from tests.openapi import validate_request

pytestmark = pytest.mark.django_db

SPEC = "infobip-conversations-openapi.json"


@pytest.fixture
def route_back(generic_endpoint, fast_retries):
    fast_retries.BRIDGE_RETRY_MAX_ATTEMPTS = 3
    generic_endpoint.config = {**generic_endpoint.config, "on_open_failure": "route_to_infobip"}
    generic_endpoint.save()
    return generic_endpoint


def escalate(api, fake_infobip, **kwargs):
    conv = fake_infobip.add_conversation(**kwargs)
    fake_infobip.message(conv, "I need a human", created_at="2026-01-01T10:00:00.000+00:00")
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    assert response.status_code == 202
    return conv, ConversationLink.objects.get(pk=response.json()["id"])


def drain_until_idle(rounds=40):
    import time

    for _ in range(rounds):
        delivery.drain()
        if not Delivery.objects.exclude(state__in=Delivery.TERMINAL_STATES).exists():
            return
        time.sleep(0.05)


def events(link):
    return list(HandoverEvent.objects.filter(link=link).values_list("kind", flat=True))


def test_unreachable_contact_center_fails_and_routes_back_with_a_tag(
    api, fake_infobip, fake_ccaas, route_back
):
    fake_ccaas.fail("POST", r"/bridge/interactions", count=100, status=503)
    conv, link = escalate(api, fake_infobip)
    drain_until_idle()
    link.refresh_from_db()
    assert link.state == State.FAILED and "HTTP 503" in link.last_error
    failed = HandoverEvent.objects.get(link=link, kind="failed")
    assert "gave up after 3 attempts" in failed.text
    assert not fake_ccaas.interactions
    assert fake_infobip.conversations[conv]["routed"] is True
    assert "bridge_fallback" in fake_infobip.conversations[conv]["tags"]
    tag = fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/tags")
    route = fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/route")
    assert len(tag) == 1 and len(route) == 1 and tag[0].at <= route[0].at
    for call in [*fake_infobip.calls("POST", r"/ccaas/1/tags"), *tag, *route]:
        validate_request(SPEC, "POST", call.path, body=call.json)
    assert {"failed", "route_back", "routed_back"} <= set(events(link))
    assert fake_infobip.sent_to_customer(conv) == []


def test_a_permanent_refusal_routes_back_too_with_the_configured_tag(
    api, fake_infobip, fake_ccaas, route_back
):
    route_back.config = {**route_back.config, "route_back_tag": "ccaas_down"}
    route_back.save()
    fake_ccaas.fail("POST", r"/bridge/interactions", count=1, status=422)
    conv, link = escalate(api, fake_infobip)
    drain_until_idle()
    link.refresh_from_db()
    assert link.state == State.FAILED
    assert fake_infobip.conversations[conv]["routed"] is True
    assert fake_infobip.conversations[conv]["tags"] == ["ccaas_down"]


def test_without_the_setting_a_failed_handover_is_not_routed(
    api, fake_infobip, fake_ccaas, generic_endpoint, fast_retries
):
    fake_ccaas.fail("POST", r"/bridge/interactions", count=1, status=422)
    _conv, link = escalate(api, fake_infobip)
    drain_until_idle()
    link.refresh_from_db()
    assert link.state == State.FAILED
    assert not fake_infobip.calls("POST", r".*/route")
    assert not fake_infobip.calls("POST", r".*/tags")


def test_route_back_retries_when_infobip_fails_and_tags_only_once(api, fake_infobip, fake_ccaas, route_back):
    fake_ccaas.fail("POST", r"/bridge/interactions", count=1, status=422)
    fake_infobip.fail("POST", r".*/route", count=2, status=503)
    conv, link = escalate(api, fake_infobip)
    drain_until_idle()
    assert fake_infobip.conversations[conv]["routed"] is True
    assert len(fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/tags")) == 1
    assert len(fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/route")) == 3
    row = Delivery.objects.get(link=link, payload__action="route_back")
    assert row.state == Delivery.Status.DONE and row.attempts == 3
    link.refresh_from_db()
    assert link.state == State.FAILED and "retry" in events(link)


@pytest.mark.parametrize("status", ["CLOSED", None])
def test_a_closed_or_missing_conversation_fails_with_nothing_sent_and_is_not_routed(
    api, fake_infobip, fake_ccaas, route_back, status
):
    conv = fake_infobip.add_conversation(status="CLOSED") if status else "does-not-exist"
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    drain_until_idle()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.FAILED
    assert ("already closed" if status else "does not exist") in link.last_error
    assert not fake_ccaas.interactions
    assert not fake_infobip.calls("POST", r".*/route")
    assert not fake_infobip.calls("POST", r".*/messages")
    row = Delivery.objects.get(link=link, payload__action="route_back")
    assert row.state == Delivery.Status.SKIPPED


def test_a_handover_retried_by_an_operator_is_not_routed_away(
    api, fake_infobip, fake_ccaas, route_back, settings
):
    from bridge import services

    # the route-back waits for its retry (the fast_retries cap would otherwise make it 0.05 s)
    settings.BRIDGE_RETRY_BASE_SECONDS = 60
    settings.BRIDGE_RETRY_MAX_SECONDS = 3600
    fake_ccaas.fail("POST", r"/bridge/interactions", count=1, status=422)
    fake_infobip.fail("POST", r".*/route", count=1, status=503)
    conv, link = escalate(api, fake_infobip)
    delivery.drain()
    assert Delivery.objects.get(link=link, payload__action="route_back").state == Delivery.Status.PENDING
    link.refresh_from_db()
    assert link.state == State.FAILED
    services.retry_failed(link, actor="operator")
    drain_until_idle()
    link.refresh_from_db()
    assert link.state == State.ACTIVE and fake_ccaas.interactions
    assert fake_infobip.conversations[conv]["routed"] is False
    assert Delivery.objects.get(link=link, payload__action="route_back").state == Delivery.Status.SKIPPED
