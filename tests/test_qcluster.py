"""Real processes: `manage.py qcluster` subprocesses against the test database, the HTTP views on a
live server and the loopback fakes. Nothing here calls drain(): the cluster does all the work.

Faults F9 and F14 of docs/reliability.md. F9 kills the cluster (SIGKILL, the whole process group)
while a delivery hangs at the contact center, restarts it, and checks the delivery is made after its lease expired, once. F14 stops a
cluster with 1,000 deliveries pending (SIGTERM, then SIGKILL) and restarts it. The end-to-end test
runs a whole handover through the public HTTP surface with compressed timers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.utils import timezone

from bridge import delivery, services
from bridge.demo.fakes import FakeGenericCcaas
from bridge.infobip.events import parse_message
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, HandoverEvent, Message, State
from tests import procs
from tests.test_faults import SECRET, WatchedCcaas, assert_clean, at, open_handover

procs.use_file_sqlite()

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def clusters(transactional_db, tmp_path):
    """Start qcluster subprocesses; every one is killed (whole group) when the test ends."""
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


def wait_for(predicate, timeout: float, message: str, *, kick: bool = True):
    """Wait for `predicate`, standing in for the once-a-minute schedule that restarts the ticker."""
    last_kick = 0.0

    def check():
        nonlocal last_kick
        if kick and time.monotonic() - last_kick > 2:
            procs.kick_ticker()
            last_kick = time.monotonic()
        return predicate()

    return procs.wait_until(check, timeout, interval=0.2, message=message)


def endpoint_for(ccaas: FakeGenericCcaas) -> CcaasEndpoint:
    return CcaasEndpoint.objects.create(
        slug="acme",
        kind="generic",
        config={"base_url": ccaas.base_url, "mode": "webhook"},
        credentials={"secret": SECRET},
        is_default=True,
    )


# --- F9 ------------------------------------------------------------------------------------------
def test_f9_worker_killed_mid_delivery_is_redelivered_after_the_lease(clusters, fake_infobip, settings):
    ccaas = WatchedCcaas(SECRET).start()
    try:
        endpoint_for(ccaas)
        link = open_handover(fake_infobip)
        delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
        link.refresh_from_db()
        assert link.state == State.ACTIVE
        path = rf"/bridge/interactions/{link.interaction_id}/messages"
        hang = ccaas.fail("POST", path, action="hang", hang_seconds=15)
        texts = [f"m{i}" for i in range(3)]
        services.record_inbound(
            [
                parse_message(
                    fake_infobip.message(link.conversation_id, t, created_at=at(10 + i), store=False)
                )
                for i, t in enumerate(texts)
            ]
        )

        first = clusters(INFOBIP_BASE_URL=fake_infobip.url)
        wait_for(lambda: hang.count == 0, 30, "the first message to reach the hanging contact center")
        head = Delivery.objects.filter(link=link, kind=Delivery.Kind.MESSAGE).order_by("sort_at").first()
        assert head.state == Delivery.Status.IN_FLIGHT and head.attempts == 1
        time.sleep(0.3)
        first.kill()  # SIGKILL the cluster and its workers mid-delivery
        killed_at = timezone.now()
        head.refresh_from_db()
        assert head.state == Delivery.Status.IN_FLIGHT and head.lease_until is not None
        lease_until = head.lease_until
        assert ccaas.texts(link.interaction_id) == []

        clusters(INFOBIP_BASE_URL=fake_infobip.url)
        wait_for(
            lambda: len(ccaas.texts(link.interaction_id)) == len(texts), 60, "delivery after the restart"
        )
        wait_for(
            lambda: not Delivery.objects.exclude(state__in=Delivery.TERMINAL_STATES).exists(),
            30,
            "nothing left in flight",
        )
        accepted = [
            r
            for r in ccaas.calls("POST", path)
            if r.json and r.json["id"] == head.message.external_id and r.at > killed_at.timestamp() + 0.01
        ]
        redelivered_at = datetime.fromtimestamp(accepted[0].at, UTC)
        head.refresh_from_db()
        assert redelivered_at >= lease_until  # not before the dead worker's lease ran out
        assert head.state == Delivery.Status.DONE and head.attempts == 2
        assert HandoverEvent.objects.filter(link=link, kind="delivered", text__contains="2 attempts").exists()
        assert not Delivery.objects.filter(state=Delivery.Status.IN_FLIGHT).exists()
        assert ccaas.max_active[link.interaction_id] == 1
        assert_clean(
            "F9",
            ccaas.texts(link.interaction_id),
            texts,
            retransmits=ccaas.interactions[link.interaction_id]["duplicates"],
            lease_seconds=procs.FAST_ENV["BRIDGE_LEASE_SECONDS"],
            seconds_from_kill_to_redelivery=round((redelivered_at - killed_at).total_seconds(), 2),
        )
    finally:
        ccaas.stop()


# --- F14 -----------------------------------------------------------------------------------------
def test_f14_thousand_pending_deliveries_survive_sigterm_then_sigkill(clusters, fake_infobip):
    ccaas = WatchedCcaas(SECRET).start()
    try:
        endpoint_for(ccaas)
        links = [open_handover(fake_infobip) for _ in range(10)]
        for link in links:
            delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS)
        links = [ConversationLink.objects.get(pk=link.pk) for link in links]
        assert all(link.state == State.ACTIVE for link in links)
        expected = {
            link.interaction_id: [f"{link.interaction_id}-{i:03d}" for i in range(100)] for link in links
        }
        base = timezone.now() - timedelta(minutes=5)
        for link in links:  # 1,000 pending deliveries written at once (as a backlog would be)
            rows = Message.objects.bulk_create(
                Message(
                    link=link,
                    source=Message.Source.INFOBIP,
                    direction=Message.Direction.INBOUND,
                    external_id=f"{link.pk}-{i}",
                    infobip_message_id=f"{link.pk}-{i}",
                    content={"text": text},
                    created_at=base + timedelta(milliseconds=i),
                )
                for i, text in enumerate(expected[link.interaction_id])
            )
            Delivery.objects.bulk_create(
                Delivery(
                    link=link,
                    message=row,
                    kind=Delivery.Kind.MESSAGE,
                    lane=Delivery.Lane.TO_CCAAS,
                    sort_at=row.created_at,
                    created_at=base,
                )
                for row in rows
            )
        assert Delivery.objects.filter(state=Delivery.Status.PENDING).count() == 1000
        started = time.monotonic()
        first = clusters(INFOBIP_BASE_URL=fake_infobip.url)
        wait_for(
            lambda: Delivery.objects.filter(state=Delivery.Status.DONE, kind="MESSAGE").count() >= 100,
            60,
            "some progress",
        )
        first.stop(grace=1.0)  # SIGTERM, then SIGKILL after 1 s
        done_at_stop = Delivery.objects.filter(state=Delivery.Status.DONE, kind="MESSAGE").count()
        clusters(INFOBIP_BASE_URL=fake_infobip.url)
        wait_for(
            lambda: Delivery.objects.filter(state=Delivery.Status.DONE, kind="MESSAGE").count() == 1000,
            150,
            "all 1,000 delivered",
        )
        elapsed = time.monotonic() - started
        assert not Delivery.objects.exclude(state=Delivery.Status.DONE).exists()
        received = {
            iid: [m["content"]["text"] for m in i["messages"]] for iid, i in ccaas.interactions.items()
        }
        for iid, texts in expected.items():
            assert_clean(f"F14 {iid}", received[iid], texts)
        assert max(ccaas.max_active.values()) == 1  # one in flight per conversation, across both clusters
        print(
            f"\nF14: 1000 delivered, {done_at_stop} before the stop, "
            f"{sum(i['duplicates'] for i in ccaas.interactions.values())} retransmits, {elapsed:.1f}s"
        )
    finally:
        ccaas.stop()


# --- end to end ----------------------------------------------------------------------------------
def test_a_whole_handover_driven_only_by_the_cluster(clusters, live_server, settings, fake_infobip):
    ccaas = FakeGenericCcaas(SECRET, webhook_url=f"{live_server.url}/webhooks/ccaas/acme/").start()
    try:
        endpoint_for(ccaas)
        fake_infobip.webhook_url = f"{live_server.url}/webhooks/infobip/{settings.BRIDGE_INBOUND_TOKEN}/"
        conversation = fake_infobip.add_conversation(tags=["vip"])
        fake_infobip.message(conversation, "I need a human", created_at=at(0))
        clusters(INFOBIP_BASE_URL=fake_infobip.url)
        timings: dict[str, float] = {}
        started = time.monotonic()

        def step(name: str) -> None:
            timings[name] = round(time.monotonic() - started, 2)

        response = requests.post(
            f"{live_server.url}/api/escalations/",
            json={"conversationId": conversation, "context": {"displayName": "Ana"}},
            headers={"Authorization": f"Bearer {settings.BRIDGE_API_TOKEN}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        handover_id = response.json()["id"]

        def handover() -> dict:
            return requests.get(
                f"{live_server.url}/api/handovers/{handover_id}/",
                headers={"Authorization": f"Bearer {settings.BRIDGE_API_TOKEN}"},
                timeout=30,
            ).json()

        wait_for(lambda: handover()["state"] == "ACTIVE", 60, "the interaction to open")
        step("opened")
        interaction_id = handover()["interactionId"]
        opened = ccaas.interactions[interaction_id]["open"]
        assert [m["content"]["text"] for m in opened["history"]] == ["I need a human"]
        assert ccaas.agent_accepts(interaction_id).get("type") == "accepted"

        customer = ["first", "second", "third"]
        for text in customer:
            fake_infobip.customer_says(conversation, text)
        wait_for(
            lambda: len(ccaas.interactions[interaction_id]["messages"]) >= 3,
            60,
            "customer messages delivered",
        )
        step("customer messages delivered")
        agent = ["Hello Ana", "How can I help?"]
        for text in agent:
            ccaas.agent_says(interaction_id, text)  # POSTed, signed, to the live webhook
        wait_for(lambda: len(fake_infobip.sent_to_customer(conversation)) >= 2, 60, "agent replies delivered")
        step("agent replies delivered")
        ccaas.agent_closes(interaction_id)
        wait_for(lambda: handover()["state"] == "CLOSED", 60, "the handover to close")
        step("closed")

        assert fake_infobip.conversations[conversation]["status"] == "CLOSED"
        assert_clean(
            "E2E customer -> contact center",
            [m["content"]["text"] for m in ccaas.interactions[interaction_id]["messages"]],
            customer,
        )
        assert_clean(
            "E2E agent -> customer",
            [m["content"]["text"] for m in fake_infobip.sent_to_customer(conversation)],
            agent,
            timings=timings,
        )
        detail = handover()
        assert detail["deliveriesPending"] == 0 and detail["deliveriesDead"] == 0 and detail["stuck"] is False
        link = ConversationLink.objects.get(pk=handover_id)
        assert link.accepted_at is not None and link.close_reason
        kinds = list(HandoverEvent.objects.filter(link=link).values_list("kind", flat=True))
        assert kinds[0] == "escalated" and "opened" in kinds and kinds[-1] == "closed"
    finally:
        ccaas.stop()
