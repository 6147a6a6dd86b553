"""Media and rich content both ways: customer media reaches the contact center in the connector's own
form or as a readable text; agent attachments reach the customer as Infobip's content types, each
Create Message validated against Infobip's spec; long texts are split in order, never repeated."""

from __future__ import annotations

import copy
import json

import pytest

from bridge import delivery, media
from bridge.connectors.base import Capabilities
from bridge.connectors.generic import GenericConnector
from bridge.exceptions import TransientError
from bridge.infobip.client import InfobipClient
from bridge.models import ConversationLink, Delivery, State
from bridge.signing import sign
from tests.openapi import validate_request

pytestmark = pytest.mark.django_db

SPEC = "infobip-conversations-openapi.json"
URL = "https://media.example.com/files"

# Inbound content as Infobip's Create Message examples and Get Messages items show it; choices as the
# spec's inbound content types name them (INTERACTIVE_BUTTON_REPLY, INTERACTIVE_LIST_REPLY).
CUSTOMER_CONTENT = {
    "IMAGE": {"url": f"{URL}/photo.jpg", "caption": "my broken screen"},
    "DOCUMENT": {"url": f"{URL}/invoice.pdf", "caption": "invoice"},
    "VIDEO": {"url": f"{URL}/clip.mp4", "caption": None},
    "AUDIO": {"url": f"{URL}/voice.ogg"},
    "LOCATION": {"latitude": 51.178844, "longitude": -1.826323, "locationName": "Shop", "address": "High St"},
    "CONTACT": {
        "contacts": [
            {
                "name": {"first_name": "Ana", "last_name": "Li", "formatted_name": "Ana Li"},
                "phones": [{"phone": "+447700900123", "type": "CELL"}],
                "emails": [{"email": "ana@example.com", "type": "WORK"}],
            }
        ]
    },
    "INTERACTIVE_BUTTON_REPLY": {"id": "yes-1", "title": "Yes, please"},
    "INTERACTIVE_LIST_REPLY": {"id": "row-2", "title": "Billing", "description": "Invoices and payments"},
}
READABLE = {
    "IMAGE": f"[Image] {URL}/photo.jpg my broken screen",
    "DOCUMENT": f"[Document] {URL}/invoice.pdf invoice",
    "VIDEO": f"[Video] {URL}/clip.mp4",
    "AUDIO": f"[Audio] {URL}/voice.ogg",
    "LOCATION": "[Location] Shop, High St (51.178844, -1.826323) https://maps.google.com/?q=51.178844,-1.826323",
    "CONTACT": "[Contact] Ana Li, +447700900123, ana@example.com",
    "INTERACTIVE_BUTTON_REPLY": "[Button reply] Yes, please (yes-1)",
    "INTERACTIVE_LIST_REPLY": "[List reply] Billing — Invoices and payments (row-2)",
}


def post_ccaas(client, events, slug="acme", secret="generic-shared-secret"):
    body = json.dumps({"events": events}).encode()
    return client.post(
        f"/webhooks/ccaas/{slug}/",
        data=body,
        content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(secret, body).items()},
    )


def customer_sends(fake_infobip, conv, content_type, content, *, store=True):
    item = fake_infobip.message(conv, "", store=False)
    item["contentType"], item["content"] = content_type, copy.deepcopy(content)
    item.pop("singleSendMessage", None)
    if store:
        with fake_infobip.lock:
            fake_infobip.conversations[conv]["messages"].append(item)
    return item


def agent_event(interaction_id, n, content_type, content):
    return {
        "id": f"evt-media-{n}",
        "type": "agent_message",
        "interactionId": interaction_id,
        "message": {
            "id": f"msg-media-{n}",
            "contentType": content_type,
            "content": content,
            "agent": {"id": "a1", "name": "Alice"},
        },
    }


@pytest.fixture
def active(api, fake_infobip, fake_ccaas, generic_endpoint):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "I need a human", created_at="2026-01-01T10:00:00.000+00:00")
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.ACTIVE
    return link


@pytest.fixture
def text_only(monkeypatch):
    """The generic connector declaring it cannot carry media (as Zendesk and Chatwoot do)."""
    monkeypatch.setattr(
        GenericConnector, "capabilities", Capabilities(webhook=True, poll=True, attachments=False)
    )


def assert_spec_valid(fake_infobip, conv):
    creates = fake_infobip.calls("POST", rf"/ccaas/1/conversations/{conv}/messages")
    assert creates
    for call in creates:
        validate_request(SPEC, "POST", call.path, body=call.json)
    return [c.json for c in creates]


