"""Order and echoes at the edges: agent replies follow the contact center's order, nothing is ordered
by a process clock, every part the bridge creates is known by its id, and a customer message found
late by reconciliation arrives marked, with its original time, and the gap is on the timeline."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import responses
from django.utils import timezone

from bridge import delivery, handlers, periodic, reconcile, services
from bridge.connectors import get_connector
from bridge.connectors.base import vendor_sequence, vendor_time
from bridge.models import (
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    HandoverEvent,
    Lease,
    Message,
    OwnMessage,
    State,
)
from bridge.signing import sign
from tests.chatwoot_fake import ACCOUNT, INBOX, chatwoot_signature
from tests.chatwoot_fake import BASE_URL as CHATWOOT_URL
from tests.connector_contract import header_kwargs
from tests.genesys_fake import FakeGenesys
from tests.payloads import load_fixture
from tests.zendesk_fake import zendesk_signature

GENERIC_SECRET = "generic-shared-secret"
CHATWOOT_SECRET = "chatwoot-webhook-secret"
ZENDESK_SECRET = "zendesk-webhook-secret"
GENESYS_SECRET = "genesys-webhook-secret"
CUSTOMER = "447700900123"
BUSINESS = "447860099299"
T0 = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)


def fixture(path: str) -> dict:
    source, _, name = path.partition("/")
    return load_fixture(source, name)


def iso(seconds: float) -> str:
    value = T0 + timedelta(seconds=seconds)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --- one agent reply, as each contact center's webhook carries it --------------------------------
# (vendor id, text, seconds after T0) -> (body, signing headers); shapes from tests/fixtures/<vendor>.
def chatwoot_reply(interaction: str, number: int, text: str, seconds: float) -> tuple[bytes, dict]:
    data = fixture("chatwoot/webhook_message_created.json")
    data.update(id=number, content=text, created_at=iso(seconds))
    data["conversation"]["id"] = int(interaction)
    body = json.dumps(data).encode()
    return body, chatwoot_signature(CHATWOOT_SECRET, body)


def zendesk_reply(interaction: str, number: int, text: str, seconds: float) -> tuple[bytes, dict]:
    data = fixture("zendesk/webhook_ticket_comment_added.json")
    data.update(id=f"evt-{number}", time=iso(seconds), subject=f"zen:ticket:{interaction}")
    data["detail"]["id"] = interaction
    data["event"]["comment"].update(id=str(number), body=text)
    body = json.dumps(data).encode()
    return body, zendesk_signature(ZENDESK_SECRET, body)


def genesys_reply(interaction: str, number: int, text: str, seconds: float) -> tuple[bytes, dict]:
    data = fixture("genesys/webhook_text.json")
    data.update(id=f"gen-{number}", text=text)
    data["channel"].update(messageId=f"gen-{number}", time=iso(seconds), to={"id": interaction})
    return FakeGenesys.signed(data, GENESYS_SECRET)


def generic_reply(interaction: str, number: int, text: str, seconds: float) -> tuple[bytes, dict]:
    event = {
        "id": f"evt-{number}",
        "type": "agent_message",
        "interactionId": interaction,
        "message": {
            "id": f"msg-{number}",
            "contentType": "TEXT",
            "content": {"text": text},
            "agent": {"id": "a1", "name": "Alice"},
            "createdAt": iso(seconds),
        },
    }
    body = json.dumps({"events": [event]}).encode()
    return body, sign(GENERIC_SECRET, body)


WEBHOOK_CONNECTORS: dict[str, tuple[dict, dict, str, Callable[..., tuple[bytes, dict]]]] = {
    "chatwoot": (
        {"base_url": CHATWOOT_URL, "account_id": ACCOUNT, "inbox_id": INBOX, "mode": "webhook"},
        {"api_access_token": "cw-token", "webhook_secret": CHATWOOT_SECRET},
        "123",
        chatwoot_reply,
    ),
    "zendesk": (
        {"subdomain": "acme", "mode": "webhook"},
        {"email": "bridge@acme.test", "api_token": "zd-token", "webhook_secret": ZENDESK_SECRET},
        "5158",
        zendesk_reply,
    ),
    "genesys": (
        {"region": "mypurecloud.com", "integration_id": "int-1"},
        {"client_id": "c", "client_secret": "s", "webhook_secret": GENESYS_SECRET},
        "8f7e6d5c-0000-4000-8000-00000000ab01",
        genesys_reply,
    ),
    "generic": (
        {"base_url": "https://ccaas.example.test/bridge", "mode": "webhook"},
        {"secret": GENERIC_SECRET},
        "int-1",
        generic_reply,
    ),
}


def active_handover(
    endpoint: CcaasEndpoint, interaction: str, conversation: str, data=None
) -> ConversationLink:
    now = timezone.now()
    return ConversationLink.objects.create(
        conversation_id=conversation,
        endpoint=endpoint,
        interaction_id=interaction,
        interaction_data=data or {"requester_id": 8447388090001},
        state=State.ACTIVE,
        channel="WHATSAPP",
        customer_address=CUSTOMER,
        customer_name="Ana",
        business_sender=BUSINESS,
        opened_at=now,
    )


def webhook(client, endpoint: CcaasEndpoint, signed: tuple[bytes, dict]):
    body, headers = signed
    response = client.post(
        f"/webhooks/ccaas/{endpoint.slug}/",
        data=body,
        content_type="application/json",
        **header_kwargs(headers),
    )
    assert response.status_code == 200, response.content
    return response


def sent_texts(fake_infobip, conversation: str) -> list[str]:
    return [
        m["content"].get("text") or m["content"].get("url")
        for m in fake_infobip.sent_to_customer(conversation)
    ]


@contextmanager
def process_clock(offset_seconds: float) -> Iterator[None]:
    """Run the block as a process whose clock is `offset_seconds` off: timezone.now(), and the
    defaults taken from it when rows are written."""
    real = timezone.now

    def skewed() -> datetime:
        return real() + timedelta(seconds=offset_seconds)

    field = Delivery._meta.get_field("sort_at")
    with mock.patch("django.utils.timezone.now", skewed), mock.patch.object(field, "_get_default", skewed):
        yield


# --- the vendor's order for agent replies waiting together ----------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(WEBHOOK_CONNECTORS))
def test_replies_waiting_together_reach_the_customer_in_the_vendors_order(kind, client, fake_infobip):
    """Replies 4001 ("1/2") and 4002 ("2/2"); the webhook of 4002 arrives first, both before a
    worker runs: the customer gets 1/2, then 2/2."""
    config, credentials, interaction, reply = WEBHOOK_CONNECTORS[kind]
    endpoint = CcaasEndpoint.objects.create(slug=kind, kind=kind, config=config, credentials=credentials)
    conversation = fake_infobip.add_conversation()
    link = active_handover(endpoint, interaction, conversation)
    with mock.patch("bridge.delivery.enqueue_lane"):  # no worker runs until both are in
        webhook(client, endpoint, reply(interaction, 4002, "2/2", 1.0))
        webhook(client, endpoint, reply(interaction, 4001, "1/2", 0.5))
    assert delivery.drive_lane(link.pk, Delivery.Lane.TO_INFOBIP) == 2
    assert sent_texts(fake_infobip, conversation) == ["1/2", "2/2"]


@pytest.mark.django_db
def test_chatwoot_replies_in_the_same_second_follow_the_message_id(client, fake_infobip):
    """Chatwoot's REST API gives whole seconds: the message id decides between replies of one second."""
    config, credentials, interaction, _ = WEBHOOK_CONNECTORS["chatwoot"]
    endpoint = CcaasEndpoint.objects.create(
        slug="cw", kind="chatwoot", config=config, credentials=credentials
    )
    conversation = fake_infobip.add_conversation()
    link = active_handover(endpoint, interaction, conversation)
    second = int(T0.timestamp())
    for number, text in ((4002, "2/2"), (4001, "1/2")):
        data = fixture("chatwoot/webhook_message_created.json")
        data.update(id=number, content=text, created_at=second)
        data["conversation"]["id"] = int(interaction)
        body = json.dumps(data).encode()
        with mock.patch("bridge.delivery.enqueue_lane"):
            webhook(client, endpoint, (body, chatwoot_signature(CHATWOOT_SECRET, body)))
    delivery.drive_lane(link.pk, Delivery.Lane.TO_INFOBIP)
    assert sent_texts(fake_infobip, conversation) == ["1/2", "2/2"]


