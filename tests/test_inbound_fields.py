"""Every field of a customer's message that carries meaning reaches the agent, in the rendering each
connector can carry: a button's payload (legacy BUTTON body and the Subscriptions event alike), a
list row's id, a location's name and address, a contact card, a caption, and what the message
answers."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import responses
from django.utils import timezone

from bridge import delivery, media
from bridge.connectors import connector_class
from bridge.handlers import to_infobip_message
from bridge.infobip.events import parse_event, parse_message
from bridge.models import CcaasEndpoint, ConversationLink, Message, State
from bridge.types import Direction, InfobipMessage
from tests.zendesk_fake import FakeZendesk

pytestmark = pytest.mark.django_db

INFOBIP = Path(__file__).parent / "fixtures" / "infobip"
BUTTON = {"text": "Yes, book it", "payload": "BOOK_SLOT_0930"}
BUTTON_TEXT = "[Button reply] Yes, book it (BOOK_SLOT_0930)"


def legacy_body(conv: str, content_type: str | None, content: dict) -> dict:
    body = json.loads((INFOBIP / "webhook_account_configuration_message.json").read_text())
    body.update(conversationId=conv, content=copy.deepcopy(content), id=f"ib-{abs(hash(str(content)))}")
    if content_type is None:
        body.pop("contentType")
    else:
        body["contentType"] = content_type
    body.pop("singleSendMessage")
    return body


def subscriptions_event(conv: str, content: dict) -> dict:
    body = json.loads((INFOBIP / "webhook_inbound_message_event.json").read_text())
    body["payload"]["id"] = conv
    body["payload"]["message"].update(conversationId=conv, content=copy.deepcopy(content))
    return body


# --- the inputs ---------------------------------------------------------------------------
def test_legacy_button_tap_keeps_its_payload():
    message = parse_message(legacy_body("c1", "BUTTON", BUTTON))
    assert media.render_text(message.content_type, message.content) == BUTTON_TEXT


def test_subscriptions_button_tap_is_a_button_with_its_payload():
    event = parse_event(subscriptions_event("c1", BUTTON))
    assert event.message.content_type == "BUTTON"
    assert event.message.content == BUTTON
    assert media.render_text(event.message.content_type, event.message.content) == BUTTON_TEXT


@pytest.fixture
def zendesk():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield FakeZendesk(mock)


@pytest.mark.parametrize("shape", ["legacy", "subscriptions"])
def test_button_payload_reaches_a_zendesk_agent(zendesk, fake_infobip, api, client, inbound_url, shape):
    CcaasEndpoint.objects.create(
        slug="zen",
        kind="zendesk",
        config={"subdomain": "acme", "mode": "webhook"},
        credentials={"email": "b@acme.test", "api_token": "t", "webhook_secret": "s"},
        is_default=True,
    )
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "I want to book")
    api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    body = legacy_body(conv, "BUTTON", BUTTON) if shape == "legacy" else subscriptions_event(conv, BUTTON)
    response = client.post(inbound_url, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    delivery.drain()
    assert zendesk.comments[int(link.interaction_id)][-1]["body"] == BUTTON_TEXT


# --- every meaningful field, for every text-only rendering ----------------------------------------
FIELDS = [
    ("BUTTON", BUTTON, ["Yes, book it", "BOOK_SLOT_0930"]),
    (
        "INTERACTIVE_LIST_REPLY",
        {"id": "row-2", "title": "Billing", "description": "Invoices"},
        ["row-2", "Billing", "Invoices"],
    ),
    ("INTERACTIVE_BUTTON_REPLY", {"id": "yes-1", "title": "Yes"}, ["yes-1", "Yes"]),
    (
        "LOCATION",
        {"latitude": 51.1, "longitude": -1.8, "name": "Shop", "address": "1 High St"},
        ["Shop", "1 High St", "51.1", "-1.8"],
    ),
    (
        "CONTACT",
        {
            "contacts": [
                {
                    "name": {"formatted_name": "Ana Li"},
                    "org": {"company": "Acme Ltd"},
                    "phones": [{"phone": "+447700900123"}],
                    "emails": [{"email": "ana@example.com"}],
                    "urls": [{"url": "https://ana.example.com"}],
                    "addresses": [{"street": "1 High St", "city": "Leeds"}],
                }
            ]
        },
        [
            "Ana Li",
            "Acme Ltd",
            "+447700900123",
            "ana@example.com",
            "https://ana.example.com",
            "1 High St",
            "Leeds",
        ],
    ),
    (
        "IMAGE",
        {"url": "https://m.example.com/a.jpg", "caption": "the broken part"},
        ["a.jpg", "the broken part"],
    ),
    (
        "DOCUMENT",
        {"url": "https://m.example.com/inv", "caption": "invoice", "filename": "inv.pdf"},
        ["inv.pdf", "invoice"],
    ),
]


@pytest.mark.parametrize("kind", ["zendesk", "chatwoot", "rt", "genesys"])
@pytest.mark.parametrize(("content_type", "content", "expected"), FIELDS, ids=[f[0] for f in FIELDS])
def test_every_field_reaches_text_only_renderings(kind, content_type, content, expected):
    message = InfobipMessage(
        "ib-1",
        "c1",
        "WHATSAPP",
        "447700900123",
        "447860099299",
        Direction.INBOUND,
        content_type,
        content,
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    given = media.for_connector(message, attachments=connector_class(kind).capabilities.attachments)
    text = media.render_text(given.content_type, given.content)  # what each of these connectors writes
    for part in expected:
        assert part in text, (kind, text)


def test_a_reply_to_an_earlier_message_carries_the_quote(fake_infobip):
    link = ConversationLink.objects.create(
        conversation_id="c-reply",
        state=State.ACTIVE,
        channel="WHATSAPP",
        customer_address="4477",
        business_sender="4478",
    )
    now = timezone.now()
    Message.objects.create(
        link=link,
        direction="OUTBOUND",
        external_id="ib-bot-1",
        infobip_message_id="ib-bot-1",
        author_type="BOT",
        content={"text": "Which day suits you?"},
        created_at=now,
    )
    answer = Message.objects.create(
        link=link,
        direction="INBOUND",
        external_id="ib-2",
        infobip_message_id="ib-2",
        content={"text": "Tuesday", "context": {"from": "447860099299", "id": "ib-bot-1"}},
        created_at=now,
    )
    message = to_infobip_message(answer, link)
    assert message.content["replyTo"] == {"id": "ib-bot-1", "text": "Which day suits you?"}
    text_only = media.for_connector(message, attachments=False)
    assert text_only.content == {"text": 'Tuesday (in reply to: "Which day suits you?")'}
    # a media-capable contact center gets the content itself, with the quote beside it
    assert media.for_connector(message, attachments=True).content["replyTo"]["text"] == "Which day suits you?"
