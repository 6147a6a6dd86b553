"""Every list the bridge reads follows the vendor's pagination to the end, or continues with a
cursor after what it has seen: no decision (which comments are new, where the cursor goes) is
taken from a partial window."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from bridge import delivery, periodic
from bridge.connectors import get_connector
from bridge.infobip.client import InfobipClient
from bridge.models import CcaasEndpoint, ConversationLink, State
from bridge.types import Customer, EventType, InteractionRef
from tests.chatwoot_fake import ACCOUNT, INBOX, FakeChatwoot
from tests.chatwoot_fake import BASE_URL as CHATWOOT_URL
from tests.conftest import GENERIC_SECRET
from tests.test_infobip_client import message_item
from tests.zendesk_fake import FakeZendesk

pytestmark = pytest.mark.django_db


@pytest.fixture
def vendors():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield mock


def escalate(api, fake_infobip) -> ConversationLink:
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "I need a human")
    assert api.post("/api/escalations/", {"conversationId": conv}, format="json").status_code == 202
    delivery.drain()
    link = ConversationLink.objects.get(conversation_id=conv)
    assert link.state == State.ACTIVE
    return link


# --- Zendesk List Comments: 100 a page with next_page ---------------------------------------------
def test_zendesk_poll_reads_every_page_of_comments(vendors, fake_infobip, api):
    zendesk = FakeZendesk(vendors)
    endpoint = CcaasEndpoint.objects.create(
        slug="zen",
        kind="zendesk",
        config={"subdomain": "acme", "mode": "poll"},
        credentials={"email": "b@acme.test", "api_token": "t"},
        is_default=True,
    )
    link = escalate(api, fake_infobip)
    ticket = int(link.interaction_id)
    zendesk.add_requester_comments(ticket, 120)  # with the transcript: 121 before the reply
    zendesk.agent_comments(ticket, "Your refund is on its way")
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)] == [
        "Your refund is on its way"
    ]
    pages = [parse_qs(urlsplit(path).query)["page"] for m, path, _ in zendesk.requests if "/comments" in path]
    assert pages == [["1"], ["2"]]

    # the next cycle starts at the page of the last comment seen, and forwards nothing twice
    zendesk.agent_comments(ticket, "Anything else?")
    before = len(zendesk.requests)
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    later = [parse_qs(urlsplit(p).query)["page"] for _, p, _ in zendesk.requests[before:] if "/comments" in p]
    assert later == [["2"]]
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)] == [
        "Your refund is on its way",
        "Anything else?",
    ]
    endpoint.refresh_from_db()
    assert json.loads(endpoint.poll_cursor)[str(ticket)]["page"] == 2


def test_zendesk_cursor_of_the_older_form_still_works(vendors):
    zendesk = FakeZendesk(vendors)
    endpoint = CcaasEndpoint.objects.create(
        slug="zen",
        kind="zendesk",
        config={"subdomain": "acme", "mode": "poll"},
        credentials={"oauth_token": "o"},
    )
    zendesk.tickets[7] = {"id": 7, "status": "open", "requester_id": 1}
    zendesk.comments[7] = []
    zendesk.add_requester_comments(7, 3)
    seen = zendesk.comments[7][-1]["id"]
    zendesk.agent_comments(7, "new")
    ref = InteractionRef("h", "c", "7", "WHATSAPP", Customer("1"), {"requester_id": 1})
    result = get_connector(endpoint).poll(json.dumps({"7": seen}), [ref])
    assert [e.message.content["text"] for e in result.events] == ["new"]


# --- Chatwoot Get Messages: the latest 20 without `after`, 100 after an id --------------------------
def test_chatwoot_poll_never_misses_a_reply_outside_the_latest_twenty(vendors, fake_infobip, api):
    chatwoot = FakeChatwoot(vendors)
    endpoint = CcaasEndpoint.objects.create(
        slug="cw",
        kind="chatwoot",
        config={"base_url": CHATWOOT_URL, "account_id": ACCOUNT, "inbox_id": INBOX, "mode": "poll"},
        credentials={"api_access_token": "cw-token"},
        is_default=True,
    )
    link = escalate(api, fake_infobip)
    cid = int(link.interaction_id)
    chatwoot.agent_replies(cid, "Hello, I am Bo")
    customer = {"id": 77, "type": "contact"}
    for n in range(130):  # the customer keeps writing before the first poll
        chatwoot._message(cid, f"customer {n}", message_type=0, private=False, sender=customer)
    chatwoot.agent_replies(cid, "Got all of it")
    periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    assert [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)] == [
        "Hello, I am Bo",
        "Got all of it",
    ]
    afters = [
        parse_qs(urlsplit(p).query).get("after")
        for m, p, _ in chatwoot.requests
        if p.split("?")[0].endswith("/messages") and m == "GET"
    ]
    assert afters[0] == ["0"] and len(afters) == 2


# --- RT transactions: page after page in one cycle ----------------------------------------------
RT = "https://rt.example.test/REST/2.0"


def test_rt_poll_reads_past_a_full_page_of_transactions():
    endpoint = CcaasEndpoint.objects.create(
        slug="rt",
        kind="rt",
        config={"base_url": "https://rt.example.test", "queue": "Support"},
        credentials={"token": "t"},
    )
    # 250 owner changes of ticket 1001 by an agent, after cursor 1000 (REST2 pages of 100)
    all_items = [
        {
            "id": 1000 + n,
            "Type": "Set",
            "Field": "Owner",
            "NewValue": "bo",
            "ObjectId": "1001",
            "Creator": {"Name": "bo"},
        }
        for n in range(1, 251)
    ]

    def transactions(request):
        after = int(re.search(r"id > (\d+)", parse_qs(request.body)["query"][0]).group(1))
        items = [i for i in all_items if i["id"] > after][:100]
        return (
            200,
            {},
            json.dumps({"items": items, "count": len(items), "page": 1, "per_page": 100, "total": None}),
        )

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, f"{RT}/transactions", callback=transactions)
        ref = InteractionRef("h", "c", "1001", "WHATSAPP", Customer("1"), {"bridge_user": "bridge"})
        result = get_connector(endpoint).poll("1000", [ref])
        assert len(mock.calls) == 3
    assert result.cursor == "1250"
    assert len(result.events) == 250 and {e.type for e in result.events} == {EventType.ACCEPTED}


# --- the generic protocol: "hasMore" ----------------------------------------------------------------
def test_generic_poll_follows_has_more(fake_ccaas):
    endpoint = CcaasEndpoint.objects.create(
        slug="gen",
        kind="generic",
        config={"base_url": fake_ccaas.base_url, "mode": "poll"},
        credentials={"secret": GENERIC_SECRET},
    )
    fake_ccaas.events = [
        {
            "id": f"e{n}",
            "type": "agent_message",
            "interactionId": "i-1",
            "message": {"id": f"m{n}", "contentType": "TEXT", "content": {"text": f"reply {n}"}},
        }
        for n in range(120)
    ]
    result = get_connector(endpoint).poll("", [])
    assert [e.message.id for e in result.events] == [f"m{n}" for n in range(120)]
    assert result.cursor == "120"
    assert len(fake_ccaas.calls("GET", r"/bridge/events")) == 3


# --- Infobip Get Messages: a server page smaller than the one asked for -----------------------------
def test_get_messages_reads_on_when_infobip_answers_smaller_pages_than_asked(settings):
    from datetime import UTC, datetime

    base = "https://xyz123.api.infobip.com"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = [message_item(n, start) for n in range(250)]

    def page(request):
        number = int(parse_qs(urlsplit(request.url).query)["page"][0])
        chunk = items[number * 100 : (number + 1) * 100]  # Infobip caps the page at 100
        return (
            200,
            {},
            json.dumps({"messages": chunk, "pagination": {"totalItems": 250, "page": number, "limit": 100}}),
        )

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.GET, f"{base}/ccaas/1/conversations/C1/messages", callback=page)
        messages = InfobipClient(base_url=base, api_key="k").get_messages("C1")
    assert [m.id for m in messages] == [f"msg-{n:05d}" for n in range(250)]
