"""An agent event with nothing to show never becomes an empty message for the customer, on any
connector, whether it came by webhook or by polling: it is recorded, skipped visibly on the
handover's timeline, and the lane goes on with the next message."""

from __future__ import annotations

import pytest
from django.utils import timezone

from bridge import delivery, media, services
from bridge.connectors import get_connector
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, HandoverEvent, Message, State
from tests.chatwoot_fake import chatwoot_signature
from tests.connector_contract import json_bytes, post_webhook
from tests.payloads import load_fixture

pytestmark = pytest.mark.django_db

CHATWOOT_SECRET = "chatwoot-webhook-secret"


def fixture(source: str, name: str) -> dict:
    return load_fixture(source, name)


def active_link(fake_infobip, endpoint: CcaasEndpoint, interaction_id: str, data: dict | None = None):
    conv = fake_infobip.add_conversation()
    return ConversationLink.objects.create(
        conversation_id=conv,
        endpoint=endpoint,
        interaction_id=interaction_id,
        interaction_data=data or {},
        state=State.ACTIVE,
        channel="WHATSAPP",
        customer_address="447700900123",
        business_sender="447860099299",
        opened_at=timezone.now(),
    )


def assert_skipped_visibly(link, external_id: str) -> None:
    row = Message.objects.get(link=link, source=Message.Source.CCAAS, external_id=external_id)
    skipped = Delivery.objects.get(message=row)
    assert skipped.state == Delivery.Status.SKIPPED
    assert "nothing to show" in skipped.last_error
    assert HandoverEvent.objects.filter(link=link, kind="skipped", text__contains=external_id).exists()


# --- the input: Chatwoot message_created with content null --------------------------------
def test_chatwoot_reply_with_null_content_is_skipped_and_the_next_reply_still_arrives(client, fake_infobip):
    endpoint = CcaasEndpoint.objects.create(
        slug="cw",
        kind="chatwoot",
        config={"base_url": "https://chat.acme.test", "account_id": 1, "inbox_id": 5, "mode": "webhook"},
        credentials={"api_access_token": "cw-token", "webhook_secret": CHATWOOT_SECRET},
    )
    link = active_link(fake_infobip, endpoint, "123")
    blank = fixture("chatwoot", "webhook_message_created.json")
    blank.update(
        {"id": 4001, "content": None, "message_type": "outgoing", "private": False, "attachments": []}
    )
    reply = fixture("chatwoot", "webhook_message_created.json")
    reply.update({"id": 4002, "content": "Sorry, here is the answer"})
    for body in (json_bytes(blank), json_bytes(reply)):
        response = post_webhook(client, endpoint, body, chatwoot_signature(CHATWOOT_SECRET, body))
        assert response.status_code == 200, response.content
    delivery.drain()
    sent = fake_infobip.sent_to_customer(link.conversation_id)
    assert [(m["contentType"], m["content"]) for m in sent] == [
        ("TEXT", {"text": "Sorry, here is the answer"})
    ]
    assert_skipped_visibly(link, "4001")


# --- every connector, webhook and poll ------------------------------------------------------------
def _zendesk(fake_infobip):
    endpoint = CcaasEndpoint.objects.create(
        slug="zen",
        kind="zendesk",
        config={"subdomain": "acme", "mode": "webhook"},
        credentials={"email": "b@acme.test", "api_token": "t", "webhook_secret": "s"},
    )
    link = active_link(fake_infobip, endpoint, "5158", {"requester_id": 1})
    data = fixture("zendesk", "webhook_ticket_comment_added.json")
    data["detail"]["id"] = "5158"
    data["event"]["comment"]["body"] = ""
    events = get_connector(endpoint).parse_webhook(json_bytes(data), {})
    return link, events, str(data["event"]["comment"]["id"])


