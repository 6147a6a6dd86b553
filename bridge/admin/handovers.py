"""The handover list: columns, filters and the bulk actions (close with a reason, retry)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.utils.html import format_html
from django.utils.timesince import timesince

from bridge import dashboard, services
from bridge.admin.display import STATE_TONES, ReadOnlyMixin, actor, badge, short
from bridge.admin.filters import AttentionFilter, ChannelFilter
from bridge.admin.forms import CloseActionForm
from bridge.admin.handover_page import HandoverPageMixin
from bridge.exceptions import BridgeError
from bridge.models import OPEN_STATES, ConversationLink, Delivery, State
from bridge.types import CloseReason


@admin.register(ConversationLink)
class ConversationLinkAdmin(HandoverPageMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "handover",
        "state_badge",
        "endpoint",
        "customer",
        "channel",
        "age",
        "last_activity_at",
        "stuck_badge",
        "error",
    )
    list_display_links = ("handover",)
    list_filter = (AttentionFilter, "state", "endpoint", ChannelFilter, "bot")
    search_fields = ("=conversation_id", "=interaction_id", "=customer_address")
    search_help_text = (
        "Exact Infobip conversation id, interaction id, or customer address (e.g. 447700900123)."
    )
    list_select_related = ("endpoint",)
    show_full_result_count = False
    list_per_page = 50
    action_form = CloseActionForm
    actions = ("close_selected", "retry_selected")
    readonly_extra = ("stuck_badge",)
    change_form_template = "admin/bridge/conversationlink/change_form.html"
    fieldsets = (
        (
            "Handover",
            {
                "fields": (
                    ("conversation_id", "state"),
                    ("endpoint", "interaction_id", "bot"),
                    ("channel", "customer_address", "customer_name", "business_sender"),
                    ("queue", "priority"),
                    "last_error",
                )
            },
        ),
        (
            "Times",
            {
                "fields": (
                    ("escalated_at", "opened_at", "accepted_at"),
                    ("closing_at", "closed_at", "last_activity_at"),
                    ("close_reason", "closed_by"),
                )
            },
        ),
        (
            "Data",
            {
                "classes": ("collapse",),
                "fields": ("id", "interaction_data", "context", "metadata", "stuck_flagged_at"),
            },
        ),
    )

    def get_queryset(self, request):
        cutoff = dashboard.stuck_cutoff()
        failing_long = Delivery.objects.filter(link=OuterRef("pk"), failing_since__lt=cutoff).exclude(
            state__in=Delivery.TERMINAL_STATES
        )
        return super().get_queryset(request).annotate(failing_long=Exists(failing_long))

    @admin.display(description="Handover", ordering="conversation_id")
    def handover(self, obj):
        return short(obj.conversation_id, 40)

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj):
        return badge(obj.get_state_display(), STATE_TONES.get(obj.state, "muted"))

    @admin.display(description="Customer", ordering="customer_address")
    def customer(self, obj):
        return obj.customer_name or obj.customer_address or "—"

    @admin.display(description="Age", ordering="escalated_at")
    def age(self, obj):
        return timesince(obj.escalated_at)

    @admin.display(description="Stuck")
    def stuck_badge(self, obj):
        cutoff = dashboard.stuck_cutoff()
        if getattr(obj, "failing_long", None) is None:
            stuck = obj.is_stuck()
        else:
            stuck = (
                (obj.state == State.REQUESTED and obj.escalated_at < cutoff)
                or (obj.state == State.CLOSING and obj.closing_at and obj.closing_at < cutoff)
                or (obj.state in OPEN_STATES and obj.failing_long)
            )
        return badge("stuck", "bad") if stuck else ""

    @admin.display(description="Last error")
    def error(self, obj):
        return format_html(
            '<span class="hb-error" title="{}">{}</span>', obj.last_error, short(obj.last_error, 60)
        )

    # --- actions on the list -----------------------------------------------------------------------
    @admin.action(description="Close on both sides (give a reason)", permissions=["change"])
    def close_selected(self, request, queryset):
        reason = (request.POST.get("reason") or "").strip()
        closed = 0
        for link in queryset[:500]:
            if self._close(request, link, reason):
                closed += 1
        self.message_user(request, f"{closed} handover(s) are closing on both sides.", messages.SUCCESS)

    @admin.action(description="Retry failed and dead deliveries (order kept)", permissions=["change"])
    def retry_selected(self, request, queryset):
        total = 0
        for link in queryset[:500]:
            try:
                total += self._retry(request, link)
            except BridgeError as exc:
                self.message_user(request, f"{link.conversation_id}: {exc}", messages.ERROR)
        self.message_user(
            request, f"{total} deliveries queued again, in their original order.", messages.SUCCESS
        )

    def _close(self, request, link, reason: str) -> bool:
        who = actor(request)
        if reason:
            link.note("operator_note", reason, actor=who)
        done = services.close_handover(link, actor=who, reason=CloseReason.OPERATOR)
        if done:
            self.log_change(request, link, f"Closed on both sides. Reason: {reason or '(none given)'}")
        return done

    def _retry(self, request, link) -> int:
        count = services.retry_failed(link, actor=actor(request))
        self.log_change(request, link, f"Retried {count} failed/dead deliveries.")
        return count
