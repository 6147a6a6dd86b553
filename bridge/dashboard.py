"""The figures of the operator overview. A fixed, small number of indexed queries whatever the size of
the tables: counts are grouped in the database, lists are capped, nothing is loaded row by row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from bridge.models import CcaasEndpoint, ConversationLink, Delivery, State, today_start


@dataclass
class EndpointFigures:
    endpoint: CcaasEndpoint
    open: int = 0
    stuck: int = 0
    failing: int = 0
    dead: int = 0
    health: tuple[str, str] = ("", "")
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class Overview:
    by_state: list[dict[str, Any]]
    stuck: int
    failing: int
    dead: int
    waiting_for_agent: int
    waiting_customers: int
    closed_today: int
    oldest_waiting: dict[str, Any] | None
    endpoints: list[EndpointFigures]
    links: dict[str, str]


def _url(name: str, query: str = "") -> str:
    url = reverse(f"admin:bridge_{name}_changelist")
    return f"{url}?{query}" if query else url


def overview(now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    counts = dict(
        ConversationLink.objects.order_by()
        .values_list("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    by_state = [
        {
            "state": value,
            "label": label,
            "count": counts.get(value, 0),
            "url": _url("conversationlink", f"state__exact={value}"),
        }
        for value, label in State.choices
    ]
    open_links = ConversationLink.objects.open()
    stuck_by_endpoint = dict(
        ConversationLink.objects.stuck(now)
        .order_by()
        .values_list("endpoint")
        .annotate(n=Count("pk"))
        .values_list("endpoint", "n")
    )
    open_by_endpoint = dict(
        open_links.order_by().values_list("endpoint").annotate(n=Count("pk")).values_list("endpoint", "n")
    )
    failing_by_endpoint = dict(
        Delivery.objects.failing()
        .order_by()
        .values_list("link__endpoint")
        .annotate(n=Count("pk"))
        .values_list("link__endpoint", "n")
    )
    dead_by_endpoint = dict(
        Delivery.objects.dead()
        .order_by()
        .values_list("link__endpoint")
        .annotate(n=Count("pk"))
        .values_list("link__endpoint", "n")
    )
    waiting = ConversationLink.objects.waiting_for_agent().count()
    closed_today = ConversationLink.objects.closed_since(today_start(now)).count()
    waiting_customers = Delivery.objects.waiting_customer()
    oldest = Delivery.objects.oldest_waiting_customer()
    oldest_waiting = None
    if oldest is not None:
        if oldest.message is not None:
            text = oldest.message.text[:120]
            where = "being retried" if oldest.failing_since else oldest.get_state_display().lower()
            if oldest.state == Delivery.Status.PENDING and oldest.link.state == State.REQUESTED:
                where = "waiting for the interaction to open"
        else:
            text = ""
            where = "the interaction is not open yet; the customer wrote just before the escalation"
        oldest_waiting = {
            "since": oldest.sort_at,
            "age": now - oldest.sort_at,
            "text": text,
            "state": where,
            "error": oldest.last_error,
            "url": reverse("admin:bridge_conversationlink_change", args=[oldest.link_id]),
        }
    endpoints = []
    for endpoint in CcaasEndpoint.objects.order_by("routing_order", "slug")[:50]:
        endpoints.append(
            EndpointFigures(
                endpoint=endpoint,
                open=open_by_endpoint.get(endpoint.pk, 0),
                stuck=stuck_by_endpoint.get(endpoint.pk, 0),
                failing=failing_by_endpoint.get(endpoint.pk, 0),
                dead=dead_by_endpoint.get(endpoint.pk, 0),
                health=endpoint.health,
                links={
                    "open": _url("conversationlink", f"endpoint__id__exact={endpoint.pk}&attention=open"),
                    "stuck": _url("conversationlink", f"endpoint__id__exact={endpoint.pk}&attention=stuck"),
                    "failing": _url("delivery", f"link__endpoint__id__exact={endpoint.pk}&status=failing"),
                    "dead": _url("delivery", f"link__endpoint__id__exact={endpoint.pk}&status=dead"),
                    "edit": reverse("admin:bridge_ccaasendpoint_change", args=[endpoint.pk]),
                },
            )
        )
    return Overview(
        by_state=by_state,
        stuck=sum(stuck_by_endpoint.values()),
        failing=sum(failing_by_endpoint.values()),
        dead=sum(dead_by_endpoint.values()),
        waiting_for_agent=waiting,
        waiting_customers=waiting_customers.values("link_id").distinct().count(),
        closed_today=closed_today,
        oldest_waiting=oldest_waiting,
        endpoints=endpoints,
        links={
            "stuck": _url("conversationlink", "attention=stuck"),
            "failing": _url("delivery", "status=failing"),
            "dead": _url("delivery", "status=dead"),
            "waiting": _url("conversationlink", "attention=waiting"),
            "waiting_customers": _url("conversationlink", "attention=customer_waiting"),
            "closed_today": _url("conversationlink", "attention=closed_today"),
            "all": _url("conversationlink"),
        },
    )
