"""What every console page shows the same way: state badges, shortened text, pretty JSON, the
acting user's name, and the read-only base of rows only the bridge writes."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from bridge.models import Delivery, State

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


# How the timeline names its event kinds (HandoverEvent.kind), for people.
TIMELINE_LABELS = {
    "escalated": "Escalated",
    "opened": "Opened",
    "accepted": "Accepted by an agent",
    "retry": "Retry",
    "delivered": "Delivered after failing",
    "skipped": "Skipped (not sent)",
    "dead_letter": "Dead letter",
    "failed": "Could not be opened",
    "stuck": "Stuck",
    "closing": "Closing",
    "closed": "Closed",
    "operator_note": "Operator note",
    "routed_to_infobip": "Routed to Infobip's agents",
    "route_back": "Route back to Infobip's agents",
    "reopened": "Re-opened",
    "moved": "Moved to another endpoint",
    "resend": "Resent",
}


def timeline_label(kind: str) -> str:
    return TIMELINE_LABELS.get(kind) or kind.replace("_", " ").capitalize()


def ago(when) -> str:
    """ "3 minutes ago", "just now": the largest unit only, for narrow list columns."""
    if when is None:
        return "—"
    text = timesince(when).split(",")[0]
    return "just now" if text.startswith("0\xa0") or text.startswith("0 ") else f"{text} ago"


def plural(count: int, singular: str, many: str | None = None) -> str:
    """ "1 handover", "2 handovers"; `many` for irregular plurals ("deliveries")."""
    return f"{count} {singular if count == 1 else (many or singular + 's')}"


def error_text(error: str, length: int = 60):
    """A last-error cell: shortened, the whole text on hover, nothing when there is no error."""
    if not error:
        return ""
    return format_html('<span class="hb-error" title="{}">{}</span>', error, short(error, length))


def handover_column(obj):
    """A link to the row's handover (lists of messages, deliveries, events)."""
    if obj.link_id is None:
        return "—"
    url = reverse("admin:bridge_conversationlink_change", args=[obj.link_id])
    return format_html('<a href="{}">{}</a>', url, short(obj.link.conversation_id, 36))


class GuardedActionsMixin:
    """A POST that names an action the user may not run is refused with 403, not silently ignored
    (Django's default answers 302 with "No action selected")."""

    def changelist_view(self, request, extra_context=None):
        action = request.POST.get("action") if request.method == "POST" else None
        if action and action not in self.get_actions(request):
            raise PermissionDenied
        # "Handovers", not Django's "Select handover to change" (most operators only read).
        extra_context = {"title": self.model._meta.verbose_name_plural.capitalize(), **(extra_context or {})}
        return super().changelist_view(request, extra_context)


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


class ReadOnlyMixin(GuardedActionsMixin):
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
            "show_close": False,
            "title": self.model._meta.verbose_name.capitalize(),
        }
        return super().change_view(request, object_id, form_url, extra_context)
