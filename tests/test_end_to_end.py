"""A whole handover through the real views, the delivery engine and real local HTTP peers."""

from __future__ import annotations

import json

import pytest

from bridge import delivery
from bridge.models import ConversationLink, Delivery, Message, State
from bridge.signing import sign

pytestmark = pytest.mark.django_db


def post_ccaas(client, slug, events, secret="generic-shared-secret"):
    body = json.dumps({"events": events}).encode()
    return client.post(
        f"/webhooks/ccaas/{slug}/",
        data=body,
        content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(secret, body).items()},
    )


def test_five_steps_against_a_generic_contact_center(
    api, client, fake_infobip, fake_ccaas, generic_endpoint, inbound_url
):
    conv = fake_infobip.add_conversation(tags=["vip"], metadata={"language": "en"})
    fake_infobip.message(conv, "Hi, I need a human", created_at="2026-01-01T10:00:00.000+00:00")
    fake_infobip.message(
        conv,
        "Sure, connecting you",
        direction="OUTBOUND",
        author="BOT",
        created_at="2026-01-01T10:00:01.000+00:00",
    )

    # 1. escalation
    response = api.post(
        "/api/escalations/", {"conversationId": conv, "context": {"displayName": "Ana"}}, format="json"
    )
    assert response.status_code == 202, response.content
    handover_id = response.json()["id"]
    again = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    assert again.status_code == 200 and again.json()["id"] == handover_id

    # a customer message arriving while the interaction is being opened
    early = fake_infobip.message(conv, "Are you there?", created_at="2026-01-01T10:00:02.000+00:00")
    assert client.post(inbound_url, early, content_type="application/json").status_code == 200

    # 2. history, context, open, link
    delivery.drain()
    link = ConversationLink.objects.get(pk=handover_id)
    assert link.state == State.ACTIVE
    opened = fake_ccaas.interactions[link.interaction_id]["open"]
    assert [m["content"]["text"] for m in opened["history"]] == [
        "Hi, I need a human",
        "Sure, connecting you",
        "Are you there?",
    ]
    assert opened["tags"] == ["vip"] and opened["metadata"] == {"language": "en"}
    assert opened["customer"] == {"address": "447700900123", "displayName": "Ana"}
    # the early message went inside the history, so it is not sent again
    assert fake_ccaas.interactions[link.interaction_id]["messages"] == []

    # 3. customer messages reach the interaction once, in order
    for text in ("one", "two"):
        body = fake_infobip.message(conv, text)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200  # duplicate
    delivery.drain()
    assert [m["content"]["text"] for m in fake_ccaas.interactions[link.interaction_id]["messages"]] == [
        "one",
        "two",
    ]

    # 4. agent replies reach the customer once, in order
    events = [fake_ccaas.agent_says(link.interaction_id, t) for t in ("Hello Ana", "How can I help?")]
    assert post_ccaas(client, "acme", events).status_code == 200
    assert post_ccaas(client, "acme", events).status_code == 200  # redelivered webhook
    delivery.drain()
    sent = fake_infobip.sent_to_customer(conv)
    assert [m["content"]["text"] for m in sent] == ["Hello Ana", "How can I help?"]
    assert (
        sent[0]["from"] == fake_infobip.SENDER
        and sent[0]["to"] == "447700900123"
        and sent[0]["channel"] == "WHATSAPP"
    )

    # 5. the agent closes: the Infobip conversation closes
    assert post_ccaas(client, "acme", [fake_ccaas.agent_closes(link.interaction_id)]).status_code == 200
    delivery.drain()
    link.refresh_from_db()
    assert link.state == State.CLOSED
    assert fake_infobip.conversations[conv]["status"] == "CLOSED"
    assert not Delivery.objects.exclude(state__in=[Delivery.Status.DONE, Delivery.Status.SKIPPED]).exists()

    detail = api.get(f"/api/handovers/{handover_id}/").json()
    assert detail["state"] == "CLOSED" and detail["stuck"] is False and detail["endpoint"] == "acme"
    assert detail["messagesToCustomer"] == 3  # the bot turn of the history, and two agent replies
    assert Message.objects.filter(link=link).count() == 7