@pytest.mark.django_db
def test_rt_transactions_waiting_together_follow_the_transaction_id(fake_infobip):
    """RT is polled: two correspondences found by two polls, the later transaction first (for
    instance a second RT whose poll ran first): the customer gets them in transaction id order."""
    endpoint = CcaasEndpoint.objects.create(
        slug="rt",
        kind="rt",
        config={"base_url": "https://rt.example.test", "queue": "General", "mode": "poll"},
        credentials={"token": "rt-token"},
    )
    conversation = fake_infobip.add_conversation()
    link = active_handover(endpoint, "1001", conversation, {"ticket_id": "1001", "bridge_user": "bridge"})
    connector = get_connector(endpoint)
    items = fixture("rt/api_transactions_search_200.json")["items"]
    correspond = next(item for item in items if item["id"] == "45")
    first = connector._event({**correspond, "id": "45"}, {"45": {"plain": ["1/2"], "html": [], "files": []}})
    second = connector._event(
        {**correspond, "id": "52", "Created": "2026-11-21T16:29:20Z"},
        {"52": {"plain": ["2/2"], "html": [], "files": []}},
    )
    with mock.patch("bridge.delivery.enqueue_lane"):
        services.ingest_events(endpoint, [second])
        services.ingest_events(endpoint, [first])
    delivery.drive_lane(link.pk, Delivery.Lane.TO_INFOBIP)
    assert sent_texts(fake_infobip, conversation) == ["1/2", "2/2"]


