"""Deliveries (the outbox), messages and inbound events: read-only lists with retry and resend."""

from __future__ import annotations

from django.contrib import admin, messages

from bridge import operations, services
from bridge.admin.display import (
    STATE_TONES,
    ReadOnlyMixin,
    actor,
    badge,
    error_text,
    handover_column,
    plural,
    pretty_json,
    short,
)
from bridge.admin.filters import DeliveryStatusFilter
from bridge.exceptions import BridgeError
from bridge.models import ConversationLink, Delivery, InboundEvent, Message


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
        return handover_column(obj)

    @admin.display(description="State", ordering="state")
    def state_badge(self, obj):
        label = obj.get_state_display()
        if obj.failing_since and not obj.is_terminal:
            label = f"{label} · failing"
        return badge(label, STATE_TONES.get(obj.state, "muted"))

    @admin.display(description="Last error")
    def error(self, obj):
        if obj.state in (Delivery.Status.DONE, Delivery.Status.SKIPPED):
            return short(obj.last_error, 70)  # why it was not needed: a note, not an error
        return error_text(obj.last_error, 70)

    @admin.display(description="Payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.action(description="Retry now (dead letters and waiting, order kept)", permissions=["change"])
    def retry_selected(self, request, queryset):
        rows = Delivery.objects.filter(pk__in=list(queryset.values_list("pk", flat=True)[:1000]))
        count = services.retry_deliveries(rows, actor=actor(request))
        for link in ConversationLink.objects.filter(pk__in=rows.values("link_id")):
            self.log_change(request, link, "Retried dead/waiting deliveries.")
        self.message_user(
            request, f"{plural(count, 'delivery', 'deliveries')} queued again.", messages.SUCCESS
        )


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
        return handover_column(obj)

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
        return error_text(item.last_error, 60) if item and item.state != Delivery.Status.DONE else ""

    @admin.display(description="Content")
    def content_pretty(self, obj):
        return pretty_json(obj.content)

    @admin.display(description="Raw payload")
    def raw_pretty(self, obj):
        return pretty_json(obj.raw)

    @admin.action(
        description="Resend the selected customer messages to the contact center", permissions=["change"]
    )
    def resend_selected(self, request, queryset):
        done = 0
        to_customers = queryset.filter(source=Message.Source.CCAAS).count()
        if to_customers:
            # Sending to customers again asks for confirmation, one message at a time, on its handover.
            self.message_user(
                request,
                f"Not resent: {plural(to_customers, 'agent message')} would reach the customer a second "
                "time; resend those one at a time from the handover's transcript.",
                messages.ERROR,
            )
            return
        for message in queryset.select_related("link")[:200]:
            try:
                operations.resend_message(message, actor=actor(request))
            except BridgeError as exc:
                self.message_user(request, f"{message.external_id}: {exc}", messages.ERROR)
                continue
            self.log_change(request, message.link, f"Resent message {message.external_id}.")
            done += 1
        self.message_user(request, f"{plural(done, 'message')} queued again.", messages.SUCCESS)


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
        return handover_column(obj)

    @admin.display(description="Payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)
