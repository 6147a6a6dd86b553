"""Contact-center endpoints: settings (superusers only), webhook URL, health, Test connection."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from bridge import operations
from bridge.admin.display import GuardedActionsMixin, ago, badge, error_text, pretty_json
from bridge.admin.forms import EndpointForm
from bridge.connectors import get_connector
from bridge.exceptions import BridgeError
from bridge.models import CcaasEndpoint, Delivery


@admin.register(CcaasEndpoint)
class CcaasEndpointAdmin(GuardedActionsMixin, admin.ModelAdmin):
    form = EndpointForm
    list_display = (
        "slug",
        "kind",
        "health",
        "error",
        "failing",
        "last_success",
        "enabled_badge",
        "default",
        "name",
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

    # Test connection makes a live call and records the endpoint's health: operators who may act
    # (the "Operators" group), never read-only viewers.
    def has_test_permission(self, request, obj=None):
        return request.user.is_superuser or request.user.has_perm("bridge.change_conversationlink")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "can_test": self.has_test_permission(request)}
        if not self.has_change_permission(request):
            extra.update(show_close=False, title="Contact-center endpoint")
        return super().change_view(request, object_id, form_url, extra)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                failing_count=Subquery(
                    Delivery.objects.failing()
                    .filter(link__endpoint=OuterRef("pk"))
                    .order_by()
                    .values("link__endpoint")
                    .annotate(n=Count("pk"))
                    .values("n")[:1]
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

    @admin.display(description="Default", boolean=True, ordering="is_default")
    def default(self, obj):
        return obj.is_default

    @admin.display(description="Health")
    def health(self, obj):
        return badge(*obj.health)

    @admin.display(description="Last success", ordering="last_success_at")
    def last_success(self, obj):
        return ago(obj.last_success_at)

    @admin.display(description="Last error")
    def error(self, obj):
        return error_text(obj.last_error, 60)

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
            answer = operations.test_connection(endpoint)
        except BridgeError as exc:
            self.message_user(request, f"{endpoint.slug}: {exc}", messages.ERROR)
            self.log_change(request, endpoint, "Connection test failed.")
        else:
            self.message_user(request, f"{endpoint.slug}: connection OK: {answer}", messages.SUCCESS)
            self.log_change(request, endpoint, "Connection test succeeded.")

    def test_connection_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        endpoint = get_object_or_404(CcaasEndpoint, pk=pk)
        if not self.has_test_permission(request, endpoint):
            raise PermissionDenied
        self._test(request, endpoint)
        return HttpResponseRedirect(reverse("admin:bridge_ccaasendpoint_change", args=[endpoint.pk]))

    @admin.action(description="Test connection (a live call; the outcome is recorded)", permissions=["test"])
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