# --- never a process clock -------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("vendor_time_given", [False, True])
def test_two_web_processes_ten_seconds_apart_and_one_retry_keep_the_agents_order(
    vendor_time_given, client, fake_infobip
):
    """A arrives at a web process whose clock runs 10 s ahead, its first Create Message fails; B
    arrives at another process afterwards: A reaches the customer first. With the contact center's
    time (createdAt) and without it (then the database's order)."""
    endpoint = CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config=WEBHOOK_CONNECTORS["generic"][0],
        credentials={"secret": GENERIC_SECRET},
    )
    conversation = fake_infobip.add_conversation()
    link = active_handover(endpoint, "int-1", conversation)

    def reply(number: int, text: str, seconds: float) -> tuple[bytes, dict]:
        body, headers = generic_reply("int-1", number, text, seconds)
        if vendor_time_given:
            return body, headers
        data = json.loads(body)
        del data["events"][0]["message"]["createdAt"]
        raw = json.dumps(data).encode()
        return raw, sign(GENERIC_SECRET, raw)

    fake_infobip.fail("POST", rf"/ccaas/1/conversations/{conversation}/messages", count=1, status=503)
    with mock.patch("bridge.delivery.enqueue_lane"):
        with process_clock(+10):
            webhook(client, endpoint, reply(1, "A", 0))
        first = delivery.claim_next(link.pk, Delivery.Lane.TO_INFOBIP)
        delivery.run(first, handlers.HANDLERS[first.kind])
        first.refresh_from_db()
        assert first.state == Delivery.Status.PENDING and first.attempts == 1
        webhook(client, endpoint, reply(2, "B", 1))
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    delivery.drive_lane(link.pk, Delivery.Lane.TO_INFOBIP)
    assert sent_texts(fake_infobip, conversation) == ["A", "B"]


