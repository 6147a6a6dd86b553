"""Agent typing: shown to the customer on the channels Infobip supports, best effort, never a
delivery, never in the way of messages."""

from __future__ import annotations

import json

import pytest

from bridge import delivery, services
from bridge.connectors.generic import GenericConnector
from bridge.exceptions import WebhookError
from bridge.models import ConversationLink, Delivery, InboundEvent, State
from bridge.signing import sign
from tests.openapi import validate_request

pytestmark = pytest.mark.django_db

SPEC = "infobip-conversations-openapi.json"


def post_ccaas(client, events, slug="acme", secret="generic-shared-secret"):
    body = json.dumps({"events": events}).encode()
    return client.post(
        f"/webhooks/ccaas/{slug}/",
        data=body,
        content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(secret, body).items()},
    )


def typing(interaction_id, n, value=True):
    return {"id": f"typing-{n}", "type": "typing", "interactionId": interaction_id, "typing": value}


def open_handover(api, fake_infobip, channel):
    conv = fake_infobip.add_conversation(channel=channel)
    fake_infobip.message(conv, "I need a human", created_at="2026-01-01T10:00:00.000+00:00")
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.ACTIVE
    return link


@pytest.fixture
def queued(monkeypatch):
    """What was queued with django-q2, run here on demand."""
    tasks: list[tuple] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: tasks.append((func, *args)))
    return tasks


def test_generic_protocol_parses_the_typing_extension():
    events = GenericConnector._event(typing("I-1", 1, False)), GenericConnector._event(typing("I-1", 2))
    assert [e.type.value for e in events] == ["typing", "typing"]
    assert [e.typing for e in events] == [False, True]
    with pytest.raises(WebhookError):
        GenericConnector._event({"id": "t", "type": "typing"})  # no interactionId


@pytest.mark.parametrize("channel", ["WHATSAPP", "LIVE_CHAT", "APPLE_BUSINESS_CHAT"])
def test_agent_typing_is_sent_to_infobip_on_supported_channels(
    api,
    client,
    fake_infobip,
    fake_ccaas,
    generic_endpoint,
    queued,
    django_capture_on_commit_callbacks,
    channel,
):
    link = open_handover(api, fake_infobip, channel)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            post_ccaas(
                client, [typing(link.interaction_id, 1), typing(link.interaction_id, 2, False)]
            ).status_code
            == 200
        )
    assert [t[0] for t in queued] == ["bridge.tasks.send_typing"] * 2
    from bridge import tasks

    for _, link_id, started in queued:
        assert tasks.send_typing(link_id, started) == "sent"
    calls = fake_infobip.calls("POST", rf"/ccaas/1/conversations/{link.conversation_id}/events")
    assert [c.json["type"] for c in calls] == ["TYPING_STARTED", "TYPING_STOPPED"]
    for call in calls:
        validate_request(SPEC, "POST", call.path, body=call.json)
        assert call.json["channel"] == channel
        assert call.json["from"] == fake_infobip.SENDER and call.json["to"] == link.customer_address
    assert not Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_INFOBIP).exists()


def test_typing_on_other_channels_is_noted_and_not_sent(
    api, client, fake_infobip, fake_ccaas, generic_endpoint, queued, django_capture_on_commit_callbacks
):
    link = open_handover(api, fake_infobip, "SMS")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_ccaas(client, [typing(link.interaction_id, 1)]).status_code == 200
    assert queued == []
    assert InboundEvent.objects.get(event_id="typing-1").note == "typing not supported on SMS"


def test_a_failing_typing_call_is_only_logged_and_messages_still_flow(
    api, client, fake_infobip, fake_ccaas, generic_endpoint, queued, django_capture_on_commit_callbacks
):
    link = open_handover(api, fake_infobip, "WHATSAPP")
    fake_infobip.fail("POST", r".*/events", count=5, status=500)
    with django_capture_on_commit_callbacks(execute=True):
        events = [typing(link.interaction_id, 1), fake_ccaas.agent_says(link.interaction_id, "Hello")]
        assert post_ccaas(client, events).status_code == 200
    delivery.drain()
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)] == ["Hello"]
    [(_, link_id, started)] = [t for t in queued if t[0] == "bridge.tasks.send_typing"]
    assert services.send_typing(link_id, started).startswith("not sent")
    assert Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_INFOBIP).count() == 1


def test_chatwoot_typing_events_say_on_or_off():
    from bridge.connectors.chatwoot import ChatwootConnector
    from bridge.models import CcaasEndpoint

    endpoint = CcaasEndpoint(
        slug="cw",
        kind="chatwoot",
        config={
            "base_url": "https://cw.example.com",
            "account_id": 1,
            "inbox_id": 2,
            "require_signature": False,
        },
        credentials={"api_access_token": "x"},
    )
    connector = ChatwootConnector(endpoint)
    for kind, expected in (("conversation_typing_on", True), ("conversation_typing_off", False)):
        body = json.dumps(
            {"event": kind, "conversation": {"id": 7}, "user": {"id": 1, "type": "user"}, "is_private": False}
        ).encode()
        [event] = connector.parse_webhook(body, {})
        assert event.type.value == "typing" and event.typing is expected
