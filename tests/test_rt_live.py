"""Whole handovers against a real Request Tracker 5 (rt-server on loopback, its own SQLite database).

Skipped with the reason when RT is not installed here; in CI (CI=true) a missing RT fails instead,
because .ci/run installs it. Run with -s to see the requests-per-poll-cycle figures.
"""

from __future__ import annotations

import os
import time

import pytest

from bridge import delivery, periodic
from bridge.connectors import get_connector
from bridge.models import CcaasEndpoint, ConversationLink, Message, State
from bridge.types import Customer, InteractionRef
from tests.rt_server import QUEUE, RtServer, rt_missing_reason, start_rt

CUSTOM_FIELDS = {"conversation_id": "Conversation ID", "channel": "Channel"}


@pytest.fixture(scope="session")
def rt_server():
    reason = rt_missing_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI must run the real-RT tests, but: {reason}")
        pytest.skip(reason)
    server = start_rt()
    yield server
    server.stop()


@pytest.fixture
def rt_endpoint(db, rt_server: RtServer, fake_infobip):
    return CcaasEndpoint.objects.create(
        slug="rt",
        kind="rt",
        config={
            "base_url": rt_server.url,
            "queue": QUEUE,
            "mode": "poll",
            "custom_fields": CUSTOM_FIELDS,
        },
        credentials={"token": rt_server.bridge_token},
        is_default=True,
    )


def ticket(rt_server: RtServer, ticket_id: str) -> dict:
    answer = rt_server.as_agent().get(f"{rt_server.api}/ticket/{ticket_id}", timeout=10)
    answer.raise_for_status()
    return answer.json()


def history(rt_server: RtServer, ticket_id: str) -> list[dict]:
    """The ticket's create, correspond and comment transactions with their text, oldest first."""
    agent = rt_server.as_agent()
    txns = agent.post(
        f"{rt_server.api}/transactions",
        params={"fields": "Type,Creator", "orderby": "id", "per_page": 100},
        data={"query": f"ObjectType = 'RT::Ticket' AND ObjectId = {ticket_id}"},
        timeout=10,
    ).json()["items"]
    wanted = [t for t in txns if t["Type"] in ("Create", "Correspond", "Comment")]
    atts = agent.post(
        f"{rt_server.api}/attachments",
        params={"fields": "TransactionId,ContentType,Content,Filename", "per_page": 100},
        json=[{"field": "TransactionId", "value": int(t["id"])} for t in wanted],
        timeout=10,
    ).json()["items"]
    for txn in wanted:
        parts = [a for a in atts if a["TransactionId"] == txn["id"]]
        txn["text"] = "".join(
            a["Content"] for a in parts if a["ContentType"] == "text/plain" and not a["Filename"]
        )
        txn["files"] = [a["Filename"] for a in parts if a["Filename"]]
    return wanted


