"""The handover page: why it needs attention, transcript, timeline, deliveries, and the buttons that
act on one handover (close, retry, route back, re-open, resend)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.timesince import timesince

from bridge import dashboard, operations
from bridge.admin.display import STATE_TONES, actor
from bridge.admin.forms import ReasonForm, ReopenForm
from bridge.exceptions import BridgeError
from bridge.models import CcaasEndpoint, ConversationLink, Delivery, Message, State


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


class HandoverPageMixin:
    """The detail page and its POST-only buttons; mixed into ConversationLinkAdmin."""

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
