"""Why a delivery failed, in terms of what an operator can do about it.

The engine classifies every failure once, when it happens (`cause_of`), and stores the cause on the
delivery; the console's advice, its buttons and the alerts read that cause instead of parsing error
text. `service` on an UpstreamError names who answered: "Infobip", or the contact-center endpoint.
"""

from __future__ import annotations

from django.db import models

from bridge.exceptions import (
    ConfigurationError,
    ConversationClosedError,
    InteractionOverError,
    NotFoundError,
    PermanentError,
    TransientError,
    UpstreamAuthError,
    UpstreamError,
)

INFOBIP = "Infobip"


class Cause(models.TextChoices):
    UNREACHABLE = "unreachable", "Contact center unreachable or refusing"
    CREDENTIALS = "credentials", "Contact center rejected the credentials or settings"
    INFOBIP_SETTINGS = "infobip_settings", "Infobip settings missing or rejected"
    CONVERSATION_GONE = "conversation_gone", "Conversation unknown or closed on Infobip"
    INTERACTION_OVER = "interaction_over", "Contact center says the interaction is over"
    RATE_LIMITED = "rate_limited", "Rate limited"
    OTHER = "other", "Unexpected error"


def from_infobip(exc: BaseException) -> bool:
    """Whether Infobip (not the contact center) answered or was being called."""
    if isinstance(exc, UpstreamError):
        return exc.service == INFOBIP
    return isinstance(exc, ConfigurationError) and str(exc).startswith("INFOBIP_")


def cause_of(exc: BaseException) -> str:
    """The Cause value for an exception raised by a delivery handler, a poll or a connection test."""
    infobip = from_infobip(exc)
    if isinstance(exc, ConfigurationError):
        return Cause.INFOBIP_SETTINGS if infobip else Cause.CREDENTIALS
    if isinstance(exc, UpstreamAuthError):
        return Cause.INFOBIP_SETTINGS if infobip else Cause.CREDENTIALS
    if isinstance(exc, TransientError) and exc.status == 429:
        return Cause.RATE_LIMITED
    if infobip:
        if isinstance(exc, NotFoundError | ConversationClosedError):
            return Cause.CONVERSATION_GONE
        return Cause.OTHER
    if isinstance(exc, InteractionOverError | NotFoundError):
        return Cause.INTERACTION_OVER
    if isinstance(exc, UpstreamError):
        return Cause.UNREACHABLE
    if isinstance(exc, PermanentError):  # pragma: no cover - PermanentError is an UpstreamError
        return Cause.UNREACHABLE
    return Cause.OTHER


def touches_endpoint(exc: BaseException) -> bool:
    """Whether the failure says something about the contact-center endpoint's health."""
    return isinstance(exc, UpstreamError | ConfigurationError) and not from_infobip(exc)
