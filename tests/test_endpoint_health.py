"""An endpoint's health (last success, auth flag) stays current without a write per message."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bridge import delivery
from bridge.models import CcaasEndpoint, ConversationLink, State

pytestmark = pytest.mark.django_db


def test_a_burst_of_deliveries_writes_the_endpoint_row_once_and_a_recovery_clears_the_auth_flag(
    client, fake_infobip, fake_ccaas, generic_endpoint, inbound_url, monkeypatch
):
    monkeypatch.setattr(delivery, "HEALTH_WRITE_SECONDS", 3600)  # independent of machine speed
    CcaasEndpoint.objects.filter(pk=generic_endpoint.pk).update(auth_failed=True, last_error="HTTP 401")
    conv = fake_infobip.add_conversation()
    ConversationLink.objects.create(
        conversation_id=conv,
        endpoint=generic_endpoint,
        interaction_id="INT-1",
        state=State.ACTIVE,
        channel="WHATSAPP",
        customer_address="447700900123",
        business_sender=fake_infobip.SENDER,
    )
    fake_ccaas.interactions["INT-1"] = {"open": {}, "messages": [], "closed": None, "duplicates": 0}
    for i in range(10):
        body = fake_infobip.message(conv, f"m{i}", store=False)
        assert client.post(inbound_url, json.dumps(body), content_type="application/json").status_code == 200

    with CaptureQueriesContext(connection) as queries:
        assert delivery.drain() == 10
    writes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "bridge_ccaasendpoint"')
    ]
    assert len(writes) == 10  # one conditional statement per success...
    generic_endpoint.refresh_from_db()
    assert generic_endpoint.auth_failed is False and generic_endpoint.last_success_at is not None
    first = generic_endpoint.last_success_at
    # ...of which only the first changed the row: the others matched nothing
    assert len(fake_ccaas.interactions["INT-1"]["messages"]) == 10
    assert CcaasEndpoint.objects.filter(pk=generic_endpoint.pk, last_success_at=first).exists()
