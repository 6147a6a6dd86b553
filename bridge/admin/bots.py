"""Infobip external bots (external-bot mode): number, channel, endpoint, last message, open handovers.

Registration and secrets go through `manage.py bridge_bot` (it talks to Infobip); here operators see
the bots, and superusers may point one at another endpoint. The secret is never shown."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html

from bridge.admin.display import GuardedActionsMixin, badge, short
from bridge.models import OPEN_STATES, InfobipBot


@admin.register(InfobipBot)
class InfobipBotAdmin(GuardedActionsMixin, admin.ModelAdmin):
    list_display = (
        "display_name",
        "destination",
        "channel",
        "endpoint_name",
        "enabled_badge",
        "last_message_at",
        "open_handovers",
        "error",
    )
    list_filter = ("channel", "enabled", "endpoint")
    search_fields = ("display_name", "destination", "=bot_id")
    list_select_related = ("endpoint",)
    fields = (
        ("display_name", "bot_id"),
        ("channel", "destination"),
        "endpoint",
        ("enabled", "session_timeout_seconds"),
        "webhook",
        ("last_message_at", "last_checked_at"),
        "last_error",
    )
    readonly_fields = (
        "display_name",
        "bot_id",
        "channel",
        "destination",
        "enabled",
        "session_timeout_seconds",
        "webhook",
        "last_message_at",
        "last_checked_at",
        "last_error",
    )

    def has_add_permission(self, request):
        return False  # `manage.py bridge_bot register` creates the bot on Infobip too

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return False  # `manage.py bridge_bot remove` deletes it on Infobip too

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(open_count=Count("handovers", filter=Q(handovers__state__in=OPEN_STATES)))
        )

    @admin.display(description="Endpoint", ordering="endpoint__slug")
    def endpoint_name(self, obj):
        return obj.endpoint.slug if obj.endpoint else "(routing rules)"

    @admin.display(description="Enabled", ordering="enabled")
    def enabled_badge(self, obj):
        return badge("enabled", "good") if obj.enabled else badge("disabled", "bad")

    @admin.display(description="Open handovers", ordering="open_count")
    def open_handovers(self, obj):
        url = reverse("admin:bridge_conversationlink_changelist") + f"?bot__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.open_count)

    @admin.display(description="Last error")
    def error(self, obj):
        return short(obj.last_error, 80) if obj.last_error else "—"

    @admin.display(description="Webhook URL (the secret header is set on Infobip by bridge_bot)")
    def webhook(self, obj):
        return obj.webhook_url()
