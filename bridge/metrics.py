"""Prometheus metrics of the bridge's own state, read from the database at scrape time (GET /metrics).

Every query is a grouped count over an indexed column or the open handovers only, so a scrape stays
cheap with millions of delivered messages.
"""

from __future__ import annotations

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from bridge.models import CcaasEndpoint, ConversationLink, Delivery


class BridgeCollector:
    def describe(self):
        # Names only: describing must not touch the database (it runs at start-up).
        yield GaugeMetricFamily("bridge_handovers", "Handovers by state", labels=["state"])
        yield GaugeMetricFamily("bridge_handovers_stuck", "Open handovers that are stuck")
        yield GaugeMetricFamily(
            "bridge_deliveries", "Deliveries not yet delivered, by state and lane", labels=["state", "lane"]
        )
        yield GaugeMetricFamily(
            "bridge_oldest_pending_customer_message_seconds", "Age of the oldest undelivered customer message"
        )
        yield GaugeMetricFamily(
            "bridge_endpoint_auth_failed",
            "1 when the endpoint's contact center refused our credentials",
            labels=["endpoint"],
        )

    def collect(self):
        handovers = GaugeMetricFamily("bridge_handovers", "Handovers by state", labels=["state"])
        for row in ConversationLink.objects.order_by().values("state").annotate(n=Count("pk")):
            handovers.add_metric([row["state"]], row["n"])
        yield handovers
        yield GaugeMetricFamily(
            "bridge_handovers_stuck",
            "Open handovers that are stuck",
            value=ConversationLink.objects.stuck().count(),
        )
        deliveries = GaugeMetricFamily(
            "bridge_deliveries", "Deliveries not yet delivered, by state and lane", labels=["state", "lane"]
        )
        waiting = Delivery.objects.filter(
            state__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT, Delivery.Status.DEAD]
        ).order_by()
        for row in waiting.values("state", "lane").annotate(n=Count("pk")):
            deliveries.add_metric([row["state"], row["lane"]], row["n"])
        yield deliveries
        oldest = (
            waiting.filter(lane=Delivery.Lane.TO_CCAAS, kind=Delivery.Kind.MESSAGE)
            .exclude(state=Delivery.Status.DEAD)
            .aggregate(oldest=Min("sort_at"))["oldest"]
        )
        yield GaugeMetricFamily(
            "bridge_oldest_pending_customer_message_seconds",
            "Age of the oldest undelivered customer message",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0,
        )
        auth = GaugeMetricFamily(
            "bridge_endpoint_auth_failed",
            "1 when the endpoint's contact center refused our credentials",
            labels=["endpoint"],
        )
        for slug, failed in CcaasEndpoint.objects.values_list("slug", "auth_failed"):
            auth.add_metric([slug], 1 if failed else 0)
        yield auth


_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    from prometheus_client import REGISTRY

    REGISTRY.register(BridgeCollector())
    _registered = True
