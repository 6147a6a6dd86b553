"""The list filters, phrased as the questions operators ask ("what is stuck?", "what failed?")."""

from __future__ import annotations

from django.contrib import admin

from bridge import dashboard
from bridge.models import OPEN_STATES, ConversationLink, Delivery, State


class AttentionFilter(admin.SimpleListFilter):
    title = "what needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [
            ("stuck", "Stuck"),
            ("failing", "Delivery failing"),
            ("waiting", "Waiting for agent"),
            ("open", "Open (any)"),
            ("failed", "Could not be opened"),
            ("closed_today", "Closed today"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "stuck":
            return queryset.filter(pk__in=ConversationLink.objects.stuck().values("pk"))
        if value == "failing":
            return queryset.filter(pk__in=ConversationLink.objects.delivery_failing().values("pk"))
        if value == "waiting":
            return queryset.filter(dashboard.waiting_for_agent())
        if value == "open":
            return queryset.filter(state__in=OPEN_STATES)
        if value == "failed":
            return queryset.filter(state=State.FAILED)
        if value == "closed_today":
            return queryset.filter(closed_at__gte=dashboard.today_start())
        return queryset


class ChannelFilter(admin.SimpleListFilter):
    title = "channel"
    parameter_name = "channel"

    def lookups(self, request, model_admin):
        channels = (
            ConversationLink.objects.exclude(channel="")
            .order_by("channel")
            .values_list("channel", flat=True)
            .distinct()[:30]
        )
        return [(c, c.replace("_", " ").title()) for c in channels]

    def queryset(self, request, queryset):
        return queryset.filter(channel=self.value()) if self.value() else queryset


class DeliveryStatusFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("failing", "Failing (being retried)"),
            ("dead", "Dead letters"),
            ("waiting", "Waiting"),
            ("done", "Delivered"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "failing":
            return queryset.filter(pk__in=dashboard.failing_deliveries().values("pk"))
        if value == "dead":
            return queryset.filter(state=Delivery.Status.DEAD)
        if value == "waiting":
            return queryset.filter(state__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT])
        if value == "done":
            return queryset.filter(state=Delivery.Status.DONE)
        return queryset
