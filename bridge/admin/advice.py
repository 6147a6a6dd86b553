"""Why a handover needs attention and what an operator can do about it, per cause.

Each reason carries the failure's cause (bridge.causes), the advice in an operator's words, and the
actions that fit it; the handover page offers exactly those actions, so an operator is never asked to
retry what retrying cannot fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from django.utils.timesince import timesince

from bridge.causes import Cause
from bridge.models import ConversationLink, Delivery, State, stuck_cutoff

# What each cause means for the operator, and which actions fit it.
ADVICE: dict[str, tuple[str, tuple[str, ...]]] = {
    Cause.UNREACHABLE: (
        "The contact center cannot be reached or refuses the call. Fix the endpoint (address, "
        "network, the contact center's status), then Retry. Or re-open the handover on another endpoint.",
        ("retry", "endpoint", "reopen", "route", "close"),
    ),
    Cause.CREDENTIALS: (
        "The contact center rejected the bridge's credentials or settings. Edit the endpoint's "
        "credentials, press Test connection, then Retry.",
        ("endpoint", "retry", "route", "close"),
    ),
    Cause.INFOBIP_SETTINGS: (
        "Infobip's settings are missing or were rejected. Fix the bridge's configuration: "
        "INFOBIP_BASE_URL and INFOBIP_API_KEY (the key needs the conversations:manage scope), restart "
        "the bridge, then Retry.",
        ("retry", "close"),
    ),
    Cause.CONVERSATION_GONE: (
        "The conversation does not exist on Infobip or is already closed there. Retrying cannot help: "
        "close the handover.",
        ("close",),
    ),
    Cause.INTERACTION_OVER: (
        "The contact center says the interaction is over. Close the handover, or re-open it on "
        "another endpoint.",
        ("close", "reopen", "route"),
    ),
    Cause.RATE_LIMITED: (
        "The contact center asked the bridge to slow down. Nothing to do: the bridge tries again by "
        "itself at the next attempt time.",
        ("close",),
    ),
    Cause.OTHER: (
        "An unexpected error. Read it on the timeline; Retry once the cause is fixed.",
        ("retry", "reopen", "route", "close"),
    ),
}
NOT_OPENED = (
    "Nothing has tried to open the interaction yet: check that the bridge's worker is running "
    "(/healthz, the worker heartbeat). Or re-open the handover on another endpoint.",
    ("reopen", "route", "close"),
)
CLOSING = ("The close has not finished; Retry it, or look at the close's error below.", ("retry",))


@dataclass
class Reason:
    text: str
    cause: str
    advice: str
    actions: tuple[str, ...]
    next_attempt_at: object = None


def _reason(text: str, cause: str, item: Delivery | None = None) -> Reason:
    advice, actions = ADVICE.get(cause) or ADVICE[Cause.OTHER]
    when = item.next_attempt_at if item is not None and item.state == Delivery.Status.PENDING else None
    return Reason(text, cause, advice, actions, when)


def diagnose(link: ConversationLink, deliveries: list[Delivery]) -> list[Reason]:
    """Why this handover needs attention, in an operator's words (empty when nothing is wrong)."""
    now = timezone.now()
    cutoff = stuck_cutoff(now)
    reasons: list[Reason] = []
    opening = next((d for d in deliveries if d.kind == Delivery.Kind.OPEN), None)
    if link.state == State.REQUESTED:
        waited = timesince(link.escalated_at, now)
        if opening and opening.last_error and not opening.is_terminal:
            tries = f"{opening.attempts} time{'' if opening.attempts == 1 else 's'}"
            reasons.append(
                _reason(
                    f"Opening the interaction failed {tries}; last error: {opening.last_error}",
                    opening.cause or Cause.OTHER,
                    opening,
                )
            )
        elif link.escalated_at < cutoff:
            advice, actions = NOT_OPENED
            reasons.append(
                Reason(
                    f"The interaction has not been opened {waited} after the escalation.", "", advice, actions
                )
            )
    if link.state == State.FAILED:
        cause = opening.cause if opening and opening.cause else Cause.OTHER
        reasons.append(
            _reason(f"The interaction could not be opened: {link.last_error or 'see the timeline'}", cause)
        )
    if link.state == State.CLOSING and link.closing_at and link.closing_at < cutoff:
        advice, actions = CLOSING
        reasons.append(
            Reason(
                f"The close started {timesince(link.closing_at, now)} ago and has not finished.",
                "",
                advice,
                actions,
            )
        )
    for item in deliveries:
        if item is opening and link.state in (State.REQUESTED, State.FAILED):
            continue
        what = f"{item.get_kind_display()} #{item.pk} {item.get_lane_display().lower()}"
        if item.state == Delivery.Status.DEAD and link.state != State.FAILED:
            reasons.append(_reason(f"{what} is a dead letter: {item.last_error}", item.cause or Cause.OTHER))
        elif item.failing_since and not item.is_terminal:
            tries = f"{item.attempts} attempt{'' if item.attempts == 1 else 's'}"
            reasons.append(
                _reason(
                    f"{what} has been failing for {timesince(item.failing_since, now)} ({tries}): {item.last_error}",
                    item.cause or Cause.OTHER,
                    item,
                )
            )
    return reasons[:20]


def offered_actions(link: ConversationLink, reasons: list[Reason]) -> set[str]:
    """The actions the page shows: those that fit the reasons (all when nothing is wrong), and only
    those that apply to the handover's state."""
    if reasons:
        wanted = {action for reason in reasons for action in reason.actions}
    else:
        wanted = {"close", "route", "reopen", "retry"}
    applicable = set()
    if link.state in (State.REQUESTED, State.ACTIVE, State.FAILED):
        applicable.add("close")
    if link.state in (State.REQUESTED, State.ACTIVE):
        applicable.add("route")
    if link.state in (State.REQUESTED, State.FAILED, State.CLOSED):
        applicable.add("reopen")
    applicable.update({"retry", "endpoint"})
    return wanted & applicable