# --- readable renderings -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CUSTOMER_CONTENT))
def test_every_customer_content_type_has_a_readable_rendering(kind):
    assert media.render_text(kind, CUSTOMER_CONTENT[kind]) == READABLE[kind]


def test_content_type_is_derived_with_the_names_the_spec_uses():
    assert media.derive_content_type({"id": "1", "title": "Yes"}) == "INTERACTIVE_BUTTON_REPLY"
    assert (
        media.derive_content_type({"id": "1", "title": "A", "description": "b"}) == "INTERACTIVE_LIST_REPLY"
    )
    assert media.derive_content_type({"latitude": 1, "longitude": 2}) == "LOCATION"
    assert media.derive_content_type({"url": f"{URL}/a.png?sig=1"}) == "IMAGE"
    assert media.derive_content_type({"url": f"{URL}/blob"}) is None


# --- customer -> contact center ------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CUSTOMER_CONTENT))
def test_customer_media_reaches_a_media_capable_contact_center_unchanged(
    client, inbound_url, fake_infobip, fake_ccaas, active, kind
):
    item = customer_sends(fake_infobip, active.conversation_id, kind, CUSTOMER_CONTENT[kind])
    assert client.post(inbound_url, item, content_type="application/json").status_code == 200
    delivery.drain()
    [sent] = fake_ccaas.interactions[active.interaction_id]["messages"]
    assert sent["contentType"] == kind and sent["content"] == CUSTOMER_CONTENT[kind]


@pytest.mark.parametrize("kind", list(CUSTOMER_CONTENT))
def test_customer_media_reaches_a_text_only_contact_center_as_readable_text(
    client, inbound_url, fake_infobip, fake_ccaas, active, text_only, kind
):
    item = customer_sends(fake_infobip, active.conversation_id, kind, CUSTOMER_CONTENT[kind])
    assert client.post(inbound_url, item, content_type="application/json").status_code == 200
    delivery.drain()
    [sent] = fake_ccaas.interactions[active.interaction_id]["messages"]
    assert sent["contentType"] == "TEXT" and sent["content"] == {"text": READABLE[kind]}


def test_history_media_is_rendered_for_a_text_only_contact_center(
    api, fake_infobip, fake_ccaas, generic_endpoint, text_only
):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "hello", created_at="2026-01-01T10:00:00.000+00:00")
    item = customer_sends(fake_infobip, conv, "LOCATION", CUSTOMER_CONTENT["LOCATION"])
    item["createdAt"] = "2026-01-01T10:00:01.000+00:00"
    api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    [interaction] = fake_ccaas.interactions.values()
    history = interaction["open"]["history"]
    assert [m["content"]["text"] for m in history] == ["hello", READABLE["LOCATION"]]
    assert {m["contentType"] for m in history} == {"TEXT"}


def test_connectors_that_render_media_use_the_shared_rendering():
    from bridge.connectors import chatwoot, rt, zendesk
    from bridge.types import Direction, InfobipMessage

    for kind, content in CUSTOMER_CONTENT.items():
        assert zendesk.message_text(kind, content) == READABLE[kind]
        assert chatwoot.message_text(kind, content) == READABLE[kind]
        message = InfobipMessage(
            id="m", conversation_id="c", channel="WHATSAPP", from_="a", to="b",
            direction=Direction.INBOUND, content_type=kind, content=content, created_at=None,
        )  # fmt: skip
        assert rt.message_text(message) == READABLE[kind]


# --- contact center -> customer ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "content"),
    [
        ("IMAGE", {"url": f"{URL}/reply.png", "caption": "here it is"}),
        ("DOCUMENT", {"url": f"{URL}/terms.pdf", "caption": "terms"}),
        ("VIDEO", {"url": f"{URL}/howto.mp4", "caption": "how to"}),
        ("AUDIO", {"url": f"{URL}/note.mp3"}),
        ("LOCATION", {"latitude": 45.8, "longitude": 15.9, "locationName": "Office", "address": "Main 1"}),
        ("CONTACT", CUSTOMER_CONTENT["CONTACT"]),
    ],
)
def test_agent_media_reaches_the_customer_as_the_same_infobip_type(
    client, fake_infobip, active, kind, content
):
    assert post_ccaas(client, [agent_event(active.interaction_id, 1, kind, content)]).status_code == 200
    delivery.drain()
    [body] = assert_spec_valid(fake_infobip, active.conversation_id)
    assert body["contentType"] == kind and body["content"] == content


