"""The API's OpenAPI schema and the Prometheus metrics of the bridge's state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message, State

pytestmark = pytest.mark.django_db


def test_openapi_schema_documents_the_public_api(client, settings):
    response = client.get(
        "/api/schema/",
        HTTP_ACCEPT="application/vnd.oai.openapi+json",
        HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_API_TOKEN}",
    )
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    escalate = paths["/api/escalations/"]["post"]
    assert set(escalate["responses"]) >= {"200", "202", "400", "401"}
    body = schema["components"]["schemas"]["Escalation"]
    assert body["required"] == ["conversationId"]
    assert set(body["properties"]) == {"conversationId", "endpoint", "queue", "priority", "context"}
    handover = schema["components"]["schemas"]["Handover"]["properties"]
    assert {"id", "conversationId", "endpoint", "interactionId", "state", "stuck", "lastError"} <= set(
        handover
    )
    assert "/webhooks/infobip/{token}/" in paths and "/webhooks/ccaas/{slug}/" in paths


def test_metrics_report_handovers_deliveries_and_waiting_time(client, settings):
    settings.BRIDGE_STUCK_AFTER_SECONDS = 60
    endpoint = CcaasEndpoint.objects.create(
        slug="m", kind="generic", config={"base_url": "http://x"}, auth_failed=True
    )
    old = timezone.now() - timedelta(minutes=10)
    stuck = ConversationLink.objects.create(
        conversation_id="c1", endpoint=endpoint, state=State.REQUESTED, escalated_at=old
    )
    active = ConversationLink.objects.create(conversation_id="c2", endpoint=endpoint, state=State.ACTIVE)
    message = Message.objects.create(link=active, direction="INBOUND", external_id="m1", created_at=old)
    Delivery.objects.create(link=active, message=message, kind="MESSAGE", lane="TO_CCAAS", sort_at=old)
    Delivery.objects.create(link=stuck, kind="OPEN", lane="TO_CCAAS", phase=0, state=Delivery.Status.DEAD)

    settings.BRIDGE_METRICS_TOKEN = "metrics-token-0123456789abcdefghijklmnopq"
    text = client.get(
        "/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.BRIDGE_METRICS_TOKEN}"
    ).content.decode()
    assert 'bridge_handovers{state="REQUESTED"} 1.0' in text
    assert 'bridge_handovers{state="ACTIVE"} 1.0' in text
    assert "bridge_handovers_stuck 1.0" in text
    assert 'bridge_deliveries{lane="TO_CCAAS",state="PENDING"} 1.0' in text
    assert 'bridge_deliveries{lane="TO_CCAAS",state="DEAD"} 1.0' in text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    waited = float(samples["bridge_oldest_pending_customer_message_seconds"])
    assert 590 < waited < 700
    assert 'bridge_endpoint_auth_failed{endpoint="m"} 1.0' in text
    assert "django_http_requests_total_by_method_total" in text