def agent_says(rt_server: RtServer, ticket_id: str, text: str) -> None:
    answer = rt_server.as_agent().post(
        f"{rt_server.api}/ticket/{ticket_id}/correspond",
        json={"Content": text, "ContentType": "text/plain"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text


def agent_sets(rt_server: RtServer, ticket_id: str, **fields) -> None:
    answer = rt_server.as_agent().put(f"{rt_server.api}/ticket/{ticket_id}", json=fields, timeout=10)
    assert answer.status_code == 200, answer.text


def poll(endpoint: CcaasEndpoint):
    result = periodic.poll_endpoint(endpoint.pk)
    delivery.drain()
    return result


@pytest.mark.django_db
def test_whole_handover_against_real_rt(api, client, fake_infobip, rt_endpoint, rt_server, inbound_url):
    conv = fake_infobip.add_conversation(tags=["vip"], metadata={"language": "en"})
    fake_infobip.message(conv, "Hi, I need a human", created_at="2026-01-01T10:00:00.000+00:00")
    fake_infobip.message(
        conv, "Connecting you", direction="OUTBOUND", author="BOT", created_at="2026-01-01T10:00:01.000+00:00"
    )

    # escalation -> ticket with the history as its first content
    response = api.post(
        "/api/escalations/", {"conversationId": conv, "context": {"displayName": "Ana"}}, format="json"
    )
    assert response.status_code == 202, response.content
    poll(rt_endpoint)  # the first poll (no cursor yet) only finds where RT's transaction log ends
    delivery.drain()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.ACTIVE, link.last_error
    data = ticket(rt_server, link.interaction_id)
    assert data["Requestor"][0]["id"] == "447700900123@whatsapp.invalid"
    assert {cf["name"]: cf["values"] for cf in data["CustomFields"]} == {
        "Conversation ID": [conv],
        "Channel": ["WHATSAPP"],
    }
    create = history(rt_server, link.interaction_id)[0]
    assert create["Type"] == "Create"
    assert "Ana: Hi, I need a human" in create["text"] and "Bot: Connecting you" in create["text"]
    assert create["text"].index("Hi, I need a human") < create["text"].index("Connecting you")
    assert "Tags: vip" in create["text"] and "language=en" in create["text"]

    # customer messages appear on the ticket, once, in order
    for text in ("my order is late", "order 42"):
        body = fake_infobip.message(conv, text)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    delivery.drain()
    said = [t["text"] for t in history(rt_server, link.interaction_id) if t["Type"] == "Correspond"]
    assert len(said) == 2 and "my order is late" in said[0] and "order 42" in said[1]
    assert all(s.startswith("Ana wrote:") for s in said)

    # an agent takes the ticket and answers twice: both reach Infobip once, in order
    agent_sets(rt_server, link.interaction_id, Owner="agent")
    agent_says(rt_server, link.interaction_id, "Hello Ana, this is Alice")
    agent_says(rt_server, link.interaction_id, "Your order ships today")
    poll(rt_endpoint)
    poll(rt_endpoint)  # a second cycle forwards nothing again
    sent = [m["content"]["text"] for m in fake_infobip.sent_to_customer(conv)]
    assert sent == ["Hello Ana, this is Alice", "Your order ships today"]
    link.refresh_from_db()
    assert link.accepted_at is not None
    agent_rows = Message.objects.filter(link=link, source=Message.Source.CCAAS)
    assert {m.author_name for m in agent_rows} == {"Alice Agent"}

    # what the bridge wrote itself (customer messages) was never forwarded back
    assert not any("wrote:" in text for text in sent)

    # resolving the ticket closes the Infobip conversation
    agent_sets(rt_server, link.interaction_id, Status="resolved")
    poll(rt_endpoint)
    link.refresh_from_db()
    assert link.state == State.CLOSED
    assert link.close_reason == "AGENT"
    assert fake_infobip.conversations[conv]["status"] == "CLOSED"


@pytest.mark.django_db
def test_close_from_the_bridge_resolves_the_ticket(api, fake_infobip, rt_endpoint, rt_server):
    conv = fake_infobip.add_conversation()
    fake_infobip.message(conv, "help")
    response = api.post("/api/escalations/", {"conversationId": conv}, format="json")
    delivery.drain()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.ACTIVE, link.last_error
    from bridge.services import close_handover

    close_handover(link, actor="test")
    delivery.drain()
    assert ticket(rt_server, link.interaction_id)["Status"] == "resolved"
    link.refresh_from_db()
    assert link.state == State.CLOSED


@pytest.mark.django_db
def test_reopening_after_a_lost_answer_reuses_the_ticket(fake_infobip, rt_endpoint, rt_server):
    from bridge.types import HandoverContext

    connector = get_connector(rt_endpoint)
    ctx = HandoverContext(
        handover_id="h-1",
        conversation_id="CONV-RETRY",
        channel="WHATSAPP",
        customer=Customer(address="447700900999"),
        queue="",
        priority="NORMAL",
        tags=[],
        metadata={},
        context={},
        history=[],
    )
    first = connector.open_interaction(ctx)
    second = connector.open_interaction(ctx)
    assert first.interaction_id == second.interaction_id
    assert first.data["bridge_user"] == "bridge"


@pytest.mark.django_db
def test_poll_cost_stays_flat_with_1_10_and_100_open_handovers(rt_endpoint, rt_server):
    """One cycle: one transaction search, plus one attachments search when there is new
    correspondence, whatever the number of open handovers."""
    agent = rt_server.as_agent()
    bridge = rt_endpoint
    refs: list[InteractionRef] = []

    def open_tickets(count: int) -> None:
        # Reference: https://docs.bestpractical.com/rt/5.0.3/RT/REST2.html#Tickets (POST /tickets/bulk)
        answer = agent.post(
            f"{rt_server.api}/tickets/bulk",
            json=[
                {"Queue": QUEUE, "Subject": "load", "Requestor": "load@chat.invalid", "Content": "x"}
                for _ in range(count)
            ],
            timeout=120,
        )
        assert answer.status_code == 201, answer.text
        for created in answer.json():
            ticket_id = str(created["id"])
            refs.append(
                InteractionRef(
                    handover_id=f"h{ticket_id}",
                    conversation_id=f"c{ticket_id}",
                    interaction_id=ticket_id,
                    channel="WHATSAPP",
                    customer=Customer(address="load"),
                    data={"bridge_user": "bridge"},
                )
            )

    connector = get_connector(bridge)
    cursor = connector.poll("", [])
    cursor = cursor.cursor
    figures = {}
    for total in (1, 10, 100):
        open_tickets(total - len(refs))
        # catch up on the tickets' own creation transactions
        cursor = connector.poll(cursor, refs).cursor
        connector.requests_made = 0
        started = time.monotonic()
        idle = connector.poll(cursor, refs)
        idle_requests, idle_seconds = connector.requests_made, time.monotonic() - started
        assert idle.events == []
        agent_says(rt_server, refs[-1].interaction_id, f"reply with {total} open")
        connector.requests_made = 0
        started = time.monotonic()
        busy = connector.poll(idle.cursor, refs)
        busy_requests, busy_seconds = connector.requests_made, time.monotonic() - started
        assert [e.message.content["text"] for e in busy.events] == [f"reply with {total} open"]
        cursor = busy.cursor
        figures[total] = (idle_requests, busy_requests, idle_seconds, busy_seconds)
    print("\nRT poll cycle cost (open handovers: requests idle / with one reply, seconds idle / with reply)")
    for total, (idle_r, busy_r, idle_s, busy_s) in figures.items():
        print(f"  {total:>3}: {idle_r} / {busy_r} requests, {idle_s:.3f} s / {busy_s:.3f} s")
    assert {f[0] for f in figures.values()} == {1}
    assert {f[1] for f in figures.values()} == {2}
