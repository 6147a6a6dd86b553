"""The list filters, phrased as the questions operators ask ("what is stuck?", "what failed?")."""

from __future__ import annotations

from django.contrib import admin

from bridge.models import ConversationLink, Delivery, State, today_start


class AttentionFilter(admin.SimpleListFilter):
    title = "what needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [(value, label) for value, (label, _) in self.CHOICES.items()]

    # Each choice is one predicate of the models, the same the overview and /metrics count.
    CHOICES = {
        "stuck": ("Stuck", lambda qs: qs.stuck()),
        "failing": ("Delivery being retried", lambda qs: qs.failing()),
        "dead": ("With dead letters", lambda qs: qs.with_dead_letters()),
        "customer_waiting": (
            "Customer message not delivered",
            lambda qs: qs.filter(pk__in=Delivery.objects.waiting_customer().values("link_id")),
        ),
        "waiting": ("Waiting for an agent", lambda qs: qs.waiting_for_agent()),
        "open": ("Open (any)", lambda qs: qs.open()),
        "failed": ("Could not be opened", lambda qs: qs.filter(state=State.FAILED)),
        "closed_today": ("Closed today", lambda qs: qs.closed_since(today_start())),
    }

    def queryset(self, request, queryset):
        choice = self.CHOICES.get(self.value() or "")
        return choice[1](queryset) if choice else queryset


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
            ("customer_waiting", "Customer waiting (not yet with the contact center)"),
            ("waiting", "Queued"),
            ("done", "Delivered"),
            ("skipped", "Skipped (not sent)"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "failing":
            return queryset.failing()
        if value == "dead":
            return queryset.dead()
        if value == "waiting":
            return queryset.filter(state__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT])
        if value == "customer_waiting":
            return queryset.waiting_customer()
        if value == "done":
            return queryset.filter(state=Delivery.Status.DONE)
        if value == "skipped":
            return queryset.filter(state=Delivery.Status.SKIPPED)
        return queryset
