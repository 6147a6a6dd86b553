"""Broker tasks: one per lane with work, not one per message, and none of their results stored.

The ORM broker's queue (django-q2's OrmQ table) is read as it is; the queued tasks are then run
here, one at a time, the way a worker would run them, against a real loopback contact center."""

from __future__ import annotations

import importlib

import pytest
from django_q.models import OrmQ

from bridge import services
from bridge.infobip.events import parse_message
from bridge.models import ConversationLink, Delivery, State
from tests.test_faults import at

pytestmark = pytest.mark.django_db


DRIVE = "bridge.tasks.drive_lane"


def queued() -> list[dict]:
    return [row.task for row in OrmQ.objects.order_by("id") if row.task["func"] == DRIVE]


def run_queue() -> int:
    """Run every queued task, and those they queue, as a worker would; return how many ran."""
    ran = 0
    while rows := list(OrmQ.objects.order_by("id")):
        for row in rows:
            task = row.task
            row.delete()
            module, name = task["func"].rsplit(".", 1)
            getattr(importlib.import_module(module), name)(*task["args"], **task["kwargs"])
            ran += 1
    return ran


@pytest.fixture
def handovers(generic_endpoint, fake_infobip):
    links = []
    for i in range(5):
        conversation = fake_infobip.add_conversation()
        links.append(
            ConversationLink.objects.create(
                conversation_id=conversation,
                endpoint=generic_endpoint,
                state=State.ACTIVE,
                interaction_id=f"INT-{i}",
                channel="WHATSAPP",
                customer_address="447700900123",
            )
        )
    return links


def customer_messages(fake_infobip, link, count: int, start: float = 0):
    return [
        parse_message(
            fake_infobip.message(link.conversation_id, f"m{i}", created_at=at(start + i), store=False)
        )
        for i in range(count)
    ]


def test_a_backlog_queues_one_task_per_lane_without_stored_results(
    handovers, fake_infobip, fake_ccaas, django_capture_on_commit_callbacks
):
    for link in handovers:
        fake_ccaas.interactions[link.interaction_id] = {
            "open": {},
            "messages": [],
            "closed": None,
            "duplicates": 0,
        }
    with django_capture_on_commit_callbacks(execute=True):
        for link in handovers:
            services.record_inbound(customer_messages(fake_infobip, link, 20))
    tasks = queued()
    assert Delivery.objects.filter(state=Delivery.Status.PENDING).count() == 100
    assert len(tasks) == OrmQ.objects.count() == 5
    assert sorted(t["args"][0] for t in tasks) == sorted(str(link.pk) for link in handovers)
    assert all(t["save"] is False for t in tasks)

    ran = run_queue()
    delivered = Delivery.objects.filter(state=Delivery.Status.DONE).count()
    assert delivered == 100
    for link in handovers:
        assert [m["content"]["text"] for m in fake_ccaas.interactions[link.interaction_id]["messages"]] == [
            f"m{i}" for i in range(20)
        ]
    print(f"\nbacklog: {ran} tasks for {delivered} deliveries ({ran / delivered:.2f} per delivery)")
    assert ran / delivered <= 1.1


def test_messages_arriving_one_by_one_cost_at_most_one_task_each(
    handovers, fake_infobip, fake_ccaas, django_capture_on_commit_callbacks
):
    for link in handovers:
        fake_ccaas.interactions[link.interaction_id] = {
            "open": {},
            "messages": [],
            "closed": None,
            "duplicates": 0,
        }
    ran = 0
    for round_ in range(6):
        with django_capture_on_commit_callbacks(execute=True):
            for link in handovers:
                services.record_inbound(customer_messages(fake_infobip, link, 1, start=round_))
        # every other round the workers are busy: two messages per lane wait for one task
        if round_ % 2:
            ran += run_queue()
    delivered = Delivery.objects.filter(state=Delivery.Status.DONE).count()
    assert delivered == 30 and ran == 15
    print(f"\ntrickle: {ran} tasks for {delivered} deliveries ({ran / delivered:.2f} per delivery)")


def test_a_lane_longer_than_one_drive_hands_over_to_a_fresh_task(
    handovers, fake_infobip, fake_ccaas, django_capture_on_commit_callbacks, monkeypatch
):
    from bridge import delivery

    link = handovers[0]
    fake_ccaas.interactions[link.interaction_id] = {
        "open": {},
        "messages": [],
        "closed": None,
        "duplicates": 0,
    }
    with django_capture_on_commit_callbacks(execute=True):
        services.record_inbound(customer_messages(fake_infobip, link, 7))
    OrmQ.objects.all().delete()
    monkeypatch.setattr(delivery, "DRIVE_LIMIT", 3)
    assert delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS) == 3
    assert [t["args"][0] for t in queued()] == [str(link.pk)]  # the rest is not left to the sweeper
    assert run_queue() == 2  # 3, then 3 and 1
    assert Delivery.objects.filter(state=Delivery.Status.DONE).count() == 7