def test_agent_attachments_follow_the_text_one_message_each(client, fake_infobip, active):
    content = {
        "text": "Please see the attached files",
        "attachments": [
            {"url": f"{URL}/scan", "mimeType": "image/jpeg"},
            {"url": f"{URL}/report", "mimeType": "application/pdf", "filename": "report.pdf"},
            {"url": f"{URL}/clip.mov"},
            {"url": f"{URL}/a", "mimeType": "audio/ogg; codecs=opus"},
        ],
    }
    assert post_ccaas(client, [agent_event(active.interaction_id, 1, "TEXT", content)]).status_code == 200
    delivery.drain()
    bodies = assert_spec_valid(fake_infobip, active.conversation_id)
    assert [(b["contentType"], b["content"]) for b in bodies] == [
        ("TEXT", {"text": "Please see the attached files"}),
        ("IMAGE", {"url": f"{URL}/scan"}),
        ("DOCUMENT", {"url": f"{URL}/report"}),
        ("VIDEO", {"url": f"{URL}/clip.mov"}),
        ("AUDIO", {"url": f"{URL}/a"}),
    ]


def test_long_agent_text_is_split_in_order_within_infobips_limit(client, fake_infobip, active):
    words = " ".join(f"w{i:05d}" for i in range(1500))  # 10,499 characters
    assert (
        post_ccaas(client, [agent_event(active.interaction_id, 1, "TEXT", {"text": words})]).status_code
        == 200
    )
    delivery.drain()
    bodies = assert_spec_valid(fake_infobip, active.conversation_id)
    texts = [b["content"]["text"] for b in bodies]
    assert len(texts) == 3 and all(len(t) <= 4096 for t in texts)
    assert " ".join(texts) == words


def test_a_retried_agent_message_never_repeats_a_part(
    client, fake_infobip, active, fast_retries, monkeypatch
):
    words = " ".join(f"w{i:05d}" for i in range(1000))  # two text parts
    content = {"text": words, "attachments": [{"url": f"{URL}/x.png"}, {"url": f"{URL}/y.pdf"}]}
    real = InfobipClient.create_message
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] in (2, 4):  # the second text part, then the first attachment, fail once each
            raise TransientError("Infobip answered 503", status=503, service="Infobip")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InfobipClient, "create_message", flaky)
    assert post_ccaas(client, [agent_event(active.interaction_id, 1, "TEXT", content)]).status_code == 200
    for _ in range(20):
        delivery.drain()
        row = Delivery.objects.get(link=active, lane=Delivery.Lane.TO_INFOBIP, kind=Delivery.Kind.MESSAGE)
        if row.state == Delivery.Status.DONE:
            break
    assert row.state == Delivery.Status.DONE and row.payload["parts_sent"] == 4
    bodies = assert_spec_valid(fake_infobip, active.conversation_id)
    assert [b["contentType"] for b in bodies] == ["TEXT", "TEXT", "IMAGE", "DOCUMENT"]
    assert " ".join(b["content"]["text"] for b in bodies[:2]) == words


def test_chatwoot_and_zendesk_agent_attachments_become_attachment_parts():
    from bridge.connectors.chatwoot import ChatwootConnector
    from bridge.connectors.zendesk import _comment_content

    event = ChatwootConnector._agent_event(
        "e1",
        "7",
        {
            "id": 55,
            "content": "photo",
            "attachments": [{"file_type": "image", "data_url": "https://cw.example.com/rails/x/pic.png"}],
            "sender": {"id": 1, "name": "Alice"},
        },
        "message_created",
    )
    assert media.outbound_parts(event.message.content_type, event.message.content) == [
        ("TEXT", {"text": "photo"}),
        ("IMAGE", {"url": "https://cw.example.com/rails/x/pic.png"}),
    ]
    content = _comment_content(
        {
            "body": "the form",
            "attachments": [
                {
                    "content_url": "https://acme.zendesk.com/attachments/token/abc/?name=form.pdf",
                    "content_type": "application/pdf",
                    "file_name": "form.pdf",
                }
            ],
        }
    )
    assert media.outbound_parts("TEXT", content)[1] == (
        "DOCUMENT",
        {"url": "https://acme.zendesk.com/attachments/token/abc/?name=form.pdf"},
    )
