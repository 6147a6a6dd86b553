"""Contact-center endpoints: settings (superusers only), webhook URL, health, Test connection."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from bridge.admin.display import badge, pretty_json, short
from bridge.admin.forms import EndpointForm
from bridge.connectors import get_connector
from bridge.exceptions import BridgeError
from bridge.fields import is_readable
from bridge.models import CcaasEndpoint, Delivery


@admin.register(CcaasEndpoint)
class CcaasEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = (
        "slug",
        "name",
        "kind",
        "enabled_badge",
        "is_default",
        "health",
        "last_success_at",
        "error",
        "failing",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("slug", "name")
    actions = ("test_connection", "enable", "disable")
    change_form_template = "admin/bridge/ccaasendpoint/change_form.html"
    readonly_fields = ("webhook", "health", "last_success_at", "last_error", "last_error_at", "config_view")

    # Only superusers configure contact centers and their credentials.
    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                failing_count=Count(
                    "handovers__deliveries",
                    filter=Q(handovers__deliveries__failing_since__isnull=False)
                    & Q(
                        handovers__deliveries__state__in=[Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT]
                    ),
                )
            )
        )

    def get_fieldsets(self, request, obj=None):
        base = [(None, {"fields": ("slug", "name", "kind", ("enabled", "is_default"))})]
        if self.has_change_permission(request, obj):
            base += self.get_form(request, obj)(instance=obj).connector_fieldsets()
        else:
            base.append(("Settings", {"fields": ("config_view",)}))
        base.append(("Routing", {"classes": ("collapse",), "fields": ("routing_order", "routing_rules")}))
        if obj is not None:
            base.append(
                (
                    "Webhook and health",
                    {"fields": ("webhook", "health", "last_success_at", "last_error", "last_error_at")},
                )
            )
        return base

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The connector fields are the form's own, not the model's; view-only users get no form fields.
        kwargs["fields"] = (
            None if self.has_change_permission(request, obj) else list(EndpointForm.Meta.fields)
        )
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="Enabled", ordering="enabled")
    def enabled_badge(self, obj):
        return badge("enabled", "ok") if obj.enabled else badge("disabled", "muted")

    @admin.display(description="Health")
    def health(self, obj):
        if not obj.enabled:
            return badge("disabled", "muted")
        if not is_readable(obj):
            return badge("credentials unreadable", "bad")
        if obj.auth_failed:
            return badge("credentials refused", "bad")
        if obj.last_error_at and (obj.last_success_at is None or obj.last_error_at > obj.last_success_at):
            return badge("failing", "bad")
        if obj.last_success_at:
            return badge("healthy", "ok")
        return badge("no traffic yet", "muted")

    @admin.display(description="Last error")
    def error(self, obj):
        return format_html(
            '<span class="hb-error" title="{}">{}</span>', obj.last_error, short(obj.last_error, 60)
        )

    @admin.display(description="Deliveries failing")
    def failing(self, obj):
        count = getattr(obj, "failing_count", 0)
        if not count:
            return "0"
        url = (
            reverse("admin:bridge_delivery_changelist")
            + f"?status=failing&link__endpoint__id__exact={obj.pk}"
        )
        return format_html('<a class="hb-badge hb-bad" href="{}">{}</a>', url, count)

    @admin.display(description="Webhook URL")
    def webhook(self, obj):
        if obj is None or not obj.pk:
            return "Shown once the endpoint is saved."
        try:
            hint = get_connector(obj).webhook_instructions()
        except BridgeError:
            hint = ""
        return format_html(
            '<div class="hb-copy"><input type="text" readonly value="{}" id="hb-webhook-url" size="70">'
            '<button type="button" class="button" data-copy="hb-webhook-url">Copy</button></div>'
            '<div class="help">{}</div>',
            obj.webhook_url(),
            hint,
        )

    @admin.display(description="Settings")
    def config_view(self, obj):
        return pretty_json(obj.config) if obj else ""

    def get_urls(self):
        return [
            path(
                "<int:pk>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="bridge_ccaasendpoint_test",
            ),
            *super().get_urls(),
        ]

    def _test(self, request, endpoint) -> None:
        try:
            answer = get_connector(endpoint).check_connection()
        except (BridgeError, NotImplementedError) as exc:
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
                last_error=str(exc)[:2000], last_error_at=timezone.now()
            )
            self.message_user(request, f"{endpoint.slug}: connection test failed: {exc}", messages.ERROR)
            self.log_change(request, endpoint, "Connection test failed.")
        else:
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
                last_success_at=timezone.now(), auth_failed=False
            )
            self.message_user(request, f"{endpoint.slug}: connection OK: {answer}", messages.SUCCESS)
            self.log_change(request, endpoint, "Connection test succeeded.")

    def test_connection_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        endpoint = get_object_or_404(CcaasEndpoint, pk=pk)
        if not self.has_view_permission(request, endpoint):
            raise PermissionDenied
        self._test(request, endpoint)
        return HttpResponseRedirect(reverse("admin:bridge_ccaasendpoint_change", args=[endpoint.pk]))

    @admin.action(description="Test connection")
    def test_connection(self, request, queryset):
        for endpoint in queryset[:20]:
            self._test(request, endpoint)

    @admin.action(description="Enable", permissions=["change"])
    def enable(self, request, queryset):
        for endpoint in queryset:
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(enabled=True)
            self.log_change(request, endpoint, "Enabled.")
        self.message_user(request, "Enabled.", messages.SUCCESS)

    @admin.action(description="Disable (no new handovers)", permissions=["change"])
    def disable(self, request, queryset):
        for endpoint in queryset:
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
            self.log_change(request, endpoint, "Disabled.")
        self.message_user(request, "Disabled.", messages.SUCCESS)
