"""What one delivered message costs the database in a steady lane: statements (counted with
Django's CaptureQueriesContext) and commits. Counts, never times."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bridge import delivery, services
from bridge.infobip.events import parse_message
from bridge.models import ConversationLink, Delivery, State
from tests import procs
from tests.costs import TRANSACTION_CONTROL, counting
from tests.test_faults import at

procs.use_file_sqlite()

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = 40


def test_a_steady_lane_costs_at_most_three_statements_and_one_commit_per_message(
    generic_endpoint, fake_infobip, fake_ccaas
):
    conversation = fake_infobip.add_conversation()
    link = ConversationLink.objects.create(
        conversation_id=conversation,
        endpoint=generic_endpoint,
        state=State.ACTIVE,
        interaction_id="INT-1",
        channel="WHATSAPP",
        customer_address="447700900123",
    )
    fake_ccaas.interactions["INT-1"] = {"open": {}, "messages": [], "closed": None, "duplicates": 0}
    services.record_inbound(
        [
            parse_message(fake_infobip.message(conversation, f"m{i:02d}", created_at=at(i), store=False))
            for i in range(MESSAGES)
        ]
    )
    with CaptureQueriesContext(connection) as queries, counting() as cost:
        assert delivery.drive_lane(link.pk, Delivery.Lane.TO_CCAAS) == MESSAGES
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].split(None, 1)[0].upper() not in TRANSACTION_CONTROL
    ]
    assert [m["content"]["text"] for m in fake_ccaas.interactions["INT-1"]["messages"]] == [
        f"m{i:02d}" for i in range(MESSAGES)
    ]
    assert Delivery.objects.filter(state=Delivery.Status.DONE).count() == MESSAGES
    print(
        f"\n{MESSAGES} messages: {len(statements)} statements ({len(statements) / MESSAGES:.2f} per message), "
        f"{cost.commits} commits ({cost.commits / MESSAGES:.2f} per message)"
    )
    assert len(statements) == cost.statements
    assert len(statements) <= 3 * MESSAGES
    assert cost.commits <= 1.1 * MESSAGES
