"""The handover page: why it needs attention (with advice per cause), transcript, timeline,
deliveries, and the buttons that act on one handover. Each button is a POST to one small function
that calls one lifecycle function (close, retry, route back, re-open, resend)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from bridge import operations
from bridge.admin.advice import diagnose, offered_actions
from bridge.admin.display import STATE_TONES, actor, plural, timeline_label
from bridge.admin.forms import ReasonForm, ReopenForm
from bridge.exceptions import BridgeError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message, State


def transcript(link: ConversationLink, deliveries: list[Delivery]) -> list[dict]:
    """Every recorded message of the handover with its delivery, oldest first. A customer message
    queued while the interaction is not open yet is marked as waiting for the open."""
    by_message = {d.message_id: d for d in deliveries if d.message_id}
    rows = []
    for row in Message.objects.filter(link=link).order_by("created_at", "id")[:1000]:
        item = by_message.get(row.pk)
        waiting_open = (
            item is not None
            and item.lane == Delivery.Lane.TO_CCAAS
            and not item.is_terminal
            and link.state == State.REQUESTED
        )
        rows.append(
            {
                "message": row,
                "who": row.author_type.lower() if row.source == Message.Source.INFOBIP else "agent",
                "delivery": item,
                "tone": STATE_TONES.get(item.state, "muted") if item else "muted",
                "waiting_open": waiting_open,
                "to_customer": row.source == Message.Source.CCAAS,
            }
        )
    return rows


def timeline(link: ConversationLink) -> list[dict]:
    return [
        {"event": event, "label": timeline_label(event.kind)}
        for event in link.timeline.order_by("at", "id")[:500]
    ]


class HandoverPageMixin:
    """The detail page and its POST-only buttons; mixed into ConversationLinkAdmin."""

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

    # --- one small function per button ------------------------------------------------------------
    def _op_close(self, request, link):
        form = ReasonForm(request.POST)
        reason = form.cleaned_data["reason"] if form.is_valid() else ""
        if self._close(request, link, reason):
            self.message_user(request, "Closing on both sides.", messages.SUCCESS)
        else:
            self.message_user(request, f"Already {link.get_state_display().lower()}.", messages.WARNING)

    def _op_retry(self, request, link):
        count = self._retry(request, link)
        text = f"{plural(count, 'delivery', 'deliveries')} queued again, in their original order."
        self.message_user(request, text, messages.SUCCESS)

    def _op_route(self, request, link):
        self._route(request, link)
        text = "Routed to Infobip's agents; the contact-center side is closing."
        self.message_user(request, text, messages.SUCCESS)

    def _op_reopen(self, request, link):
        form = ReopenForm(request.POST)
        if not form.is_valid():
            raise operations.OperationError("choose the endpoint to re-open the handover on")
        target = form.cleaned_data["endpoint"]
        new = operations.reopen_on_endpoint(link, target, actor=actor(request))
        self.log_change(request, link, f"Re-opened on endpoint {target.slug}.")
        self.message_user(request, f"Opening on {target.slug}.", messages.SUCCESS)
        return new

    OPERATIONS = {"close": _op_close, "retry": _op_retry, "route": _op_route, "reopen": _op_reopen}

    def operate(self, request, pk, operation):
        link, refusal = self._guard(request, pk)
        if refusal:
            return refusal
        run = self.OPERATIONS.get(operation)
        back = link
        if run is None:
            self.message_user(request, f"Unknown operation {operation!r}.", messages.ERROR)
        else:
            try:
                back = run(self, request, link) or link
            except BridgeError as exc:
                self.message_user(request, f"Not done: {exc}", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:bridge_conversationlink_change", args=[back.pk]))

    def resend(self, request, pk, message_id):
        link, refusal = self._guard(request, pk)
        if refusal:
            return refusal
        message = get_object_or_404(Message, pk=message_id, link=link)
        back = HttpResponseRedirect(reverse("admin:bridge_conversationlink_change", args=[link.pk]))
        if message.source == Message.Source.CCAAS and request.POST.get("confirm") != "yes":
            self.message_user(
                request,
                "Not resent: sending an agent message to the customer again needs confirmation.",
                messages.ERROR,
            )
            return back
        try:
            operations.resend_message(message, actor=actor(request))
        except BridgeError as exc:
            self.message_user(request, f"Not done: {exc}", messages.ERROR)
        else:
            self.log_change(request, link, f"Resent message {message.external_id}.")
            self.message_user(request, "The message is queued again.", messages.SUCCESS)
        return back

    def change_view(self, request, object_id, form_url="", extra_context=None):
        link = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if link is not None:
            deliveries = list(Delivery.objects.filter(link=link).order_by(*Delivery.LANE_ORDER)[:1000])
            reasons = diagnose(link, deliveries)
            has_failures = any(
                d.state == Delivery.Status.DEAD or (d.failing_since and not d.is_terminal) for d in deliveries
            )
            offered = offered_actions(link, reasons)
            if not has_failures:
                offered.discard("retry")
            extra.update(
                transcript=transcript(link, deliveries),
                timeline=timeline(link),
                deliveries=[(d, STATE_TONES.get(d.state, "muted")) for d in deliveries],
                diagnosis=reasons,
                offered=offered,
                is_stuck=link.is_stuck(),
                can_operate=self.has_change_permission(request, link),
                reopen_endpoints=CcaasEndpoint.objects.filter(enabled=True).exclude(pk=link.endpoint_id),
                endpoint_url=(
                    reverse("admin:bridge_ccaasendpoint_change", args=[link.endpoint_id])
                    if link.endpoint_id
                    else ""
                ),
                state_tone=STATE_TONES.get(link.state, "muted"),
                is_open=link.is_open,
                can_resend=link.state in (State.REQUESTED, State.ACTIVE),
                has_failures=has_failures,
            )
        return super().change_view(request, object_id, form_url, extra)
