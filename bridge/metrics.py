"""Prometheus metrics of the bridge's own state, read from the database at scrape time (GET /metrics).

Every query is a grouped count over an indexed column or the open handovers only, so a scrape stays
cheap with millions of delivered messages.
"""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Lease
from bridge.periodic import TICKER_LEASE

GAUGES = {
    "bridge_handovers": ("Handovers by state", ["state"]),
    "bridge_handovers_stuck": ("Open handovers that are stuck", []),
    "bridge_handovers_waiting_for_agent": (
        "Open handovers no agent has accepted or written in yet",
        [],
    ),
    "bridge_customers_waiting": (
        "Handovers with a customer message (or the open) not yet delivered to the contact center",
        [],
    ),
    "bridge_deliveries": ("Deliveries not yet delivered, by state and lane", ["state", "lane"]),
    "bridge_deliveries_failing": ("Deliveries being retried right now (not dead)", []),
    "bridge_dead_letters": ("Deliveries that were given up (dead letters), until retried", []),
    "bridge_oldest_pending_customer_message_seconds": (
        "How long the longest-waiting customer has waited for the contact center (queued, behind "
        "the open, being retried or dead-lettered)",
        [],
    ),
    "bridge_endpoint_auth_failed": (
        "1 when the endpoint's contact center refused our credentials",
        ["endpoint"],
    ),
    "bridge_endpoint_healthy": (
        "1 when the last call to the endpoint succeeded, 0 when it failed (no sample before any call)",
        ["endpoint"],
    ),
    "bridge_worker_heartbeat_overdue_seconds": (
        "Seconds since the worker cluster last renewed the ticker's lease, beyond its expiry: 0 while a "
        "worker runs the ticker (no sample before any worker ever ran)",
        [],
    ),
}


def _gauge(name: str, value: float | None = None) -> GaugeMetricFamily:
    text, labels = GAUGES[name]
    if value is None:
        return GaugeMetricFamily(name, text, labels=labels)
    return GaugeMetricFamily(name, text, value=value)


class BridgeCollector:
    """Every figure comes from the models' predicates, the same the console's overview and lists use."""

    def describe(self):
        # Names only: describing must not touch the database (it runs at start-up).
        for name in GAUGES:
            yield _gauge(name)

    def collect(self):
        handovers = _gauge("bridge_handovers")
        for row in ConversationLink.objects.order_by().values("state").annotate(n=Count("pk")):
            handovers.add_metric([row["state"]], row["n"])
        yield handovers
        yield _gauge("bridge_handovers_stuck", ConversationLink.objects.stuck().count())
        yield _gauge(
            "bridge_handovers_waiting_for_agent", ConversationLink.objects.waiting_for_agent().count()
        )
        waiting = Delivery.objects.waiting_customer()
        yield _gauge("bridge_customers_waiting", waiting.values("link_id").distinct().count())
        deliveries = _gauge("bridge_deliveries")
        undelivered = Delivery.objects.filter(
            state__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT, Delivery.Status.DEAD]
        ).order_by()
        for row in undelivered.values("state", "lane").annotate(n=Count("pk")):
            deliveries.add_metric([row["state"], row["lane"]], row["n"])
        yield deliveries
        yield _gauge("bridge_deliveries_failing", Delivery.objects.failing().count())
        yield _gauge("bridge_dead_letters", Delivery.objects.dead().count())
        oldest = Delivery.objects.oldest_waiting_customer()
        age = (timezone.now() - oldest.sort_at).total_seconds() if oldest else 0
        yield _gauge("bridge_oldest_pending_customer_message_seconds", max(0.0, age))
        auth = _gauge("bridge_endpoint_auth_failed")
        healthy = _gauge("bridge_endpoint_healthy")
        for endpoint in CcaasEndpoint.objects.order_by("slug"):
            auth.add_metric([endpoint.slug], 1 if endpoint.auth_failed else 0)
            label, _ = endpoint.health
            if label == "healthy":
                healthy.add_metric([endpoint.slug], 1)
            elif label in ("unhealthy", "credentials refused"):
                healthy.add_metric([endpoint.slug], 0)
        yield auth
        yield healthy
        # The ticker's lease is the workers' heartbeat (the console's missing-worker alert reads it too).
        expires = Lease.objects.filter(name=TICKER_LEASE).values_list("expires_at", flat=True).first()
        overdue = _gauge("bridge_worker_heartbeat_overdue_seconds")
        if expires is not None:
            overdue.add_metric([], max(0.0, (timezone.now() - expires).total_seconds()))
        yield overdue


_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    from prometheus_client import REGISTRY

    REGISTRY.register(BridgeCollector())
    _registered = True