def _generic(fake_infobip, content):
    endpoint = CcaasEndpoint.objects.create(
        slug="gen", kind="generic", config={"base_url": "https://cc.example.com"}, credentials={"secret": "x"}
    )
    link = active_link(fake_infobip, endpoint, "i-1")
    body = {
        "events": [
            {
                "id": "e-1",
                "type": "agent_message",
                "interactionId": "i-1",
                "message": {"id": "m-1", "contentType": "TEXT", "content": content},
            }
        ]
    }
    return link, get_connector(endpoint).parse_webhook(json_bytes(body), {}), "m-1"


def _genesys(fake_infobip):
    endpoint = CcaasEndpoint.objects.create(
        slug="gc",
        kind="genesys",
        config={"region": "mypurecloud.com", "integration_id": "int-1"},
        credentials={"client_id": "c", "client_secret": "s", "webhook_secret": "w"},
    )
    data = fixture("genesys", "webhook_text.json")
    link = active_link(fake_infobip, endpoint, data["channel"]["to"]["id"])
    data["text"] = ""
    return link, get_connector(endpoint).parse_webhook(json_bytes(data), {}), str(data["id"])


def _rt(fake_infobip):
    endpoint = CcaasEndpoint.objects.create(
        slug="rt", kind="rt", config={"base_url": "https://rt.example.test", "queue": "Support"}
    )
    link = active_link(fake_infobip, endpoint, "1001")
    connector = get_connector(endpoint)
    item = {"id": 77, "Type": "Correspond", "ObjectId": "1001", "Creator": {"Name": "bo", "RealName": "Bo"}}
    event = connector._event(item, {"77": {"plain": ["   "], "html": [], "files": []}})
    return link, [event], "77"


@pytest.mark.parametrize(
    "build",
    [
        _zendesk,
        _genesys,
        _rt,
        lambda fi: _generic(fi, {}),
        lambda fi: _generic(fi, {"text": "  \n "}),
        lambda fi: _generic(fi, {"text": "", "attachments": [{"filename": "no-link.pdf"}]}),
    ],
    ids=[
        "zendesk-empty-body",
        "genesys-empty-text",
        "rt-blank-correspondence",
        "generic-empty",
        "generic-blank",
        "generic-attachment-without-url",
    ],
)
def test_blank_agent_event_is_recorded_and_skipped_never_sent(fake_infobip, build):
    link, events, external_id = build(fake_infobip)
    assert [e.type.value for e in events] == ["agent_message"], "recorded as an agent message"
    services.ingest_events(link.endpoint, events)
    delivery.drain()
    assert fake_infobip.sent_to_customer(link.conversation_id) == []
    assert_skipped_visibly(link, external_id)


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("TEXT", {"text": None}),
        ("TEXT", {}),
        ("IMAGE", {"url": "", "caption": ""}),
        ("LOCATION", {"latitude": None, "longitude": None}),
        ("CONTACT", {"contacts": []}),
    ],
)
def test_blank_content_has_no_parts(content_type, content):
    assert media.has_content(content_type, content) is False
    assert media.outbound_parts(content_type, content) == []


def test_a_blank_customer_message_is_not_sent_to_the_contact_center(
    fake_infobip, fake_ccaas, generic_endpoint
):
    link = active_link(fake_infobip, generic_endpoint, "i-9")
    row = Message.objects.create(
        link=link,
        direction=Message.Direction.INBOUND,
        external_id="ib-blank",
        content_type="TEXT",
        content={"text": "   "},
        created_at=timezone.now(),
    )
    Delivery.objects.create(link=link, message=row, kind=Delivery.Kind.MESSAGE, lane=Delivery.Lane.TO_CCAAS)
    delivery.drain()
    assert fake_ccaas.calls("POST", r"/interactions/i-9/messages") == []
    assert Delivery.objects.get(message=row).state == Delivery.Status.SKIPPED
    assert HandoverEvent.objects.filter(link=link, kind="skipped", text__contains="ib-blank").exists()
