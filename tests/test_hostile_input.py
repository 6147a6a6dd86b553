"""Valid JSON the databases cannot store, and malformed input, at every edge.

Each edge (Infobip's webhook, legacy and Subscriptions; the contact-center webhook; contact-center
polls; reconciliation's Get Messages; the escalation API) either refuses a value with 400 and a
clear reason, or stores it normalised and says so on the handover's timeline. Nothing is lost
silently ("stored": 0, "duplicates": 1 for a message never stored), nothing answers 5xx, and one bad
message never holds back another message, another conversation or a periodic job.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import responses
from django.contrib.auth import get_user_model
from django.utils import timezone

from bridge import periodic, reconcile
from bridge.inputs import MAX_DEPTH, load_json, nesting_depth_exceeds
from bridge.models import (
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    HandoverEvent,
    InboundEvent,
    Message,
    State,
)
from bridge.signing import sign

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "infobip"
MESSAGE = json.loads((FIXTURES / "webhook_account_configuration_message.json").read_text())
CONV = MESSAGE["conversationId"]
SECRET = "hostile-test-secret"
INFOBIP = "http://infobip.invalid"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def post(client, url, body, **headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(url, data=data, content_type="application/json", **headers)


def message(**changes) -> dict:
    item = copy.deepcopy(MESSAGE)
    content = changes.pop("content", None)
    if content is not None:
        item["content"] = content
    item.update(changes)
    return item


def readable_everywhere() -> None:
    """Every stored row reads back and serialises as strict JSON/UTF-8 (what the databases keep)."""
    for model in (Message, InboundEvent, HandoverEvent, ConversationLink, Delivery):
        for row in model.objects.values():
            json.dumps(row, default=str, allow_nan=False).encode("utf-8")


@pytest.fixture
def link(db):
    return ConversationLink.objects.create(
        conversation_id=CONV, state=State.ACTIVE, interaction_id="int-1", channel="WHATSAPP"
    )


@pytest.fixture
def other_link(db):
    return ConversationLink.objects.create(
        conversation_id="OTHER-CONVERSATION", state=State.ACTIVE, interaction_id="int-2", channel="WHATSAPP"
    )


@pytest.fixture
def infobip_url(settings):
    return f"/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"


# --- the edge's JSON parser ----------------------------------------------------------------------------
def test_depth_check_counts_levels_and_ignores_brackets_inside_strings():
    assert not nesting_depth_exceeds(deep(MAX_DEPTH).encode())
    assert nesting_depth_exceeds(deep(MAX_DEPTH + 1).encode())
    assert not nesting_depth_exceeds(json.dumps({"a": "[[[[" * 100, "b": [{"c": []}]}).encode())
    assert nesting_depth_exceeds(("[" * 10_000 + "]" * 10_000).encode())


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_not_json(text):
    with pytest.raises(Exception, match="not valid JSON"):
        load_json(f'{{"content": {{"n": {text}}}}}'.encode())


# --- Infobip webhook (legacy account-configuration messages) -------------------------------------------
NORMALISED = {
    "createdAt at year 9999, -14:00": (
        {"createdAt": "9999-12-31T23:59:59.999-14:00"},
        "createdAt",
    ),
    "createdAt at year 1, +14:00": ({"createdAt": "0001-01-01T00:00:00+14:00"}, "createdAt"),
    "createdAt ten years ahead": ({"createdAt": "2036-05-18T15:15:25.737+00:00"}, "createdAt"),
    "NUL in the text": ({"content": {"text": "a\x00b"}}, "content.text contains NUL"),
    "lone surrogate in the text": (
        {"content": {"text": "a\ud800b"}},
        "content.text contains a lone surrogate",
    ),
    "NUL in a key": ({"content": {"text": "hi", "x\x00": 1}}, "contains NUL"),
    "NUL in an unrelated raw field": ({"singleSendMessage": {"x": "\x00"}}, None),
}


@pytest.mark.parametrize("changes,noted", NORMALISED.values(), ids=NORMALISED.keys())
def test_unstorable_values_are_stored_normalised_and_shown(client, infobip_url, link, changes, noted):
    before = timezone.now()
    response = post(client, infobip_url, message(**changes))
    assert response.status_code == 200, response.content
    assert response.json()["stored"] == 1 and response.json()["duplicates"] == 0
    row = Message.objects.get(link=link)
    assert "\x00" not in json.dumps(row.content) and "\\u0000" not in json.dumps(row.content)
    if "createdAt" in changes:
        assert before <= row.created_at <= timezone.now()  # the time received
    if "content" in changes:
        assert "\ufffd" in json.dumps(row.content, ensure_ascii=False)
    assert Delivery.objects.filter(message=row, lane=Delivery.Lane.TO_CCAAS).exists()
    if noted:
        assert response.json()["normalised"] == 1
        note = HandoverEvent.objects.get(link=link, kind="normalised")
        assert noted in note.text and MESSAGE["id"] in note.text
    readable_everywhere()


@pytest.mark.parametrize(
    "changes",
    [{"createdAt": "9999-12-31T23:59:59.999-14:00"}, {"createdAt": "0001-01-01T00:00:00+14:00"}],
    ids=["year-9999", "year-1"],
)
def test_a_message_from_the_far_past_or_future_breaks_no_page_or_job(
    client, infobip_url, link, other_link, changes, settings
):
    """On PostgreSQL such a createdAt used to be stored as year 10000 / year 0 and then broke the
    admin, /metrics, the handover API and reconciliation of every conversation."""
    assert post(client, infobip_url, message(**changes)).status_code == 200
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    for url in (
        "/admin/",
        "/admin/bridge/message/",
        "/admin/bridge/conversationlink/",
        f"/admin/bridge/conversationlink/{link.pk}/change/",
        "/metrics",
        "/healthz",
    ):
        assert client.get(url).status_code == 200, url
    api = client.get(f"/api/handovers/{link.pk}/", HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_API_TOKEN}")
    assert api.status_code == 200 and api.json()["messagesFromCustomer"] == 1
    with responses.RequestsMock() as mock:
        mock.add(
            responses.GET, re.compile(f"{INFOBIP}/ccaas/1/conversations/.*/messages.*"), json={"messages": []}
        )
        result = reconcile.reconcile_all()
    assert result.handovers == 2 and result.errors == 0


REFUSED = {
    "NaN": (b'"content": {"text": "hi", "score": NaN}', "NaN"),
    "Infinity": (b'"content": {"text": "hi", "score": Infinity}', "Infinity"),
    "1e400": (b'"content": {"text": "hi", "score": 1e400}', "beyond the range"),
    "NaN in an unrelated field": (b'"updatedAt": NaN', "NaN"),
    "id of 300 characters": ({"id": "x" * 300}, "id"),
    "NUL in the id": ({"id": "ab\x00c"}, "id"),
    "lone surrogate in the conversation id": ({"conversationId": "a\udc00"}, "conversationId"),
    "authorType as a list": ({"authorType": ["AGENT"]}, "authorType"),
    "conversationId as an object": ({"conversationId": {"id": CONV}}, "conversationId"),
    "contentType of 100 characters": ({"contentType": "T" * 100}, "contentType"),
    "createdAt as a number": ({"createdAt": 1700000000}, "createdAt"),
    "nested 10,000 levels": (b'"content": {"text": "hi", "deep": ' + deep(10_000).encode(), "nested deeper"),
}


def _body(spec) -> bytes:
    if isinstance(spec, bytes):
        base = json.dumps(message()).encode()
        return base[:-1] + b", " + spec + b"}"
    return json.dumps(message(**spec)).encode()


@pytest.mark.parametrize("spec,reason", REFUSED.values(), ids=REFUSED.keys())
def test_unstorable_or_malformed_messages_are_refused_with_400(client, infobip_url, link, spec, reason):
    response = post(client, infobip_url, _body(spec))
    assert response.status_code == 400, response.content
    assert reason in response.json()["error"]
    assert not Message.objects.exists()
    # ...and a good message right after is not held back.
    response = post(client, infobip_url, message(id="GOOD-1"))
    assert response.status_code == 200 and response.json()["stored"] == 1


def test_one_bad_message_in_a_list_refuses_only_that_message(client, infobip_url, link):
    body = [message(id="GOOD-1"), message(id="x" * 300), message(id="GOOD-2", content={"text": "a\x00"})]
    response = post(client, infobip_url, body)
    assert response.status_code == 400
    data = response.json()
    assert data["stored"] == 2 and data["normalised"] == 1
    assert [r["index"] for r in data["refused"]] == [1] and "255" in data["refused"][0]["error"]
    assert set(Message.objects.values_list("external_id", flat=True)) == {"GOOD-1", "GOOD-2"}
    # The sender's retry of the same list stores nothing twice and still names the bad one.
    again = post(client, infobip_url, body).json()
    assert again["stored"] == 0 and again["duplicates"] == 2 and len(again["refused"]) == 1


# --- Infobip webhook (Subscriptions events) --------------------------------------------------------------
def envelope(message_changes=None, **payload_changes) -> dict:
    return {
        "type": "INBOUND_MESSAGE",
        "timestamp": "2026-01-01T10:00:00.000+00:00",
        "payload": {
            "id": CONV,
            "channel": "WHATSAPP",
            "message": {
                "id": "EV-MSG-1",
                "from": "447700900123",
                "to": "447860099299",
                "createdAt": "2026-01-01T10:00:00.000+00:00",
                "content": {"text": "Hello"},
                **(message_changes or {}),
            },
            **payload_changes,
        },
    }


def test_event_with_a_far_future_time_and_a_nul_is_stored_normalised(client, infobip_url, link):
    body = envelope({"createdAt": "9999-12-31T23:59:59.999-14:00", "content": {"text": "a\x00b"}})
    response = post(client, infobip_url, body)
    assert response.status_code == 200, response.content
    row = Message.objects.get(link=link, external_id="EV-MSG-1")
    assert row.content["text"] == "a\ufffdb" and row.created_at <= timezone.now()
    assert HandoverEvent.objects.filter(link=link, kind="normalised").exists()
    readable_everywhere()


@pytest.mark.parametrize(
    "body,reason",
    [
        (envelope(assignee="agent-7"), "assignee"),
        (envelope(tags="vip"), "tags"),
        (envelope({"id": "m" * 300}), "longer than 255"),
        (envelope(invoker=["AGENT"]), "invoker"),
        ({**envelope(), "type": "X" * 100}, "type"),
        ({**envelope(), "payload": {"id": CONV, "deep": json.loads(deep(MAX_DEPTH))}}, None),
    ],
    ids=["assignee-string", "tags-string", "long-message-id", "invoker-list", "long-type", "deep-ok"],
)
def test_malformed_events_are_400_never_500(client, infobip_url, link, body, reason):
    response = post(client, infobip_url, body)
    if reason is None:
        assert response.status_code in (200, 400)
        return
    assert response.status_code == 400, response.content
    assert reason in response.json()["error"]


def test_event_nested_ten_thousand_levels_is_400(client, infobip_url, link):
    body = b'{"type": "INBOUND_MESSAGE", "payload": ' + deep(10_000).encode() + b"}"
    response = post(client, infobip_url, body)
    assert response.status_code == 400 and "nested deeper" in response.json()["error"]


# --- contact-center webhook (generic protocol; the other connectors below) ------------------------------
@pytest.fixture
def endpoint(db):
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": "https://ccaas.example.com/bridge", "mode": "webhook"},
        credentials={"secret": SECRET},
    )


def agent_event(event_id, interaction="int-9", **message_changes) -> dict:
    return {
        "id": event_id,
        "type": "agent_message",
        "interactionId": interaction,
        "message": {
            "id": f"msg-{event_id}"[:300],
            "contentType": "TEXT",
            "content": {"text": "On it"},
            "agent": {"id": "7", "name": "Bo"},
            **message_changes,
        },
    }


def post_signed(client, endpoint, body: bytes):
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(SECRET, body).items()}
    return client.post(
        f"/webhooks/ccaas/{endpoint.slug}/", data=body, content_type="application/json", **headers
    )


@pytest.fixture
def ccaas_link(endpoint):
    return ConversationLink.objects.create(
        conversation_id="C-9", endpoint=endpoint, state=State.ACTIVE, interaction_id="int-9"
    )


def test_in_a_batch_only_the_bad_events_are_refused(client, endpoint, ccaas_link):
    other = ConversationLink.objects.create(
        conversation_id="C-10", endpoint=endpoint, state=State.ACTIVE, interaction_id="int-10"
    )
    events = [
        agent_event("e1"),
        agent_event("e2", agent="Bo"),  # agent given as a string
        {**agent_event("e3"), "id": "e" * 300},  # an id no column holds
        agent_event("e4", content={"text": "a\x00b\ud800"}),  # stored, normalised
        agent_event("e5", interaction="int-10"),  # another conversation
        agent_event("e6", content={"text": "x", "n": 1.5}, contentType=["TEXT"]),  # wrong type
    ]
    response = post_signed(client, endpoint, json.dumps({"events": events}).encode())
    assert response.status_code == 400, response.content
    data = response.json()
    assert data["stored"] == 3 and data["normalised"] == 1 and len(data["refused"]) == 3
    errors = " | ".join(r["error"] for r in data["refused"])
    assert "message.agent" in errors and "id: Ensure this field has no more than 255" in errors
    assert "message.contentType" in errors
    texts = dict(Message.objects.values_list("external_id", "content"))
    assert texts["msg-e1"] == {"text": "On it"} and texts["msg-e4"] == {"text": "a\ufffdb\ufffd"}
    assert Message.objects.filter(link=other).count() == 1
    assert InboundEvent.objects.filter(type="refused").count() == 3  # visible to operators
    assert HandoverEvent.objects.filter(link=ccaas_link, kind="normalised").exists()
    readable_everywhere()


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": ' + deep(10_000).encode() + b"}",
        b'{"events": [{"id": "e1", "type": "closed", "interactionId": "int-9", "x": NaN}]}',
        json.dumps({"events": [agent_event("e1", agent="Bo")]}).encode(),
        json.dumps({"events": [agent_event("e1", content="text")]}).encode(),
        json.dumps({"events": [{"id": ["e1"], "type": "closed", "interactionId": "int-9"}]}).encode(),
        json.dumps({"events": [{"id": "e1", "type": {"t": 1}, "interactionId": "int-9"}]}).encode(),
        json.dumps({"events": [{"id": "e1", "type": "closed", "interactionId": "\x00"}]}).encode(),
    ],
    ids=["deep", "NaN", "agent-string", "content-string", "id-list", "type-object", "nul-interaction"],
)
def test_malformed_contact_center_bodies_are_400(client, endpoint, ccaas_link, body):
    response = post_signed(client, endpoint, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]
    assert ConversationLink.objects.get(pk=ccaas_link.pk).state == State.ACTIVE


# --- polled events -----------------------------------------------------------------------------------------
def test_a_polled_bad_event_is_refused_visibly_and_does_not_block_the_poll(endpoint, ccaas_link):
    endpoint.config = {**endpoint.config, "mode": "poll"}
    endpoint.save()
    events = [agent_event("p1"), {**agent_event("p2"), "id": "p" * 300}, agent_event("p3", agent=5)]
    with responses.RequestsMock() as mock:
        mock.add(
            responses.GET,
            "https://ccaas.example.com/bridge/events",
            json={"events": [*events, agent_event("p4", content={"t": "\x00"})], "cursor": "c-1"},
        )
        result = periodic.poll_endpoint(endpoint.pk)
    assert result.stored == 2 and len(result.refused) == 2 and result.normalised == 1
    assert CcaasEndpoint.objects.get(pk=endpoint.pk).poll_cursor == "c-1"  # not stuck on the bad event
    assert set(Message.objects.values_list("external_id", flat=True)) == {"msg-p1", "msg-p4"}
    assert InboundEvent.objects.filter(type="refused").count() == 2
    readable_everywhere()


# --- reconciliation (Get Messages) ---------------------------------------------------------------------------
def test_reconciliation_stores_what_it_can_and_notes_the_rest(link, other_link):
    ConversationLink.objects.filter(pk=link.pk).update(last_infobip_message_at=timezone.now())
    items = [
        message(id="R-1", createdAt="9999-12-31T23:59:59.999-14:00"),
        message(id="R-2", content={"text": "a\x00b"}),
        message(id="R" * 300),
        message(id="R-4", authorType={"x": 1}),
        message(id="R-5"),
    ]
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, f"{INFOBIP}/ccaas/1/conversations/{CONV}/messages", json={"messages": items})
        mock.add(
            responses.GET,
            f"{INFOBIP}/ccaas/1/conversations/OTHER-CONVERSATION/messages",
            json={"messages": [message(id="O-1", conversationId="OTHER-CONVERSATION")]},
        )
        first = reconcile.reconcile_all()
        second = reconcile.reconcile_all()
    assert first.errors == 0 and first.recovered == 4 and second.recovered == 0
    assert set(Message.objects.filter(link=link).values_list("external_id", flat=True)) == {
        "R-1",
        "R-2",
        "R-5",
    }
    assert Message.objects.filter(link=other_link, external_id="O-1").exists()
    refused = HandoverEvent.objects.filter(link=link, kind="refused")
    assert refused.count() == 2  # noted once, not on every round
    assert Message.objects.get(external_id="R-1").created_at <= timezone.now()
    readable_everywhere()


def test_one_conversation_that_crashes_never_stops_reconciliation_of_the_others(
    link, other_link, monkeypatch
):
    real = reconcile.reconcile_link

    def crash_on_first(target, client=None):
        if target.pk == link.pk:
            raise RuntimeError("something unexpected")
        return real(target, client)

    monkeypatch.setattr(reconcile, "reconcile_link", crash_on_first)
    with responses.RequestsMock() as mock:
        mock.add(
            responses.GET,
            f"{INFOBIP}/ccaas/1/conversations/OTHER-CONVERSATION/messages",
            json={"messages": [message(id="O-1", conversationId="OTHER-CONVERSATION")]},
        )
        result = reconcile.reconcile_all()
    assert result.errors == 1 and result.recovered == 1


# --- escalation API --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,field",
    [
        (b'{"conversationId": "c1", "context": ' + deep(10_000).encode() + b"}", "nested deeper"),
        (json.dumps({"conversationId": "c1", "context": {"displayName": "a\x00b"}}).encode(), "NUL"),
        (json.dumps({"conversationId": "c1", "context": {"a": {"b": ["\ud800"]}}}).encode(), "surrogate"),
        (json.dumps({"conversationId": "c1", "context": {"k\x00": 1}}).encode(), "NUL"),
        (json.dumps({"conversationId": "c\x00"}).encode(), "conversationId"),
        (json.dumps({"conversationId": "c" * 300}).encode(), "conversationId"),
        (json.dumps({"conversationId": ["c1"]}).encode(), "conversationId"),
        (json.dumps({"conversationId": "c1", "priority": ["HIGH"]}).encode(), "priority"),
        (json.dumps({"conversationId": "c1", "context": ["a"]}).encode(), "context"),
        (json.dumps({"conversationId": "c1", "queue": {"q": 1}}).encode(), "queue"),
        (b'{"conversationId": "c1", "context": {"score": NaN}}', "NaN"),
        (b'{"conversationId": "c1", "context": {"score": 1e400}}', "range"),
        (json.dumps({"conversationId": "c1", "context": {"big": "x" * 70_000}}).encode(), "context"),
    ],
    ids=[
        "deep",
        "nul-context",
        "surrogate-context",
        "nul-key",
        "nul-id",
        "long-id",
        "id-list",
        "priority-list",
        "context-list",
        "queue-object",
        "nan",
        "1e400",
        "huge-context",
    ],
)
def test_malformed_escalations_are_400_with_a_json_error(client, settings, body, field):
    response = client.post(
        "/api/escalations/",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_API_TOKEN}",
    )
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]
    assert not ConversationLink.objects.exists()


def test_a_poll_answer_the_connector_cannot_read_is_an_endpoint_error_and_polls_go_on(endpoint, monkeypatch):
    """A connector meeting an answer shape it does not expect (here `"events": null` slipping past
    its page check) leaves a visible endpoint error and the next poll scheduled, not a crash."""
    from bridge.connectors.generic import GenericConnector

    endpoint.config = {**endpoint.config, "mode": "poll"}
    endpoint.save()
    monkeypatch.setattr(GenericConnector, "_events_page", lambda self, cursor: {"events": None})
    assert periodic.poll_endpoint(endpoint.pk) is None
    endpoint.refresh_from_db()
    assert "unexpected answer (TypeError" in endpoint.last_error
    assert endpoint.poll_next_at is not None