@pytest.mark.django_db
def test_polled_replies_keep_the_agents_order_across_skewed_pollers(fake_infobip, fake_ccaas):
    """Generic poll mode: one poll runs on a worker whose clock is 10 s ahead and finds A, whose first
    attempt fails; the next poll, on another worker, finds B: A reaches the customer first."""
    endpoint = CcaasEndpoint.objects.create(
        slug="pollme",
        kind="generic",
        config={"base_url": fake_ccaas.base_url, "mode": "poll"},
        credentials={"secret": GENERIC_SECRET},
    )
    conversation = fake_infobip.add_conversation()
    link = active_handover(endpoint, "int-1", conversation)

    fake_infobip.fail("POST", rf"/ccaas/1/conversations/{conversation}/messages", count=1, status=503)
    with mock.patch("bridge.delivery.enqueue_lane"):
        fake_ccaas.events.append(json.loads(generic_reply("int-1", 1, "A", 0)[0])["events"][0])
        with process_clock(+10):
            periodic.poll_endpoint(endpoint.pk)
        first = delivery.claim_next(link.pk, Delivery.Lane.TO_INFOBIP)
        delivery.run(first, handlers.HANDLERS[first.kind])
        fake_ccaas.events.append(json.loads(generic_reply("int-1", 2, "B", 1)[0])["events"][0])
        # The fast worker released its poll lease by its own clock; let the next poll run now.
        Lease.objects.filter(name=f"poll:{endpoint.slug}").delete()
        periodic.poll_endpoint(endpoint.pk)
    assert Message.objects.filter(link=link, source=Message.Source.CCAAS).count() == 2
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    delivery.drive_lane(link.pk, Delivery.Lane.TO_INFOBIP)
    assert sent_texts(fake_infobip, conversation) == ["A", "B"]


@pytest.mark.django_db
def test_customer_messages_of_one_instant_follow_the_database_order_whatever_the_clock(
    client, inbound_url, fake_infobip, fake_ccaas, generic_endpoint
):
    """Customer lane: Infobip createdAt, then the row's id; the receiving process's clock plays no part."""
    conversation = fake_infobip.add_conversation()
    link = active_handover(generic_endpoint, "int-1", conversation)
    fake_ccaas.interactions["int-1"] = {"messages": [], "closed": None, "duplicates": 0}
    same = "2026-01-01T10:00:00.000+00:00"
    with mock.patch("bridge.delivery.enqueue_lane"):
        with process_clock(+10):
            body = fake_infobip.message(conversation, "first", created_at=same, store=False)
            assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        body = fake_infobip.message(conversation, "second", created_at=same, store=False)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        body = fake_infobip.message(
            conversation, "earlier", created_at="2026-01-01T09:59:59.000+00:00", store=False
        )
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    texts = [m["content"]["text"] for m in fake_ccaas.interactions["int-1"]["messages"]]
    assert texts == ["earlier", "first", "second"]


def test_vendor_times_and_sequences_are_read_leniently_and_refused_when_absurd():
    assert vendor_time("2025-01-08T10:12:07.672717030Z") == datetime(
        2025, 1, 8, 10, 12, 7, 672717, tzinfo=UTC
    )
    assert vendor_time("2026-01-01T10:00:00.000+0000") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert vendor_time("2026-11-21 16:29:16") == datetime(2026, 11, 21, 16, 29, 16, tzinfo=UTC)
    assert vendor_time(1767261900) == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    for absurd in (None, "", "soon", True, "9999-12-31T23:59:59Z", 1e20, float("nan")):
        assert vendor_time(absurd) is None
    assert vendor_sequence("9000000000001") == 9000000000001
    assert vendor_sequence(4001) == 4001
    for absurd in (None, "gen-1", -1, True, str(2**64)):
        assert vendor_sequence(absurd) is None


# --- every part the bridge creates is known by its id ----------------------------------------------


def outbound_event(conversation: str, message_id: str, content: dict) -> dict:
    """Infobip's OUTBOUND_MESSAGE event for a message of `conversation` (the spec's example shape)."""
    body = load_fixture("infobip", "webhook_inbound_message_event")
    body["type"] = "OUTBOUND_MESSAGE"
    body["payload"]["id"] = conversation
    body["payload"]["direction"] = "OUTBOUND"
    body["payload"]["message"].update(
        id=message_id, messageId=message_id, conversationId=conversation, content=content
    )
    return body


