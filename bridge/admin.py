"""The operator console: handovers, what is stuck and why, the actions that fix it, endpoints.

Every action is a few lines calling bridge.services / bridge.operations and is written to the admin
log with the user who ran it. Lists never count whole big tables (show_full_result_count off) and
filter only on indexed columns.
"""

from __future__ import annotations

import json
import logging

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from bridge import dashboard, delivery, operations, services
from bridge.admin_forms import CloseActionForm, EndpointForm, ReasonForm, ReopenForm
from bridge.connectors import get_connector
from bridge.exceptions import BridgeError
from bridge.models import (
    OPEN_STATES,
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    InboundEvent,
    Message,
    State,
)
from bridge.types import CloseReason

logger = logging.getLogger(__name__)

STATE_TONES = {
    State.REQUESTED: "warn",
    State.ACTIVE: "ok",
    State.CLOSING: "info",
    State.CLOSED: "muted",
    State.FAILED: "bad",
    Delivery.Status.PENDING: "warn",
    Delivery.Status.IN_FLIGHT: "info",
    Delivery.Status.DONE: "ok",
    Delivery.Status.SKIPPED: "muted",
    Delivery.Status.DEAD: "bad",
}


def actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


def badge(text: str, tone: str = "muted"):
    return format_html('<span class="hb-badge hb-{}">{}</span>', tone, text)


def pretty_json(value) -> str:
    return format_html(
        '<pre class="hb-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True, default=str)
    )


def short(text: str, length: int = 90) -> str:
    text = (text or "").strip()
    return text if len(text) <= length else text[: length - 1] + "…"


class ReadOnlyMixin:
    """Rows are written by the bridge only; operators change them through actions."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + list(self.readonly_extra)

    readonly_extra: tuple[str, ...] = ()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)


# --- handovers -----------------------------------------------------------------------------------
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


def diagnose(link: ConversationLink, deliveries: list[Delivery]) -> list[str]:
    """Why this handover needs attention, in an operator's words (empty when nothing is wrong)."""
    now = timezone.now()
    cutoff = dashboard.stuck_cutoff(now)
    reasons = []
    if link.state == State.REQUESTED:
        opening = next((d for d in deliveries if d.kind == Delivery.Kind.OPEN), None)
        waited = timesince(link.escalated_at, now)
        if link.escalated_at < cutoff:
            reasons.append(f"The interaction has not been opened {waited} after the escalation.")
        if opening and opening.last_error:
            reasons.append(f"Opening it failed {opening.attempts} time(s); last error: {opening.last_error}")
    if link.state == State.CLOSING and link.closing_at and link.closing_at < cutoff:
        reasons.append(f"The close started {timesince(link.closing_at, now)} ago and has not finished.")
    if link.state == State.FAILED:
        reasons.append(f"The interaction could not be opened: {link.last_error or 'see the timeline'}")
    for item in deliveries:
        if item.state == Delivery.Status.DEAD and link.state != State.FAILED:
            reasons.append(
                f"{item.get_kind_display()} #{item.pk} {item.get_lane_display().lower()} is a dead letter: {item.last_error}"
            )
        elif item.failing_since and not item.is_terminal:
            reasons.append(
                f"{item.get_kind_display()} #{item.pk} {item.get_lane_display().lower()} has been failing for "
                f"{timesince(item.failing_since, now)} ({item.attempts} attempts): {item.last_error}"
            )
    return reasons[:20]


