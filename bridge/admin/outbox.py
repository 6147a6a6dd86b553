"""Deliveries (the outbox), messages and inbound events: read-only lists with retry and resend."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from bridge import delivery, operations
from bridge.admin.display import STATE_TONES, ReadOnlyMixin, actor, badge, pretty_json, short
from bridge.admin.filters import DeliveryStatusFilter
from bridge.exceptions import BridgeError
from bridge.models import Delivery, InboundEvent, Message


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "handover",
        "kind",
        "lane",
        "state_badge",
        "attempts",
        "failing_since",
        "next_attempt_at",
        "error",
    )
    # A plain related filter lists the (few) endpoints; "related only" would scan every delivery.
    list_filter = (DeliveryStatusFilter, "kind", "lane", "link__endpoint")
    list_select_related = ("link",)
    search_fields = ("=link__conversation_id",)
    search_help_text = "Exact Infobip conversation id."
    ordering = ("-id",)
    show_full_result_count = False
    list_per_page = 50
    actions = ("retry_selected",)
    readonly_extra = ("payload_pretty",)
    exclude = ("payload",)

    @admin.display(description="Handover")
    def handover(self, obj):
        url = reverse("admin:bridge_conversationlink_change", args=[obj.link_id])
        return format_html('<a href="{}">{}</a>', url, short(obj.link.conversation_id, 36))

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj):
        label = obj.get_state_display()
        if obj.failing_since and not obj.is_terminal:
            label = f"{label} · failing"
        return badge(label, STATE_TONES.get(obj.state, "muted"))

    @admin.display(description="Last error")
    def error(self, obj):
        return format_html(
            '<span class="hb-error" title="{}">{}</span>', obj.last_error, short(obj.last_error, 70)
        )

    @admin.display(description="Payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.action(description="Retry now (dead letters and waiting, order kept)", permissions=["change"])
    def retry_selected(self, request, queryset):
        rows = list(queryset.select_related("link")[:1000])
        count = delivery.retry_dead(Delivery.objects.filter(pk__in=[r.pk for r in rows]))
        for link in {r.link for r in rows}:
            link.note("retry", "deliveries queued again from the admin", actor=actor(request))
            self.log_change(request, link, "Retried dead/waiting deliveries.")
        self.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "handover",
        "direction",
        "author_type",
        "text_short",
        "created_at",
        "delivery_state",
        "delivery_error",
    )
    list_filter = ("source", "direction", "delivery__state")
    list_select_related = ("link", "delivery")
    search_fields = ("=external_id", "=link__conversation_id")
    search_help_text = "Exact message id or Infobip conversation id."
    ordering = ("-id",)
    show_full_result_count = False
    list_per_page = 50
    actions = ("resend_selected",)
    readonly_extra = ("content_pretty", "raw_pretty")
    exclude = ("content", "raw")

    @admin.display(description="Handover")
    def handover(self, obj):
        url = reverse("admin:bridge_conversationlink_change", args=[obj.link_id])
        return format_html('<a href="{}">{}</a>', url, short(obj.link.conversation_id, 36))

    @admin.display(description="Text")
    def text_short(self, obj):
        return short(obj.text, 80)

    def _delivery(self, obj):
        try:
            return obj.delivery
        except Delivery.DoesNotExist:
            return None

    @admin.display(description="Delivery")
    def delivery_state(self, obj):
        item = self._delivery(obj)
        if item is None:
            return badge("in history" if obj.in_history else "—", "muted")
        return badge(item.get_state_display(), STATE_TONES.get(item.state, "muted"))

    @admin.display(description="Last error")
    def delivery_error(self, obj):
        item = self._delivery(obj)
        return short(item.last_error, 60) if item else ""

    @admin.display(description="Content")
    def content_pretty(self, obj):
        return pretty_json(obj.content)

    @admin.display(description="Raw payload")
    def raw_pretty(self, obj):
        return pretty_json(obj.raw)

    @admin.action(description="Resend the selected messages", permissions=["change"])
    def resend_selected(self, request, queryset):
        done = 0
        for message in queryset.select_related("link")[:200]:
            try:
                operations.resend_message(message, actor=actor(request))
            except BridgeError as exc:
                self.message_user(request, f"{message.external_id}: {exc}", messages.ERROR)
                continue
            self.log_change(request, message.link, f"Resent message {message.external_id}.")
            done += 1
        self.message_user(request, f"{done} message(s) queued again.", messages.SUCCESS)


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("received_at", "source", "type", "event_id", "handover", "note")
    list_filter = ("source", "type")
    list_select_related = ("link",)
    search_fields = ("=event_id", "=link__conversation_id")
    search_help_text = "Exact event id or Infobip conversation id."
    ordering = ("-id",)
    show_full_result_count = False
    list_per_page = 50
    readonly_extra = ("payload_pretty",)
    exclude = ("payload",)

    @admin.display(description="Handover")
    def handover(self, obj):
        if obj.link_id is None:
            return "—"
        url = reverse("admin:bridge_conversationlink_change", args=[obj.link_id])
        return format_html('<a href="{}">{}</a>', url, short(obj.link.conversation_id, 36))

    @admin.display(description="Payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)