@pytest.fixture
def generic_handover(fake_infobip, fake_ccaas, generic_endpoint):
    conversation = fake_infobip.add_conversation()
    link = active_handover(generic_endpoint, "int-1", conversation)
    fake_ccaas.interactions["int-1"] = {"messages": [], "closed": None, "duplicates": 0}
    return link


def agent_text_with_image(client, endpoint, text: str) -> None:
    event = {
        "id": "evt-img",
        "type": "agent_message",
        "interactionId": "int-1",
        "message": {
            "id": "msg-img",
            "contentType": "TEXT",
            "content": {
                "text": text,
                "attachments": [
                    {"url": "https://files.acme.test/form.png", "mimeType": "image/png"},
                    {"url": "https://files.acme.test/terms.pdf", "mimeType": "application/pdf"},
                ],
            },
            "agent": {"id": "a1", "name": "Alice"},
        },
    }
    body = json.dumps({"events": [event]}).encode()
    webhook(client, endpoint, (body, sign(GENERIC_SECRET, body)))


@pytest.mark.django_db
def test_echoes_of_every_part_of_a_multi_part_agent_message_stay_home(
    client, inbound_url, fake_infobip, fake_ccaas, generic_handover
):
    """Text + image + document are three Create Message calls; Infobip reports each as an
    OUTBOUND_MESSAGE event: none of them comes back to the contact center."""
    link = generic_handover
    agent_text_with_image(client, link.endpoint, "Here are the form and the terms")
    delivery.drive_lane(link.pk, Delivery.Lane.TO_INFOBIP)
    sent = fake_infobip.sent_to_customer(link.conversation_id)
    assert [m["contentType"] for m in sent] == ["TEXT", "IMAGE", "DOCUMENT"]
    assert set(OwnMessage.objects.filter(link=link).values_list("external_id", flat=True)) == {
        m["id"] for m in sent
    }
    for item in sent:
        body = outbound_event(link.conversation_id, item["id"], item["content"])
        response = client.post(inbound_url, data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200
    delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    assert fake_ccaas.interactions["int-1"]["messages"] == []
    assert Message.objects.filter(link=link, source=Message.Source.INFOBIP).count() == 0


@pytest.mark.django_db
def test_an_echo_that_overtakes_create_messages_answer_is_known_by_its_media_url(
    client, inbound_url, fake_infobip, fake_ccaas, generic_handover
):
    """The OUTBOUND_MESSAGE event of the image part arrives before the bridge has its id."""
    link = generic_handover
    agent_text_with_image(client, link.endpoint, "The form")
    body = outbound_event(
        link.conversation_id, "IB-NOT-YET-KNOWN", {"url": "https://files.acme.test/form.png"}
    )
    assert client.post(inbound_url, data=json.dumps(body), content_type="application/json").status_code == 200
    assert Message.objects.filter(link=link, source=Message.Source.INFOBIP).count() == 0


@pytest.mark.django_db
def test_an_infobip_agents_own_image_is_still_forwarded(
    client, inbound_url, fake_infobip, fake_ccaas, generic_handover
):
    link = generic_handover
    agent_text_with_image(client, link.endpoint, "The form")
    body = outbound_event(link.conversation_id, "IB-SUP-1", {"url": "https://files.acme.test/other.png"})
    body["payload"]["invoker"] = {"type": "AGENT", "id": "sup", "name": "Sup"}
    assert client.post(inbound_url, data=json.dumps(body), content_type="application/json").status_code == 200
    assert Message.objects.filter(link=link, source=Message.Source.INFOBIP).count() == 1


# --- a customer message found late by reconciliation ------------------------------------------------
@pytest.mark.django_db
def test_a_message_recovered_after_its_successor_arrives_marked_with_its_time_and_the_gap_is_shown(
    client, inbound_url, fake_infobip, fake_ccaas, generic_handover
):
    """Infobip messages A, B, C; B's webhook is dropped; reconciliation finds B after C was
    delivered: B arrives marked as recovered, with its original createdAt, and the timeline says so."""
    link = generic_handover
    conversation = link.conversation_id
    times = {"A": "2026-01-01T10:00:01.000+00:00", "B": "2026-01-01T10:00:02.000+00:00"}
    times["C"] = "2026-01-01T10:00:03.000+00:00"
    for text in ("A", "B", "C"):
        body = fake_infobip.message(conversation, text, created_at=times[text])
        if text != "B":  # B's webhook is dropped
            assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    assert reconcile.reconcile_all().recovered == 1
    delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    received = fake_ccaas.interactions["int-1"]["messages"]
    assert [m["content"]["text"] for m in received] == ["A", "C", "B"]
    late = received[-1]
    assert late["recovered"] is True
    assert datetime.fromisoformat(late["createdAt"]) == datetime(2026, 1, 1, 10, 0, 2, tzinfo=UTC)
    assert all("recovered" not in m for m in received[:2])
    (note,) = HandoverEvent.objects.filter(link=link, kind="recovered")
    assert "written 2026-01-01 10:00:02 UTC" in note.text
    assert "1 later message had already reached the contact center" in note.text


@pytest.mark.django_db
def test_a_message_recovered_before_its_successor_went_keeps_its_place(
    client, inbound_url, fake_infobip, fake_ccaas, generic_handover
):
    link = generic_handover
    conversation = link.conversation_id
    fake_infobip.message(conversation, "A", created_at="2026-01-01T10:00:01.000+00:00")
    body = fake_infobip.message(conversation, "B", created_at="2026-01-01T10:00:02.000+00:00")
    with mock.patch("bridge.delivery.enqueue_lane"):
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        assert reconcile.reconcile_all().recovered == 1
    delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    received = fake_ccaas.interactions["int-1"]["messages"]
    assert [(m["content"]["text"], m.get("recovered", False)) for m in received] == [
        ("A", True),
        ("B", False),
    ]
    (note,) = HandoverEvent.objects.filter(link=link, kind="recovered")
    assert "nothing later had been delivered yet" in note.text


def vendor_answer(request):
    """Each vendor's answer to the calls a customer message makes (shapes from tests/fixtures and the
    vendors' docs: Zendesk's Update Ticket answers with the audit of what it created)."""
    if request.url.endswith("/oauth/token"):
        return 200, {}, json.dumps(fixture("genesys/api_oauth_token_200.json"))
    if "/inbound/open/message" in request.url:
        return 200, {}, json.dumps(fixture("genesys/api_inbound_open_message_200.json"))
    if "/REST/2.0/" in request.url:
        return 201, {}, json.dumps(fixture("rt/api_ticket_correspond_201.json"))
    if "/api/v2/tickets/" in request.url:
        comment = {"id": 9000000000777, "type": "Comment", "public": True, "author_id": 77}
        return 200, {}, json.dumps({"ticket": {"id": 123}, "audit": {"id": 1, "events": [comment]}})
    return 200, {}, json.dumps({"id": 4100, "content": "", "message_type": 0, "private": False})


def customer_message_delivered(kind: str, *, recovered: bool) -> tuple[ConversationLink, list[dict]]:
    """One customer message delivered to a `kind` endpoint by the delivery handler; the JSON bodies sent."""
    config, credentials = {
        "chatwoot": WEBHOOK_CONNECTORS["chatwoot"][:2],
        "zendesk": WEBHOOK_CONNECTORS["zendesk"][:2],
        "genesys": WEBHOOK_CONNECTORS["genesys"][:2],
        "rt": ({"base_url": "https://rt.example.test", "queue": "General"}, {"token": "rt-token"}),
    }[kind]
    endpoint = CcaasEndpoint.objects.create(slug=kind, kind=kind, config=config, credentials=credentials)
    link = active_handover(endpoint, "123", "conv-1", {"requester_id": 77, "conversation_id": "g-1"})
    row = Message.objects.create(
        link=link,
        direction="INBOUND",
        external_id="B",
        infobip_message_id="B",
        content_type="TEXT",
        content={"text": "my order is 1234"},
        created_at=datetime(2026, 1, 1, 10, 0, 2, tzinfo=UTC),
        recovered=recovered,
    )
    row_delivery = Delivery.objects.create(
        link=link, message=row, kind=Delivery.Kind.MESSAGE, lane=Delivery.Lane.TO_CCAAS
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as vendor:
        for method in (responses.GET, responses.POST, responses.PUT):
            vendor.add_callback(method, re.compile(r"https://.*"), callback=vendor_answer)
        assert handlers.handle_message(row_delivery) is None
        bodies = [
            json.loads(call.request.body)
            for call in vendor.calls
            if call.request.headers.get("Content-Type") == "application/json"
        ]
    return link, bodies


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["chatwoot", "zendesk", "rt", "genesys"])
def test_text_connectors_show_the_recovered_mark_with_the_original_time(kind):
    """Connectors that carry text only get the mark in front of what the agent reads."""
    _, bodies = customer_message_delivered(kind, recovered=True)
    mark = "[Recovered, sent late: written 2026-01-01 10:00:02 UTC] my order is 1234"
    assert any(mark in json.dumps(body, ensure_ascii=False) for body in bodies), bodies


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["chatwoot", "zendesk"])
def test_a_webhook_echoing_what_the_bridge_wrote_in_the_contact_center_is_not_a_reply(
    kind, client, fake_infobip
):
    """The id the contact center gave the bridge's message is remembered: a webhook that reports that
    message is never forwarded to the customer, even when it looks like an agent reply."""
    link, _ = customer_message_delivered(kind, recovered=False)
    own = {"chatwoot": "4100", "zendesk": "9000000000777"}[kind]
    assert list(OwnMessage.objects.filter(link=link, side="ccaas").values_list("external_id", flat=True)) == [
        own
    ]
    endpoint = link.endpoint
    endpoint.credentials = WEBHOOK_CONNECTORS[kind][1]
    endpoint.save()
    reply = WEBHOOK_CONNECTORS[kind][3]
    webhook(client, endpoint, reply("123", int(own), "my order is 1234", 1))
    assert not Message.objects.filter(link=link, source=Message.Source.CCAAS).exists()
    assert not Delivery.objects.filter(link=link, lane=Delivery.Lane.TO_INFOBIP).exists()


