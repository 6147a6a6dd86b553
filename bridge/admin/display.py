"""What every console page shows the same way: state badges, shortened text, pretty JSON, the
acting user's name, and the read-only base of rows only the bridge writes."""

from __future__ import annotations

import json

from django.http import HttpRequest
from django.utils.html import format_html

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
