"""The fault suite (docs/reliability.md): nothing lost, nothing twice, nothing out of order.

Each test drives real HTTP views and real loopback fakes (bridge.demo.fakes) and checks the same
figures: lost = 0, duplicates = 0, order violations = 0, at most one request in flight per
interaction, and an admin-visible state (Delivery.state / last_error, ConversationLink.last_error,
timeline rows) for each failure. The figures are printed (run with -s to see them).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.db import connection
from django.db.models import F

from bridge import delivery, handlers, periodic, services
from bridge.api.views import handover_json
from bridge.connectors import get_connector
from bridge.demo.fakes import FakeGenericCcaas, FakeInfobip
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
from tests import procs
from tests.payloads import load_fixture

procs.use_file_sqlite()  # threads of a live server and workers share the test database

SECRET = "generic-shared-secret"
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    value = T0 + timedelta(seconds=seconds)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+00:00"


class WatchedCcaas(FakeGenericCcaas):
    """The generic fake, counting how many message requests are in flight per interaction at once."""

    def __init__(self, *args, delay: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.active: Counter[str] = Counter()
        self.max_active: Counter[str] = Counter()
        self.total_active = 0
        self.max_total_active = 0
        self.accepted_at: dict[str, float] = {}

    def _message(self, req, interaction_id):
        with self.lock:
            self.active[interaction_id] += 1
            self.total_active += 1
            self.max_active[interaction_id] = max(
                self.max_active[interaction_id], self.active[interaction_id]
            )
            self.max_total_active = max(self.max_total_active, self.total_active)
        try:
            if self.delay:
                time.sleep(self.delay)
            status, body = super()._message(req, interaction_id)
            if status < 300 and req.json:
                self.accepted_at.setdefault(req.json["id"], time.monotonic())
            return status, body
        finally:
            with self.lock:
                self.active[interaction_id] -= 1
                self.total_active -= 1

    def texts(self, interaction_id: str) -> list[str]:
        return [m["content"]["text"] for m in self.interactions[interaction_id]["messages"]]


def figures(received: list[str], expected: list[str]) -> dict[str, int]:
    """lost, duplicates and order violations of what a target received against what was sent."""
    counts = Counter(received)
    position = {text: i for i, text in enumerate(expected)}
    firsts = [position[t] for t in dict.fromkeys(received) if t in position]
    return {
        "delivered": len(set(received) & set(expected)),
        "lost": len(set(expected) - set(received)),
        "duplicates": sum(n - 1 for n in counts.values()),
        "order_violations": sum(1 for a, b in itertools.pairwise(firsts) if b < a),
        "unexpected": len(set(received) - set(expected)),
    }


def assert_clean(name: str, received: list[str], expected: list[str], **extra) -> dict[str, int]:
    result = figures(received, expected)
    print(f"\n{name}: {result} {extra}")
    assert result == {
        "delivered": len(expected),
        "lost": 0,
        "duplicates": 0,
        "order_violations": 0,
        "unexpected": 0,
    }, result
    return result


def drain_until_idle(timeout: float = 30.0) -> None:
    """Drive every due lane until no delivery is left to do (retries included), bounded in time."""
    deadline = time.monotonic() + timeout
    while Delivery.objects.exclude(state__in=Delivery.TERMINAL_STATES).exists():
        assert time.monotonic() < deadline, list(
            Delivery.objects.exclude(state__in=Delivery.TERMINAL_STATES).values("kind", "state", "last_error")
        )
        if not delivery.drain():
            time.sleep(0.02)


def attempt_once(link: ConversationLink, lane: str) -> Delivery:
    """One attempt at the head of a lane, as one worker run would make it (no immediate retry)."""
    claimed = delivery.claim_next(link.pk, lane)
    assert claimed is not None
    delivery.run(claimed, handlers.HANDLERS[claimed.kind])
    claimed.refresh_from_db()
    return claimed


def open_handover(infobip: FakeInfobip, conversation: str | None = None) -> ConversationLink:
    """A conversation with one customer message, escalated and opened (the interaction exists)."""
    conversation = infobip.add_conversation(conversation)
    infobip.message(conversation, "I want a human", created_at=at(0))
    link, created = services.escalate(services.EscalationRequest(conversation_id=conversation))
    assert created
    return link


def activate(*links: ConversationLink) -> list[ConversationLink]:
    for link in links:
        delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    fresh = [ConversationLink.objects.get(pk=link.pk) for link in links]
    assert all(link.state == State.ACTIVE for link in fresh), [link.last_error for link in fresh]
    return fresh


def post_ccaas(client, slug: str, events: list[dict]) -> object:
    body = json.dumps({"events": events}).encode()
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(SECRET, body).items()}
    return client.post(f"/webhooks/ccaas/{slug}/", data=body, content_type="application/json", **headers)


@pytest.fixture
def ccaas():
    server = WatchedCcaas(SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(ccaas):
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": ccaas.base_url, "mode": "webhook"},
        credentials={"secret": SECRET},
        is_default=True,
    )


@pytest.fixture
def retries(settings):
    """Retries fast enough for a test, slow enough that a failed head is visibly waiting."""
    settings.BRIDGE_RETRY_BASE_SECONDS = 0.2
    settings.BRIDGE_RETRY_MAX_SECONDS = 0.4
    settings.BRIDGE_RETRY_MAX_ATTEMPTS = 15
    return settings


# --- F1 ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f1_ccaas_500_five_times_blocks_only_its_conversation(
    client, inbound_url, fake_infobip, ccaas, endpoint, retries, caplog
):
    links = activate(*(open_handover(fake_infobip) for _ in range(3)))
    blocked = links[0]
    ccaas.fail("POST", rf"/bridge/interactions/{blocked.interaction_id}/messages", count=5, status=500)
    expected: dict[str, list[str]] = {}
    for n, link in enumerate(links):
        expected[link.interaction_id] = [f"c{n}-m{i}" for i in range(10)]
        for i, text in enumerate(expected[link.interaction_id]):
            body = fake_infobip.message(link.conversation_id, text, created_at=at(10 + i), store=False)
            assert client.post(inbound_url, body, content_type="application/json").status_code == 200

    started = time.monotonic()
    attempt_once(blocked, Delivery.Lane.TO_CCAAS)
    for link in links[1:]:
        delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    # the others went through at once; the blocked one waits with its error visible
    for link in links[1:]:
        assert ccaas.texts(link.interaction_id) == expected[link.interaction_id]
    assert ccaas.texts(blocked.interaction_id) == []
    head = Delivery.objects.filter(link=blocked, kind=Delivery.Kind.MESSAGE).order_by("sort_at").first()
    assert head.state == Delivery.Status.PENDING and head.attempts == 1
    assert "HTTP 500" in head.last_error and head.failing_since is not None
    assert "HTTP 500" in ConversationLink.objects.get(pk=blocked.pk).last_error
    assert HandoverEvent.objects.filter(link=blocked, kind="retry").count() == 1
    # the nine behind it were not tried: one in flight per lane, strictly in order
    assert not Delivery.objects.filter(link=blocked, kind=Delivery.Kind.MESSAGE, attempts__gt=0).exclude(
        pk=head.pk
    )

    drain_until_idle()
    elapsed = time.monotonic() - started
    for n, link in enumerate(links):
        assert_clean(
            f"F1 conversation {n}",
            ccaas.texts(link.interaction_id),
            expected[link.interaction_id],
            retransmits=ccaas.interactions[link.interaction_id]["duplicates"],
            seconds=round(elapsed, 2),
        )
        assert ccaas.max_active[link.interaction_id] == 1
    head.refresh_from_db()
    assert head.state == Delivery.Status.DONE and head.attempts == 6
    assert HandoverEvent.objects.filter(link=blocked, kind="retry").count() == 5
    assert HandoverEvent.objects.filter(link=blocked, kind="delivered", text__contains="6 attempts").exists()
    failures = [r for r in caplog.records if r.name == "bridge.delivery" and "HTTP 500" in r.getMessage()]
    assert len(failures) == 5 and all(str(blocked.pk) in r.getMessage() for r in failures)
    # the blocked conversation's messages went only after the others were all through
    first_blocked = min(
        ccaas.accepted_at[m["id"]] for m in ccaas.interactions[blocked.interaction_id]["messages"]
    )
    last_other = max(
        ccaas.accepted_at[m["id"]]
        for link in links[1:]
        for m in ccaas.interactions[link.interaction_id]["messages"]
    )
    assert last_other < first_blocked


# --- F2 ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f2_retry_after_is_honoured(client, inbound_url, fake_infobip, ccaas, endpoint, fast_retries):
    (link,) = activate(open_handover(fake_infobip))
    ccaas.fail(
        "POST",
        rf"/bridge/interactions/{link.interaction_id}/messages",
        status=429,
        headers={"Retry-After": "7"},
    )
    body = fake_infobip.message(link.conversation_id, "hello?", created_at=at(5), store=False)
    assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    before = datetime.now(UTC)
    delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
    row = Delivery.objects.get(link=link, kind=Delivery.Kind.MESSAGE)
    wait = (row.next_attempt_at - before).total_seconds()
    print(f"\nF2: next attempt {wait:.2f}s after a 429 with Retry-After: 7")
    assert row.state == Delivery.Status.PENDING and wait >= 7
    assert "HTTP 429" in row.last_error
    assert delivery.drain() == 0  # not due yet: nothing is sent early
    assert ccaas.texts(link.interaction_id) == []
    Delivery.objects.filter(pk=row.pk).update(next_attempt_at=F("next_attempt_at") - timedelta(seconds=7))
    drain_until_idle()
    assert_clean("F2", ccaas.texts(link.interaction_id), ["hello?"])


# --- F3 ------------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("action", ["reset", "hang"])
def test_f3_reset_or_hang_is_retried_without_duplicates(
    action, client, inbound_url, fake_infobip, ccaas, endpoint, retries
):
    retries.BRIDGE_HTTP_READ_TIMEOUT = 0.5
    (link,) = activate(open_handover(fake_infobip))
    ccaas.fail(
        "POST", rf"/bridge/interactions/{link.interaction_id}/messages", action=action, hang_seconds=1.5
    )
    texts = ["one", "two", "three"]
    for i, text in enumerate(texts):
        body = fake_infobip.message(link.conversation_id, text, created_at=at(10 + i), store=False)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    started = time.monotonic()
    head = attempt_once(link, Delivery.Lane.TO_CCAAS)
    assert head.attempts == 1 and head.state == Delivery.Status.PENDING
    assert ("timed out" if action == "hang" else "connection failed") in head.last_error
    drain_until_idle()
    # every attempt carried the same Idempotency-Key, so the target would drop a repeat
    keys = [r.headers["Idempotency-Key"] for r in ccaas.calls("POST", r"/bridge/interactions/.*/messages")]
    assert len(keys) == 4 and len(set(keys)) == 3
    assert_clean(
        f"F3 {action}", ccaas.texts(link.interaction_id), texts, seconds=round(time.monotonic() - started, 2)
    )


# --- F4 ------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_f4_same_webhook_twice_concurrently_and_later(live_server, settings, fake_infobip, ccaas, endpoint):
    (link,) = activate(open_handover(fake_infobip))
    url = f"{live_server.url}/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"
    body = fake_infobip.message(link.conversation_id, "only once", created_at=at(30), store=False)

    def post_many(n: int) -> list[int]:
        barrier = threading.Barrier(n)
        statuses: list[int] = []

        def one() -> None:
            barrier.wait(timeout=10)
            statuses.append(requests.post(url, json=body, timeout=30).status_code)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        return statuses

    started = time.monotonic()
    twice = [requests.post(url, json=body, timeout=30).status_code for _ in range(2)]
    concurrent = post_many(10)
    assert twice == [200, 200] and concurrent == [200] * 10, (twice, concurrent)
    assert Message.objects.filter(link=link, source="infobip", external_id=body["id"]).count() == 1
    assert Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE).count() == 1
    drain_until_idle()
    assert ccaas.texts(link.interaction_id) == ["only once"]

    # ten minutes later (moved back in the rows, not slept): still one message, one delivery
    ten = timedelta(minutes=10)
    Message.objects.filter(link=link).update(received_at=F("received_at") - ten)
    Delivery.objects.filter(link=link).update(
        created_at=F("created_at") - ten,
        done_at=F("done_at") - ten,
        next_attempt_at=F("next_attempt_at") - ten,
    )
    ConversationLink.objects.filter(pk=link.pk).update(last_activity_at=F("last_activity_at") - ten)
    later = [*post_many(10), requests.post(url, json=body, timeout=30).status_code]
    assert later == [200] * 11
    drain_until_idle()
    assert Message.objects.filter(link=link, source="infobip", external_id=body["id"]).count() == 1
    assert Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE).count() == 1
    assert_clean(
        "F4",
        ccaas.texts(link.interaction_id),
        ["only once"],
        posts=23,
        retransmits=ccaas.interactions[link.interaction_id]["duplicates"],
        seconds=round(time.monotonic() - started, 2),
    )


# --- F5 ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f5_bad_bodies_are_400_with_a_json_error_and_store_nothing(
    client, inbound_url, fake_infobip, ccaas, endpoint
):
    (link,) = activate(open_handover(fake_infobip))
    good = fake_infobip.message(link.conversation_id, "secret text", created_at=at(40), store=False)
    partial = {k: v for k, v in good.items() if k not in ("conversationId", "createdAt")}
    counts = (Message.objects.count(), Delivery.objects.count(), InboundEvent.objects.count())
    cases = {
        "malformed JSON": (b'{"id": "x", "content": ', "application/json"),
        "missing fields": (json.dumps(partial).encode(), "application/json"),
        "not an object": (b'"just a string"', "application/json"),
        "wrong content type": (json.dumps(good).encode(), "text/plain"),
        "form encoded": (b"id=1&text=secret", "application/x-www-form-urlencoded"),
    }
    for name, (data, content_type) in cases.items():
        response = client.post(inbound_url, data=data, content_type=content_type)
        assert response.status_code == 400, (name, response.status_code, response.content)
        assert response["Content-Type"].startswith("application/json"), name
        assert response.json().get("error"), name
    # the same on the contact-center webhook (signed, so only the body is wrong)
    for name, data in {
        "malformed JSON": b'{"events": [',
        "no events list": b'{"event": {}}',
        "event without id": json.dumps({"events": [{"type": "agent_message"}]}).encode(),
        "agent message without content": json.dumps(
            {"events": [{"id": "e1", "type": "agent_message", "interactionId": link.interaction_id}]}
        ).encode(),
    }.items():
        headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in sign(SECRET, data).items()}
        response = client.post("/webhooks/ccaas/acme/", data=data, content_type="application/json", **headers)
        assert response.status_code == 400, (name, response.status_code, response.content)
        assert response.json().get("error"), name
    assert (Message.objects.count(), Delivery.objects.count(), InboundEvent.objects.count()) == counts
    assert not Message.objects.filter(content__text="secret text").exists()
    print(f"\nF5: {len(cases) + 4} bad bodies, all 400 with a JSON error, 0 rows stored")


# --- F7 ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f7_messages_of_conversations_never_escalated_are_not_kept(
    client, inbound_url, fake_infobip, ccaas, endpoint
):
    (link,) = activate(open_handover(fake_infobip))  # one handover exists, for another conversation
    strangers = [fake_infobip.add_conversation() for _ in range(3)]
    for n, conversation in enumerate(strangers):
        for i in range(3):
            body = fake_infobip.message(conversation, f"private words {n}-{i}", created_at=at(i), store=False)
            response = client.post(inbound_url, body, content_type="application/json")
            assert response.status_code == 200 and response.json()["stored"] == 0
    # the same through Infobip's Subscriptions events (INBOUND_MESSAGE envelope)
    envelope = load_fixture("infobip", "webhook_inbound_message_event")
    for n, conversation in enumerate(strangers):
        event = json.loads(json.dumps(envelope))
        event["payload"]["id"] = event["payload"]["message"]["conversationId"] = conversation
        event["payload"]["message"]["id"] = event["payload"]["message"]["messageId"] = f"ev-{n}"
        event["payload"]["message"]["content"] = {"text": f"private words by event {n}"}
        response = client.post(inbound_url, event, content_type="application/json")
        assert response.status_code == 200, response.content
    drain_until_idle()
    assert not Message.objects.exclude(link=link).exists()
    assert not [m for m in Message.objects.all() if "private words" in json.dumps(m.content)]
    assert not [e for e in InboundEvent.objects.all() if "private words" in json.dumps(e.payload)]
    assert ccaas.calls("POST", r"/bridge/interactions/.*/messages") == []
    assert not ConversationLink.objects.filter(conversation_id__in=strangers).exists()
    print(
        "\nF7: 9 webhook messages and 3 events of 3 conversations never escalated: 200, 0 forwarded, 0 kept"
    )


# --- F8 ------------------------------------------------------------------------------------------
def run_workers(count: int, timeout: float) -> None:
    """`count` threads acting as queue workers: each drives whatever lane is due, concurrently."""
    errors: list[BaseException] = []
    deadline = time.monotonic() + timeout

    def worker() -> None:
        try:
            while time.monotonic() < deadline:
                lanes = list(
                    Delivery.objects.exclude(state__in=Delivery.TERMINAL_STATES)
                    .values_list("link_id", "lane")
                    .distinct()
                )
                if not lanes:
                    return
                for link_id, lane in lanes:
                    delivery.drive_lane(link_id, lane)
                time.sleep(0.01)
        except BaseException as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_f8_concurrent_posts_are_delivered_in_created_at_order(live_server, settings, fake_infobip, endpoint):
    ccaas = WatchedCcaas(SECRET, delay=0.03).start()
    try:
        CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
            config={"base_url": ccaas.base_url, "mode": "webhook"}
        )
        links = activate(*(open_handover(fake_infobip) for _ in range(3)))
        url = f"{live_server.url}/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"
        main, others = links[0], links[1:]
        bodies = [
            fake_infobip.message(main.conversation_id, f"m{i:02d}", created_at=at(100 + i), store=False)
            for i in range(20)
        ]
        expected_other = {
            link.interaction_id: [f"{link.interaction_id}-{i}" for i in range(5)] for link in others
        }
        other_bodies = [
            fake_infobip.message(link.conversation_id, text, created_at=at(100 + i), store=False)
            for link in others
            for i, text in enumerate(expected_other[link.interaction_id])
        ]
        barrier = threading.Barrier(20)
        m11_posted = threading.Event()
        statuses: list[int] = []

        def post(i: int) -> None:
            barrier.wait(timeout=10)
            if i == 10:  # m10 reaches the bridge only after m11 (reverse createdAt order)
                m11_posted.wait(timeout=20)
            statuses.append(requests.post(url, json=bodies[i], timeout=30).status_code)
            if i == 11:
                m11_posted.set()

        started = time.monotonic()
        threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for body in other_bodies:
            statuses.append(requests.post(url, json=body, timeout=30).status_code)
        for t in threads:
            t.join(timeout=60)
        assert statuses == [200] * 30
        ten, eleven = (Message.objects.get(external_id=bodies[i]["id"]) for i in (10, 11))
        assert eleven.received_at <= ten.received_at  # it did arrive in reverse order

        run_workers(3, timeout=60)
        elapsed = time.monotonic() - started
        assert_clean(
            "F8 conversation with 20 concurrent posts",
            ccaas.texts(main.interaction_id),
            [f"m{i:02d}" for i in range(20)],
            seconds=round(elapsed, 2),
            max_in_flight_per_interaction=max(ccaas.max_active.values()),
            max_in_flight_total=ccaas.max_total_active,
        )
        for link in others:
            assert_clean(
                "F8 other conversation", ccaas.texts(link.interaction_id), expected_other[link.interaction_id]
            )
        assert max(ccaas.max_active.values()) == 1  # one in flight per conversation
        assert ccaas.max_total_active >= 2  # while other conversations proceeded in parallel
    finally:
        ccaas.stop()


@pytest.mark.django_db(transaction=True)
def test_f8_concurrent_agent_replies_are_delivered_in_the_contact_centers_order(
    live_server, fake_infobip, ccaas, endpoint
):
    """The agent side of F8: 20 replies posted to the contact-center webhook by 20 threads at once,
    two of them in reverse order of the contact center's createdAt: the customer gets them in that
    order, whichever request the bridge stored first."""
    (link,) = activate(open_handover(fake_infobip))
    url = f"{live_server.url}/webhooks/ccaas/{endpoint.slug}/"
    events = []
    for i in range(20):
        event = ccaas.agent_says(link.interaction_id, f"a{i:02d}")
        event["message"]["createdAt"] = at(100 + i)
        events.append(event)
    barrier = threading.Barrier(20)
    a11_posted = threading.Event()
    statuses: list[int] = []

    def post(i: int) -> None:
        body = json.dumps({"events": [events[i]]}).encode()
        barrier.wait(timeout=10)
        if i == 10:  # a10 reaches the bridge only after a11
            a11_posted.wait(timeout=20)
        headers = {"Content-Type": "application/json", **sign(SECRET, body)}
        statuses.append(requests.post(url, data=body, headers=headers, timeout=30).status_code)
        if i == 11:
            a11_posted.set()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert statuses == [200] * 20
    ten, eleven = (Message.objects.get(external_id=events[i]["message"]["id"]) for i in (10, 11))
    assert eleven.pk < ten.pk  # it was stored in reverse order
    run_workers(3, timeout=60)
    sent = [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)]
    assert_clean("F8 agent replies posted concurrently", sent, [f"a{i:02d}" for i in range(20)])


# --- F11 ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f11_infobip_503_for_a_while_then_agent_replies_in_order(
    client, fake_infobip, ccaas, endpoint, retries
):
    (link,) = activate(open_handover(fake_infobip))
    fake_infobip.fail("POST", rf"/ccaas/1/conversations/{link.conversation_id}/messages", count=4, status=503)
    replies = [f"agent {i}" for i in range(5)]
    events = [ccaas.agent_says(link.interaction_id, text) for text in replies]
    assert post_ccaas(client, "acme", events).status_code == 200
    started = time.monotonic()
    head = attempt_once(link, Delivery.Lane.TO_INFOBIP)
    assert head.state == Delivery.Status.PENDING and "HTTP 503" in head.last_error
    assert fake_infobip.sent_to_customer(link.conversation_id) == []
    drain_until_idle()
    head.refresh_from_db()
    assert head.attempts == 5 and head.state == Delivery.Status.DONE
    sent = [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)]
    assert_clean("F11", sent, replies, seconds=round(time.monotonic() - started, 2))


# --- F12 / F13 -----------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f12_down_past_the_schedule_is_dead_visible_and_retryable_in_order(
    client, inbound_url, fake_infobip, ccaas, endpoint, fast_retries
):
    fast_retries.BRIDGE_RETRY_MAX_ATTEMPTS = 3
    (link,) = activate(open_handover(fake_infobip))
    fault = ccaas.fail(
        "POST", rf"/bridge/interactions/{link.interaction_id}/messages", count=1000, status=503
    )
    texts = [f"m{i}" for i in range(5)]
    for i, text in enumerate(texts):
        body = fake_infobip.message(link.conversation_id, text, created_at=at(10 + i), store=False)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    drain_until_idle()
    rows = list(Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE).order_by("sort_at"))
    assert [r.state for r in rows] == [Delivery.Status.DEAD] * 5
    assert rows[0].attempts == 3 and "gave up after 3 attempts" in rows[0].last_error
    assert all("held behind dead delivery" in r.last_error and r.attempts == 0 for r in rows[1:])
    assert HandoverEvent.objects.filter(link=link, kind="dead_letter").exists()
    link.refresh_from_db()
    assert "HTTP 503" in link.last_error
    assert handover_json(link)["deliveriesDead"] == 5

    fault.count = 0  # the contact center is back; an operator presses retry
    assert services.retry_failed(link, actor="admin") == 5
    drain_until_idle()
    assert_clean("F12 after retry", ccaas.texts(link.interaction_id), texts)


@pytest.mark.django_db
def test_f13_permanent_4xx_kills_one_message_after_one_attempt(
    client, inbound_url, fake_infobip, ccaas, endpoint, fast_retries
):
    (link,) = activate(open_handover(fake_infobip))
    texts = [f"m{i}" for i in range(5)]
    for i, text in enumerate(texts):
        body = fake_infobip.message(link.conversation_id, text, created_at=at(10 + i), store=False)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    # the third message is refused for good (422); policy: it is dead-lettered, the rest go on
    third = Message.objects.get(link=link, content__text="m2").external_id
    original = ccaas._message

    def refuse_third(req, interaction_id):
        if (req.json or {}).get("id") == third:
            return 422, {"error": "content not acceptable"}
        return original(req, interaction_id)

    ccaas.routes = [(m, p, refuse_third if f == original else f) for m, p, f in ccaas.routes]
    drain_until_idle()
    dead = Delivery.objects.get(message__external_id=third)
    assert dead.state == Delivery.Status.DEAD and dead.attempts == 1
    assert "permanent error" in dead.last_error and "HTTP 422" in dead.last_error
    assert HandoverEvent.objects.filter(link=link, kind="dead_letter", text__contains="422").exists()
    assert_clean("F13 (m2 refused)", ccaas.texts(link.interaction_id), ["m0", "m1", "m3", "m4"])


# --- F17 -----------------------------------------------------------------------------------------
class SlowEventsCcaas(FakeGenericCcaas):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.polling = 0
        self.max_polling = 0

    def _events(self, req):
        with self.lock:
            self.polling += 1
            self.max_polling = max(self.max_polling, self.polling)
        try:
            time.sleep(0.3)
            return super()._events(req)
        finally:
            with self.lock:
                self.polling -= 1


@pytest.mark.django_db(transaction=True)
def test_f17_two_polls_at_once_never_run_concurrently(fake_infobip, fast_retries):
    ccaas = SlowEventsCcaas(SECRET).start()
    try:
        endpoint = CcaasEndpoint.objects.create(
            slug="pollme",
            kind="generic",
            config={"base_url": ccaas.base_url, "mode": "poll"},
            credentials={"secret": SECRET},
            is_default=True,
        )
        (link,) = activate(open_handover(fake_infobip))
        texts = [f"reply {i}" for i in range(6)]
        for text in texts:
            ccaas.agent_says(link.interaction_id, text)
        results: list[object] = []

        def poll() -> None:
            try:
                results.append(periodic.poll_endpoint(endpoint.pk))
            finally:
                connection.close()

        for _ in range(3):  # three rounds of two polls started at once
            threads = [threading.Thread(target=poll) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        drain_until_idle()
        assert ccaas.max_polling == 1
        assert sum(1 for r in results if r is None) >= 1  # a poll found the other running and stood back
        sent = [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)]
        assert_clean("F17", sent, texts, polls=len(ccaas.calls("GET", r"/bridge/events")))
    finally:
        ccaas.stop()


# --- F18 -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f18_overlapping_and_out_of_order_pages_forward_each_reply_once_in_order(
    fake_infobip, ccaas, endpoint, fast_retries
):
    (link,) = activate(open_handover(fake_infobip))
    events = [ccaas.agent_says(link.interaction_id, f"reply {i}") for i in range(6)]
    connector_events = [
        get_connector(endpoint)._event(e)
        for e in events  # the generic parser, as a poll does
    ]
    # pages [0..3], then an overlapping [2..5], then an old page [0..1] again
    services.ingest_events(endpoint, connector_events[0:4], cursor="4")
    services.ingest_events(endpoint, connector_events[2:6], cursor="6")
    services.ingest_events(endpoint, connector_events[0:2], cursor="6")
    drain_until_idle()
    sent = [m["content"]["text"] for m in fake_infobip.sent_to_customer(link.conversation_id)]
    assert_clean("F18", sent, [f"reply {i}" for i in range(6)])


# --- F19 -----------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("ccaas_accepts_after_close", [True, False])
def test_f19_agent_closes_with_customer_messages_in_flight(
    ccaas_accepts_after_close, client, inbound_url, fake_infobip, ccaas, endpoint, retries
):
    (link,) = activate(open_handover(fake_infobip))
    path = rf"/bridge/interactions/{link.interaction_id}/messages"
    texts = [f"late {i}" for i in range(4)]
    for i, text in enumerate(texts):
        body = fake_infobip.message(link.conversation_id, text, created_at=at(10 + i), store=False)
        assert client.post(inbound_url, body, content_type="application/json").status_code == 200
    if ccaas_accepts_after_close:
        ccaas.fail("POST", path, count=2, status=502)
        attempt_once(link, Delivery.Lane.TO_CCAAS)  # the head is retrying when the close comes
        assert Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE, attempts=1).exists()
    assert Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE).exclude(
        state__in=Delivery.TERMINAL_STATES
    ).count() == len(texts)
    assert post_ccaas(client, "acme", [ccaas.agent_closes(link.interaction_id)]).status_code == 200
    if not ccaas_accepts_after_close:  # the interaction is gone: the contact center refuses for good
        ccaas.fail("POST", path, count=100, status=410, body={"error": "interaction is closed"})
    link.refresh_from_db()
    assert link.state == State.CLOSING
    # the close waits behind the messages still in flight
    close = Delivery.objects.get(link=link, kind=Delivery.Kind.CLOSE_INFOBIP)
    assert close.state == Delivery.Status.PENDING

    drain_until_idle()
    link.refresh_from_db()
    rows = list(Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE).order_by("sort_at"))
    if ccaas_accepts_after_close:
        assert_clean("F19 (accepted)", ccaas.texts(link.interaction_id), texts)
        assert all(r.state == Delivery.Status.DONE for r in rows)
    else:  # refused for good: each is reported dead with the reason, none silently dropped
        assert all(
            r.state == Delivery.Status.DEAD and "HTTP 410" in r.last_error and r.attempts == 1 for r in rows
        )
        assert HandoverEvent.objects.filter(link=link, kind="dead_letter").count() == len(texts)
        print(f"\nF19 (refused): {len(rows)} messages reported DEAD with the contact center's reason")
    assert link.state == State.CLOSED
    assert fake_infobip.conversations[link.conversation_id]["status"] == "CLOSED"
    # and the Infobip conversation was closed only after every message had its outcome
    close.refresh_from_db()
    assert all(r.done_at <= close.done_at for r in rows)
    kinds = list(HandoverEvent.objects.filter(link=link).values_list("kind", flat=True))
    assert kinds[-1] == "closed"


# --- F20 -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_f20_escalation_of_a_conversation_closed_on_infobip_fails_and_sends_nothing(
    api, fake_infobip, ccaas, endpoint
):
    conversation = fake_infobip.add_conversation(status="CLOSED")
    fake_infobip.message(conversation, "old", created_at=at(0))
    response = api.post("/api/escalations/", {"conversationId": conversation}, format="json")
    assert response.status_code == 202
    drain_until_idle()
    link = ConversationLink.objects.get(pk=response.json()["id"])
    assert link.state == State.FAILED and "already closed on Infobip" in link.last_error
    assert Delivery.objects.get(link=link, kind=Delivery.Kind.OPEN).state == Delivery.Status.DEAD
    assert HandoverEvent.objects.filter(link=link, kind="failed").exists()
    assert ccaas.requests == []
    assert not fake_infobip.sent_to_customer(conversation)
    print("\nF20: escalation of a closed conversation: FAILED, 0 requests to the contact center")
