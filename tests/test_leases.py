"""Leases: a call slower than the lease is made once; a killed worker's delivery resumes after one
short lease. Real loopback contact center (slow on purpose), real threads or real `qcluster`
processes racing for the same lane, the way the ticker and a second worker would."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import connections
from django.utils import timezone

from bridge import delivery, services
from bridge.handlers import HANDLERS
from bridge.infobip.events import parse_message
from bridge.models import CcaasEndpoint, Delivery, HandoverEvent, State
from bridge.types import AgentMessage, CcaasEvent, EventType
from tests import procs
from tests.test_faults import SECRET, WatchedCcaas, activate, assert_clean, at, open_handover

procs.use_file_sqlite()

pytestmark = pytest.mark.django_db(transaction=True)

TO_CCAAS = Delivery.Lane.TO_CCAAS


def endpoint_for(ccaas: WatchedCcaas) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": ccaas.base_url, "mode": "webhook"},
        credentials={"secret": SECRET},
        is_default=True,
    )


def customer_says(infobip, link, texts: list[str], start: float = 10) -> None:
    services.record_inbound(
        [
            parse_message(infobip.message(link.conversation_id, text, created_at=at(start + i), store=False))
            for i, text in enumerate(texts)
        ]
    )


def message_posts(ccaas: WatchedCcaas, link) -> int:
    return len(ccaas.calls("POST", rf"/bridge/interactions/{link.interaction_id}/messages"))


@pytest.mark.parametrize("latency", [2.5, 4.0])
def test_a_call_slower_than_the_lease_is_made_once(settings, fake_infobip, latency):
    """BRIDGE_LEASE_SECONDS=1 and a contact center answering in 2.5 s (and in 4 s, near the read
    timeout): while the first worker waits, a second worker and the sweeper drive the lane every
    0.2 s. Each message is POSTed exactly once, one at a time, and recorded by its worker."""
    settings.BRIDGE_LEASE_SECONDS = 1
    settings.BRIDGE_HTTP_READ_TIMEOUT = 5
    ccaas = WatchedCcaas(SECRET, delay=latency).start()
    try:
        endpoint_for(ccaas)
        (link,) = activate(open_handover(fake_infobip))
        texts = ["slow one", "slow two"]
        customer_says(fake_infobip, link, texts)

        def worker() -> None:
            try:
                delivery.drive_lane(link.pk, TO_CCAAS)
            finally:
                connections.close_all()

        first = threading.Thread(target=worker)
        first.start()
        rivals = 0
        deadline = time.monotonic() + 60  # bounded: two workers taking turns would never finish
        while first.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            for link_id, lane in delivery.due_lanes():  # the ticker's sweep
                rivals += delivery.drive_lane(link_id, lane)
            rivals += delivery.drive_lane(link.pk, TO_CCAAS)  # a duplicate task on another worker
        first.join(timeout=30)

        assert rivals == 0
        assert message_posts(ccaas, link) == len(texts)
        assert ccaas.max_active[link.interaction_id] == 1
        rows = Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE)
        assert sorted(rows.values_list("state", "attempts")) == [(Delivery.Status.DONE, 1)] * len(texts)
        assert_clean(
            f"slow call ({latency}s, lease 1s)",
            ccaas.texts(link.interaction_id),
            texts,
            posts=message_posts(ccaas, link),
            retransmits=ccaas.interactions[link.interaction_id]["duplicates"],
        )
    finally:
        ccaas.stop()


def test_a_worker_that_lost_its_lease_records_nothing_and_sends_no_further_part(
    fake_infobip, generic_endpoint
):
    """Fencing: a worker whose claim was taken over (it stalled past its lease) cannot record an
    outcome, and a multi-part agent message stops at the part it was sending."""
    link = activate(open_handover(fake_infobip))[0]
    ccaas_event = {
        "id": "agent-1",
        "text": "see the two files",
        "attachments": [
            {"url": "https://files.example.com/a.pdf", "mimeType": "application/pdf", "filename": "a.pdf"},
            {"url": "https://files.example.com/b.pdf", "mimeType": "application/pdf", "filename": "b.pdf"},
        ],
    }
    services.ingest_events(
        link.endpoint,
        [
            CcaasEvent(
                id="ev-1",
                type=EventType.AGENT_MESSAGE,
                interaction_id=link.interaction_id,
                message=AgentMessage(
                    id=ccaas_event["id"],
                    content_type="TEXT",
                    content={"text": ccaas_event["text"], "attachments": ccaas_event["attachments"]},
                ),
                raw=ccaas_event,
            )
        ],
    )
    stalled = delivery.claim_next(link.pk, Delivery.Lane.TO_INFOBIP)
    assert stalled is not None
    # Its lease ran out and another worker took the delivery over.
    Delivery.objects.filter(pk=stalled.pk).update(lease_token="someone-else", lease_until=timezone.now())
    delivery.run(stalled, HANDLERS[stalled.kind])
    sent = fake_infobip.sent_to_customer(link.conversation_id)
    assert len(sent) == 1  # the part in flight when it woke up, and no further part
    row = Delivery.objects.get(pk=stalled.pk)
    assert (row.state, row.lease_token, row.payload.get("parts_sent")) == (
        Delivery.Status.IN_FLIGHT,
        "someone-else",
        None,
    )


# --- real processes -------------------------------------------------------------------------------
@pytest.fixture
def clusters(transactional_db, tmp_path):
    started: list[procs.BridgeProcess] = []

    def start(**env: str) -> procs.BridgeProcess:
        process = procs.qcluster(tmp_path, name=f"qcluster-{len(started)}", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
    for process in started:
        print(f"--- {process.log_path.name} (tail) ---\n{process.log_tail(3000)}")


def wait_for(predicate, timeout: float, message: str):
    last_kick = 0.0

    def check():
        nonlocal last_kick
        if time.monotonic() - last_kick > 2:
            procs.kick_ticker()
            last_kick = time.monotonic()
        return predicate()

    return procs.wait_until(check, timeout, interval=0.2, message=message)


@pytest.mark.slow
def test_a_real_cluster_makes_a_slow_call_once(clusters, fake_infobip):
    """The reported case, with real processes: a 2 s lease, a contact center answering in 5 s, a
    cluster of two workers and its ticker re-driving lanes every 0.5 s: each message POSTed once."""
    ccaas = WatchedCcaas(SECRET, delay=5).start()
    try:
        endpoint_for(ccaas)
        (link,) = activate(open_handover(fake_infobip))
        texts = ["one", "two"]
        customer_says(fake_infobip, link, texts)
        clusters(INFOBIP_BASE_URL=fake_infobip.url, BRIDGE_LEASE_SECONDS="2")
        wait_for(
            lambda: (
                Delivery.objects.filter(link=link, state=Delivery.Status.DONE, kind="MESSAGE").count() == 2
            ),
            90,
            "both slow messages delivered",
        )
        time.sleep(1.5)  # a repeat would show up here
        assert message_posts(ccaas, link) == len(texts)
        assert ccaas.max_active[link.interaction_id] == 1
        assert list(
            Delivery.objects.filter(link=link, kind="MESSAGE").values_list("attempts", flat=True)
        ) == [1, 1]
        assert_clean(
            "slow call, real cluster (5s, lease 2s)",
            ccaas.texts(link.interaction_id),
            texts,
            posts=message_posts(ccaas, link),
        )
    finally:
        ccaas.stop()


@pytest.mark.slow
def test_a_killed_workers_delivery_resumes_within_one_default_lease(clusters, fake_infobip, settings):
    """SIGKILL a cluster while a delivery hangs, with the default lease (10 s): the claim it left
    expires at most one lease after the kill, and a new cluster delivers the message once."""
    lease = 10
    assert lease == settings.BRIDGE_LEASE_SECONDS  # the documented default
    ccaas = WatchedCcaas(SECRET).start()
    try:
        endpoint_for(ccaas)
        (link,) = activate(open_handover(fake_infobip))
        path = rf"/bridge/interactions/{link.interaction_id}/messages"
        hang = ccaas.fail("POST", path, action="hang", hang_seconds=25)
        customer_says(fake_infobip, link, ["hello?"])
        first = clusters(INFOBIP_BASE_URL=fake_infobip.url, BRIDGE_LEASE_SECONDS=str(lease))
        wait_for(lambda: hang.count == 0, 60, "the message to reach the hanging contact center")
        time.sleep(lease / 2)  # the heartbeat has renewed the lease by now
        first.kill()
        killed_at = timezone.now()
        head = Delivery.objects.get(link=link, kind="MESSAGE")
        assert head.state == Delivery.Status.IN_FLIGHT
        assert (head.lease_until - killed_at).total_seconds() <= lease

        clusters(INFOBIP_BASE_URL=fake_infobip.url, BRIDGE_LEASE_SECONDS=str(lease))
        wait_for(lambda: ccaas.texts(link.interaction_id) == ["hello?"], 90, "delivery after the restart")
        accepted = [r for r in ccaas.calls("POST", path) if r.at > killed_at.timestamp()]
        resumed = datetime.fromtimestamp(accepted[0].at, UTC)
        assert resumed >= head.lease_until
        wait_for(
            lambda: Delivery.objects.get(pk=head.pk).state == Delivery.Status.DONE, 30, "the outcome recorded"
        )
        assert Delivery.objects.get(pk=head.pk).attempts == 2
        assert HandoverEvent.objects.filter(link=link, kind="delivered", text__contains="2 attempts").exists()
        assert link.__class__.objects.get(pk=link.pk).state == State.ACTIVE
        print(
            f"\nkill -> resumed: {(resumed - killed_at).total_seconds():.1f}s "
            f"(lease {lease}s, lease left at the kill {(head.lease_until - killed_at).total_seconds():.1f}s)"
        )
    finally:
        ccaas.stop()