@admin.register(ConversationLink)
class ConversationLinkAdmin(ReadOnlyMixin, admin.ModelAdmin):
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
    list_filter = (AttentionFilter, "state", "endpoint", ChannelFilter)
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
                    ("endpoint", "interaction_id"),
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

    # --- buttons on the detail page ----------------------------------------------------------------
    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<uuid:pk>/operate/<str:operation>/",
                view(self.operate),
                name="bridge_conversationlink_operate",
            ),
            path(
                "<uuid:pk>/resend/<int:message_id>/",
                view(self.resend),
                name="bridge_conversationlink_resend",
            ),
            *super().get_urls(),
        ]

    def _guard(self, request, pk):
        if request.method != "POST":
            return None, HttpResponseNotAllowed(["POST"])
        link = get_object_or_404(ConversationLink, pk=pk)
        if not self.has_change_permission(request, link):
            raise PermissionDenied
        return link, None

    def operate(self, request, pk, operation):
        link, refusal = self._guard(request, pk)
        if refusal:
            return refusal
        back = reverse("admin:bridge_conversationlink_change", args=[link.pk])
        who = actor(request)
        try:
            if operation == "close":
                form = ReasonForm(request.POST)
                reason = form.cleaned_data["reason"] if form.is_valid() else ""
                if self._close(request, link, reason):
                    self.message_user(request, "Closing on both sides.", messages.SUCCESS)
                else:
                    self.message_user(
                        request, f"Already {link.get_state_display().lower()}.", messages.WARNING
                    )
            elif operation == "retry":
                count = self._retry(request, link)
                self.message_user(
                    request, f"{count} deliveries queued again, in their original order.", messages.SUCCESS
                )
            elif operation == "route":
                operations.route_to_infobip(link, actor=who)
                self.log_change(
                    request, link, "Routed back to Infobip's agents; contact-center side closing."
                )
                self.message_user(
                    request,
                    "Routed to Infobip's agents; the contact-center side is closing.",
                    messages.SUCCESS,
                )
            elif operation == "reopen":
                form = ReopenForm(request.POST)
                if not form.is_valid():
                    raise operations.OperationError("choose an enabled endpoint")
                target = form.cleaned_data["endpoint"]
                new = operations.reopen_on_endpoint(link, target, actor=who)
                self.log_change(request, link, f"Re-opened on endpoint {target.slug}.")
                self.message_user(request, f"Opening on {target.slug}.", messages.SUCCESS)
                back = reverse("admin:bridge_conversationlink_change", args=[new.pk])
            else:
                self.message_user(request, f"Unknown operation {operation!r}.", messages.ERROR)
        except BridgeError as exc:
            self.message_user(request, f"Not done: {exc}", messages.ERROR)
        return HttpResponseRedirect(back)

    def resend(self, request, pk, message_id):
        link, refusal = self._guard(request, pk)
        if refusal:
            return refusal
        message = get_object_or_404(Message, pk=message_id, link=link)
        try:
            operations.resend_message(message, actor=actor(request))
        except BridgeError as exc:
            self.message_user(request, f"Not done: {exc}", messages.ERROR)
        else:
            self.log_change(request, link, f"Resent message {message.external_id}.")
            self.message_user(request, "The message is queued again.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:bridge_conversationlink_change", args=[link.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        link = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if link is not None:
            deliveries = list(Delivery.objects.filter(link=link).order_by(*Delivery.LANE_ORDER)[:1000])
            by_message = {d.message_id: d for d in deliveries if d.message_id}
            transcript = []
            for row in Message.objects.filter(link=link).order_by("created_at", "id")[:1000]:
                item = by_message.get(row.pk)
                transcript.append(
                    {
                        "message": row,
                        "who": row.author_type.lower() if row.source == Message.Source.INFOBIP else "agent",
                        "delivery": item,
                        "tone": STATE_TONES.get(item.state, "muted") if item else "muted",
                    }
                )
            extra.update(
                transcript=transcript,
                timeline=list(link.timeline.order_by("at", "id")[:500]),
                deliveries=[(d, STATE_TONES.get(d.state, "muted")) for d in deliveries],
                diagnosis=diagnose(link, deliveries),
                is_stuck=link.is_stuck(),
                can_operate=self.has_change_permission(request, link),
                reopen_endpoints=CcaasEndpoint.objects.filter(enabled=True).exclude(pk=link.endpoint_id),
                state_tone=STATE_TONES.get(link.state, "muted"),
                is_open=link.is_open,
                has_failures=any(
                    d.state == Delivery.Status.DEAD or (d.failing_since and not d.is_terminal)
                    for d in deliveries
                ),
            )
        return super().change_view(request, object_id, form_url, extra)


# --- messages, deliveries, inbound events -----------------------------------------------------------
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


# --- endpoints ------------------------------------------------------------------------------------
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
