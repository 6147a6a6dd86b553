"""Filters for the context card's HTML."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template

register = template.Library()


@register.filter
def when(value: str | None) -> str:
    """An ISO 8601 time as "29 Nov 2026 13:58 UTC"; empty for none, unchanged if unparseable."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")
