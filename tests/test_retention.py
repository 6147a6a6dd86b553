"""Data retention and the right to erasure: content goes, ids, times, states and counts stay."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import serializers
from django.core.management import CommandError, call_command
from django.utils import timezone

from bridge import delivery, periodic, retention
from bridge.models import ConversationLink, Delivery, HandoverEvent, InboundEvent, Message, State
from tests.test_end_to_end import post_ccaas

pytestmark = pytest.mark.django_db

CUSTOMER = "447700900123"
WORDS = ("my card number is 4111", "Hello Ana, I can see your card", "Sure, connecting you")


def handover(api, client, fake_infobip, fake_ccaas, inbound_url, *, close=True):
    """A whole handover whose every message carries one of WORDS; closed unless told otherwise."""
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, WORDS[2], direction="OUTBOUND", author="BOT")
    response = api.post(
        "/api/escalations/", {"conversationId": conv, "context": {"displayName": "Ana"}}, format="json"
    )
    link = ConversationLink.objects.get(pk=response.json()["id"])
    delivery.drain()
    body = fake_infobip.message(conv, WORDS[0])
    assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    link.refresh_from_db()
    assert (
        post_ccaas(client, "acme", [fake_ccaas.agent_says(link.interaction_id, WORDS[1])]).status_code == 200
    )
    delivery.drain()
    if close:
        assert post_ccaas(client, "acme", [fake_ccaas.agent_closes(link.interaction_id)]).status_code == 200
        delivery.drain()
    link.refresh_from_db()
    return link


def stored_text(link) -> str:
    """Everything stored about a handover, as one string to search for the customer's words."""
    rows = [
        *ConversationLink.objects.filter(pk=link.pk),
        *Message.objects.filter(link=link),
        *Delivery.objects.filter(link=link),
        *InboundEvent.objects.filter(link=link),
    ]
    return serializers.serialize("json", rows)


def age(link, days):
    ConversationLink.objects.filter(pk=link.pk).update(closed_at=timezone.now() - timedelta(days=days))


def test_retention_removes_the_content_of_old_handovers_and_keeps_what_the_console_needs(
    settings, api, client, fake_infobip, fake_ccaas, generic_endpoint, inbound_url
):
    old = handover(api, client, fake_infobip, fake_ccaas, inbound_url)
    recent = handover(api, client, fake_infobip, fake_ccaas, inbound_url)
    active = handover(api, client, fake_infobip, fake_ccaas, inbound_url, close=False)
    assert old.state == State.CLOSED and active.state == State.ACTIVE
    assert all(word in stored_text(old) for word in WORDS)
    counts_before = {
        "messages": Message.objects.filter(link=old).count(),
        "deliveries": Delivery.objects.filter(link=old).count(),
        "events": InboundEvent.objects.filter(link=old).count(),
    }
    age(old, 31)
    age(recent, 29)
    detail_before = api.get(f"/api/handovers/{old.pk}/").json()
    settings.BRIDGE_RETENTION_DAYS = 30

    periodic.tick(inline=True)

    text = stored_text(old)
    assert not any(word in text for word in WORDS)
    assert "Ana" not in text
    assert all(
        m.content == retention.REMOVED_CONTENT and m.raw == {} for m in Message.objects.filter(link=old)
    )
    assert {
        "messages": Message.objects.filter(link=old).count(),
        "deliveries": Delivery.objects.filter(link=old).count(),
        "events": InboundEvent.objects.filter(link=old).count(),
    } == counts_before
    detail_after = api.get(f"/api/handovers/{old.pk}/").json()
    assert detail_after == detail_before  # ids, states, times and counts unchanged
    assert HandoverEvent.objects.filter(link=old, kind=retention.REMOVED_KIND).count() == 1
    # the handover closed 29 days ago and the active one keep everything
    assert all(word in stored_text(recent) for word in WORDS)
    assert all(word in stored_text(active) for word in WORDS[:2])

    # the console still shows the handover
    admin = User.objects.create_superuser("root", "root@example.test", "pw")
    client.force_login(admin)
    page = client.get(f"/admin/bridge/conversationlink/{old.pk}/change/")
    assert page.status_code == 200
    assert b"content removed" in page.content.lower()

    # a second pass has nothing left to do
    assert retention.apply().handovers == 0


def test_raw_payloads_go_after_their_own_shorter_period(
    settings, api, client, fake_infobip, fake_ccaas, generic_endpoint, inbound_url
):
    link = handover(api, client, fake_infobip, fake_ccaas, inbound_url, close=False)
    assert Message.objects.filter(link=link).exclude(raw={}).exists()
    assert InboundEvent.objects.filter(link=link).exclude(payload={}).exists()
    long_ago = timezone.now() - timedelta(days=8)
    Message.objects.filter(link=link).update(received_at=long_ago)
    InboundEvent.objects.filter(link=link).update(received_at=long_ago)
    settings.BRIDGE_RAW_RETENTION_DAYS = 7

    result = retention.apply()

    assert result.raw_payloads > 0
    assert not Message.objects.filter(link=link).exclude(raw={}).exists()
    assert not InboundEvent.objects.filter(link=link).exclude(payload={}).exists()
    # the parsed messages stay until the content period
    assert WORDS[0] in [m.content.get("text") for m in Message.objects.filter(link=link)]
    assert retention.apply().raw_payloads == 0


def test_forget_refuses_while_a_handover_is_in_progress_then_erases_the_customer(
    api, client, fake_infobip, fake_ccaas, generic_endpoint, inbound_url
):
    active = handover(api, client, fake_infobip, fake_ccaas, inbound_url, close=False)
    before = stored_text(active)
    with pytest.raises(CommandError, match="still in progress"):
        call_command("bridge_forget", "--customer", CUSTOMER)
    assert stored_text(active) == before  # nothing changed

    assert post_ccaas(client, "acme", [fake_ccaas.agent_closes(active.interaction_id)]).status_code == 200
    delivery.drain()
    closed = handover(api, client, fake_infobip, fake_ccaas, inbound_url)
    out = io.StringIO()
    call_command("bridge_forget", "--customer", CUSTOMER, stdout=out)
    assert out.getvalue().startswith("erased: content removed from 2 handover(s)")
    for link in (active, closed):
        text = stored_text(link)
        assert not any(word in text for word in WORDS) and CUSTOMER not in text
        link.refresh_from_db()
        assert link.customer_address == "" and link.state == State.CLOSED
        assert HandoverEvent.objects.filter(
            link=link, kind=retention.REMOVED_KIND, actor="bridge_forget"
        ).exists()

    out = io.StringIO()
    call_command("bridge_forget", "--customer", CUSTOMER, stdout=out)
    assert out.getvalue() == "nothing stored for that customer\n"


def test_forget_needs_an_address():
    with pytest.raises(CommandError, match="must not be empty"):
        call_command("bridge_forget", "--customer", "  ")


def test_retention_off_by_default_changes_nothing(
    api, client, fake_infobip, fake_ccaas, generic_endpoint, inbound_url
):
    link = handover(api, client, fake_infobip, fake_ccaas, inbound_url)
    age(link, 3650)
    before = json.loads(stored_text(link))
    assert retention.apply().handovers == 0
    assert json.loads(stored_text(link)) == before
