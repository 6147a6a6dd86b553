"""Tags added to or removed from the Infobip conversation follow to the interaction, where the
connector can carry them (Zendesk ticket tags, Chatwoot labels); tags agents set stay."""

from __future__ import annotations

import json

import pytest

from bridge import delivery, reconcile
from bridge.connectors import connector_class
from bridge.models import ConversationLink, Tag
from tests.test_chatwoot import chatwoot  # noqa: F401  (fixture)
from tests.test_chatwoot import make_endpoint as make_chatwoot
from tests.test_infobip_events import envelope
from tests.test_zendesk import make_endpoint as make_zendesk
from tests.test_zendesk import zendesk  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def handover(api, fake_infobip, tags):
    conv = fake_infobip.add_conversation(tags=tags)
    fake_infobip.message(conv, "hello")
    assert api.post("/api/escalations/", {"conversationId": conv}, format="json").status_code == 202
    delivery.drain()
    return ConversationLink.objects.get(conversation_id=conv)


def test_tag_events_queue_exactly_what_changed(
    client, inbound_url, generic_endpoint, monkeypatch, django_capture_on_commit_callbacks
):
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: queued.append((func, *args)))
    link = ConversationLink.objects.create(
        conversation_id="conv-t", endpoint=generic_endpoint, interaction_id="INT-9", state="ACTIVE"
    )
    Tag.objects.create(link=link, name="escalated")
    for kind in ("CONVERSATION_TAG_ADDED", "CONVERSATION_TAG_REMOVED"):
        body = json.dumps(envelope(kind, "conv-t"))
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    assert ("bridge.reconcile.push_tags", str(link.pk), ["vip"], []) in queued
    assert ("bridge.reconcile.push_tags", str(link.pk), [], ["escalated"]) in queued
    assert sorted(link.tags.values_list("name", flat=True)) == ["vip"]


def test_zendesk_ticket_tags_follow_and_agent_tags_stay(zendesk, fake_infobip, api):  # noqa: F811
    assert connector_class("zendesk").capabilities.tags
    make_zendesk()
    link = handover(api, fake_infobip, ["escalated"])
    ticket = zendesk.tickets[int(link.interaction_id)]
    ticket["tags"] = [*ticket["tags"], "agent_set"]
    reconcile.push_tags(link.pk, ["VIP Customer"], ["escalated"])
    assert "vip_customer" in ticket["tags"] and "agent_set" in ticket["tags"]
    assert "escalated" not in ticket["tags"]
    methods = [(m, p) for m, p, _ in zendesk.requests if p.endswith("/tags")]
    assert methods == [
        ("PUT", f"/api/v2/tickets/{link.interaction_id}/tags"),
        ("DELETE", f"/api/v2/tickets/{link.interaction_id}/tags"),
    ]


def test_chatwoot_labels_follow_and_agent_labels_stay(chatwoot, fake_infobip, api):  # noqa: F811
    assert connector_class("chatwoot").capabilities.tags
    make_chatwoot()
    link = handover(api, fake_infobip, ["escalated"])
    conversation = chatwoot.conversations[int(link.interaction_id)]
    conversation["labels"] = [*conversation["labels"], "agent_label"]
    reconcile.push_tags(link.pk, ["VIP Customer"], ["escalated"])
    assert conversation["labels"] == ["agent_label", "vip_customer"]
    before = len(chatwoot.requests)
    reconcile.push_tags(link.pk, ["vip customer"], [])  # nothing new: read, no write
    assert [m for m, _, _ in chatwoot.requests[before:]] == ["GET"]


def test_a_connector_that_cannot_follow_tags_is_not_asked(fake_ccaas, generic_endpoint):
    assert not connector_class("generic").capabilities.tags
    link = ConversationLink.objects.create(
        conversation_id="c", endpoint=generic_endpoint, interaction_id="INT-1", state="ACTIVE"
    )
    reconcile.push_tags(link.pk, ["vip"], [])
    assert fake_ccaas.requests == []
