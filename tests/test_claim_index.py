"""The delivery engine's hot queries use the partial indexes over open deliveries, so their cost
follows the work waiting, not the history kept: checked with the database's own query plan
(EXPLAIN on PostgreSQL, EXPLAIN QUERY PLAN on SQLite) over a table of 20,000 finished deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bridge import delivery as engine
from bridge.models import ConversationLink, Delivery, State

pytestmark = pytest.mark.django_db

TO_CCAAS = Delivery.Lane.TO_CCAAS


@pytest.fixture
def history():
    """200 handovers with 100 finished deliveries each, and one lane with work waiting."""
    links = ConversationLink.objects.bulk_create(
        ConversationLink(conversation_id=f"conv-{i}", state=State.ACTIVE, interaction_id=f"int-{i}")
        for i in range(200)
    )
    base = timezone.now() - timedelta(days=30)
    for link in links:
        Delivery.objects.bulk_create(
            Delivery(
                link=link,
                kind=Delivery.Kind.MESSAGE,
                lane=TO_CCAAS if i % 2 else Delivery.Lane.TO_INFOBIP,
                sort_at=base + timedelta(seconds=i),
                state=Delivery.Status.DONE,
                attempts=1,
                done_at=base + timedelta(seconds=i),
            )
            for i in range(100)
        )
    busy = links[7]
    for _ in range(3):
        Delivery.objects.create(link=busy, kind=Delivery.Kind.MESSAGE, lane=TO_CCAAS, sort_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return busy


def plan(queryset) -> str:
    text = queryset.explain()
    print(f"\n{text}")
    return text


def full_scans(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if "Seq Scan on bridge_delivery" in line or line.endswith("SCAN bridge_delivery")
    ]


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="index choice is PostgreSQL's planner's; SQLite's picks among usable indexes by its own "
    "statistics (the test below checks it reads open rows through an index there too)",
)
def test_the_claim_and_the_sweeper_use_the_open_delivery_indexes(history):
    assert Delivery.objects.count() == 20_003
    head = plan(engine.open_lane(history.pk, TO_CCAAS)[:1])
    assert "delivery_open_lane_idx" in head
    others = [
        engine.open_lane(history.pk, TO_CCAAS).filter(
            state=Delivery.Status.IN_FLIGHT, lease_until__gt=timezone.now()
        ),
        Delivery.objects.filter(link=history, state__in=Delivery.OPEN_DELIVERY_STATES),
        engine.due_deliveries(timezone.now()),
    ]
    for queryset in others:  # each through an index keyed on the state, never the whole table
        text = plan(queryset)
        assert "Index" in text and not full_scans(text)
    assert engine.claim_next(history.pk, TO_CCAAS) is not None  # the query planned is the one used


def test_no_hot_query_scans_the_whole_history(history):
    queries = [
        engine.open_lane(history.pk, TO_CCAAS)[:1],
        engine.open_lane(history.pk, TO_CCAAS).filter(state=Delivery.Status.IN_FLIGHT),
        Delivery.objects.filter(link=history, state__in=Delivery.OPEN_DELIVERY_STATES),
        engine.due_deliveries(timezone.now()),
    ]
    for queryset in queries:
        assert full_scans(plan(queryset)) == []