@pytest.mark.django_db
def test_a_takeover_note_takes_its_place_among_customer_messages_by_infobips_time(
    client, inbound_url, fake_infobip, fake_ccaas, generic_handover, settings
):
    """The note that an Infobip agent joined goes between the customer messages written before and
    after it (Infobip's event time), not after everything (the receiving process's clock)."""
    settings.INFOBIP_AGENT_ID = "bridge-agent"
    link = generic_handover
    link.endpoint.config = {**link.endpoint.config, "infobip_takeover": "keep"}
    link.endpoint.save()
    with mock.patch("bridge.delivery.enqueue_lane"):
        for text, created_at in (
            ("before", "2026-01-01T10:00:01.000+00:00"),
            ("after", "2026-01-01T10:00:03.000+00:00"),
        ):
            body = fake_infobip.message(link.conversation_id, text, created_at=created_at, store=False)
            assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        event = load_fixture("infobip", "webhook_inbound_message_event")
        event.update(type="CONVERSATION_ASSIGNMENT_UPDATED", timestamp="2026-01-01T10:00:02.000+00:00")
        event["payload"].pop("message")
        event["payload"].update(
            id=link.conversation_id, assignee={"id": "someone-else", "name": "Bob", "role": "AGENT"}
        )
        with process_clock(+10):
            assert (
                client.post(inbound_url, data=json.dumps(event), content_type="application/json").status_code
                == 200
            )
    delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    texts = [m["content"]["text"] for m in fake_ccaas.interactions["int-1"]["messages"]]
    assert texts == ["before", "Note: Bob also joined this conversation inside Infobip.", "after"]
