"""The handover list: columns, filters and the bulk actions (retry, close with a reason, route back)
that work on a filtered selection; each is recorded with who ran it."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.timesince import timesince

from bridge import operations, services
from bridge.admin.display import STATE_TONES, ReadOnlyMixin, actor, ago, badge, error_text, plural, short
from bridge.admin.filters import AttentionFilter, ChannelFilter
from bridge.admin.forms import CloseActionForm
from bridge.admin.handover_page import HandoverPageMixin
from bridge.exceptions import BridgeError
from bridge.models import ConversationLink
from bridge.types import CloseReason

# Bulk actions handle at most this many handovers per press (filter, then press again for more).
BULK_LIMIT = 500


@admin.register(ConversationLink)
class ConversationLinkAdmin(HandoverPageMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "handover",
        "state_badge",
        "stuck_badge",
        "endpoint",
        "customer",
        "age",
        "error",
        "channel",
        "activity",
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
    actions = ("retry_selected", "close_selected", "route_selected")
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
        return super().get_queryset(request).with_stuck()

    @admin.display(description="Handover", ordering="conversation_id")
    def handover(self, obj):
        return short(obj.conversation_id, 40)

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj):
        return badge(obj.get_state_display(), STATE_TONES.get(obj.state, "muted"))

    @admin.display(description="Customer", ordering="customer_address")
    def customer(self, obj):
        return short(obj.customer_name or obj.customer_address or "—", 24)

    @admin.display(description="Age", ordering="escalated_at")
    def age(self, obj):
        return timesince(obj.escalated_at).split(",")[0]

    @admin.display(description="Last activity", ordering="last_activity_at")
    def activity(self, obj):
        return ago(obj.last_activity_at)

    @admin.display(description="Stuck")
    def stuck_badge(self, obj):
        return badge("stuck", "bad") if obj.is_stuck() else ""

    @admin.display(description="Last error")
    def error(self, obj):
        return error_text(obj.last_error, 60)

    # --- bulk actions on a (filtered) list: each calls one lifecycle function per handover ---------
    @admin.action(description="Close on both sides (reason required)", permissions=["change"])
    def close_selected(self, request, queryset):
        reason = (request.POST.get("reason") or "").strip()
        if not reason:
            self.message_user(request, "Nothing closed: give a reason for closing.", messages.ERROR)
            return
        closed = sum(1 for link in queryset[:BULK_LIMIT] if self._close(request, link, reason))
        self.message_user(request, f"{plural(closed, 'handover')} closing on both sides.", messages.SUCCESS)

    @admin.action(description="Retry failed and dead deliveries (order kept)", permissions=["change"])
    def retry_selected(self, request, queryset):
        total = 0
        for link in queryset[:BULK_LIMIT]:
            try:
                total += self._retry(request, link)
            except BridgeError as exc:
                self.message_user(request, f"{link.conversation_id}: {exc}", messages.ERROR)
        self.message_user(
            request,
            f"{plural(total, 'delivery', 'deliveries')} queued again, in their original order.",
            messages.SUCCESS,
        )

    @admin.action(description="Route back to Infobip's agents", permissions=["change"])
    def route_selected(self, request, queryset):
        routed = 0
        for link in queryset[:BULK_LIMIT]:
            try:
                self._route(request, link)
            except BridgeError as exc:
                self.message_user(request, f"{link.conversation_id}: {exc}", messages.ERROR)
            else:
                routed += 1
        self.message_user(
            request, f"{plural(routed, 'handover')} routed back to Infobip's agents.", messages.SUCCESS
        )

    def _close(self, request, link, reason: str) -> bool:
        who = actor(request)
        done = services.close_handover(link, actor=who, reason=CloseReason.OPERATOR, note=reason)
        if done:
            self.log_change(request, link, f"Closed on both sides. Reason: {reason or '(none given)'}")
        return done

    def _retry(self, request, link) -> int:
        count = services.retry_failed(link, actor=actor(request))
        self.log_change(request, link, f"Retried {plural(count, 'delivery', 'deliveries')}.")
        return count

    def _route(self, request, link) -> None:
        operations.route_to_infobip(link, actor=actor(request))
        self.log_change(request, link, "Routed back to Infobip's agents; contact-center side closing.")
