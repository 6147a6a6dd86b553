"""Alerts to people: incidents found from the models' predicates, told once when they start and once
when they are over, to the channels operators subscribed in the console, through an outbox.

    evaluate()  compares what is wrong now (stuck handovers, handovers with dead letters, unhealthy
                endpoints, the longest-waiting customer, and with `check_worker` the ticker's
                heartbeat) with the open AlertIncidents: opens new ones, resolves those that are over,
                and queues one AlertNotification per subscribed channel for each change.
    send_due()  sends queued notifications: e-mail with Django's mail settings, webhooks (Slack, Teams,
                generic JSON) through bridge.http (timeouts, SSRF guard). A failure is retried with the
                delivery engine's backoff and dead-lettered after BRIDGE_RETRY_MAX_ATTEMPTS; the channel
                shows its last error.

Texts carry kinds, ids, counts, endpoint names and failure causes only: never message content,
error bodies or credentials. Each channel sends at most `max_per_hour` messages an hour; the rest are
recorded as not sent (rate limit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from bridge import http
from bridge.delivery import backoff_seconds
from bridge.exceptions import BridgeError
from bridge.models import (
    AlertChannel,
    AlertIncident,
    AlertNotification,
    CcaasEndpoint,
    ConversationLink,
    Delivery,
    Lease,
)

logger = logging.getLogger(__name__)

Kind = AlertIncident.Kind
HEARTBEAT_LEASE = "ticker"  # periodic.TICKER_LEASE: renewed every tick while a worker runs the ticker
LIMIT = 200  # incidents of one kind looked at per evaluation


@dataclass
class Evaluated:
    opened: int = 0
    resolved: int = 0
    queued: int = 0


def _current(now, *, check_worker: bool) -> dict[str, dict[str, str]]:
    """What is wrong right now: {kind: {key: summary}}."""
    found: dict[str, dict[str, str]] = {kind: {} for kind in Kind.values}
    for link in ConversationLink.objects.stuck(now).select_related("endpoint")[:LIMIT]:
        found[Kind.STUCK][str(link.pk)] = (
            f"Handover {link.pk} (Infobip conversation {link.conversation_id}) on "
            f"{link.endpoint or 'no endpoint yet'} is stuck ({link.get_state_display().lower()})."
        )
    dead = ConversationLink.objects.with_dead_letters().exclude(state="CLOSED").select_related("endpoint")
    for link in dead[:LIMIT]:
        causes = sorted(
            {d.get_cause_display() or "unknown cause" for d in Delivery.objects.dead().filter(link=link)[:20]}
        )
        found[Kind.DEAD_LETTER][str(link.pk)] = (
            f"Handover {link.pk} (Infobip conversation {link.conversation_id}) on {link.endpoint or '-'} "
            f"has dead letters: {', '.join(causes)}."
        )
    for endpoint in CcaasEndpoint.objects.unhealthy()[:LIMIT]:
        label, _ = endpoint.health
        found[Kind.ENDPOINT][endpoint.slug] = f"Endpoint {endpoint.slug} ({endpoint.kind}) is {label}."
    oldest = Delivery.objects.oldest_waiting_customer()
    if oldest is not None and (now - oldest.sort_at).total_seconds() > settings.BRIDGE_ALERT_WAITING_SECONDS:
        minutes = int((now - oldest.sort_at).total_seconds() // 60)
        found[Kind.WAITING]["oldest"] = (
            f"A customer has waited {minutes} minutes for the contact center (handover {oldest.link_id})."
        )
    if check_worker:
        grace = now - timedelta(seconds=settings.BRIDGE_ALERT_HEARTBEAT_SECONDS)
        if not Lease.objects.filter(name=HEARTBEAT_LEASE, expires_at__gt=grace).exists():
            found[Kind.WORKER]["ticker"] = (
                "No worker has run the ticker for "
                f"{int(settings.BRIDGE_ALERT_HEARTBEAT_SECONDS)} seconds: is `manage.py qcluster` running?"
            )
    return found


def evaluate(now=None, *, check_worker: bool = False) -> Evaluated:
    """Open and resolve incidents to match what is wrong now; queue their notifications."""
    now = now or timezone.now()
    result = Evaluated()
    found = _current(now, check_worker=check_worker)
    for kind, items in found.items():
        if kind == Kind.WORKER and not check_worker:
            continue  # only a process outside the worker can tell that the worker is gone
        open_now = {i.key: i for i in AlertIncident.objects.filter(kind=kind, resolved_at__isnull=True)}
        for key, summary in items.items():
            if key in open_now:
                continue
            try:
                with transaction.atomic():
                    incident = AlertIncident.objects.create(kind=kind, key=key, summary=summary[:500])
                    result.queued += _queue(incident, recovery=False)
            except IntegrityError:  # another ticker opened it a moment ago
                continue
            result.opened += 1
        for key, incident in open_now.items():
            if key in items:
                continue
            with transaction.atomic():
                if AlertIncident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
                    resolved_at=now
                ):
                    incident.resolved_at = now
                    result.queued += _queue(incident, recovery=True)
                    result.resolved += 1
    return result


def _queue(incident: AlertIncident, *, recovery: bool) -> int:
    if recovery:
        # The recovery goes to the channels that were told about the start, and only to them.
        channels = AlertChannel.objects.filter(
            notifications__incident=incident, notifications__recovery=False
        ).distinct()
        subject = f"Resolved: {incident.get_kind_display()}"
        took = _duration(incident.resolved_at - incident.opened_at)
        text = f"Resolved after {took}: {incident.summary}"
    else:
        channels = [c for c in AlertChannel.objects.filter(enabled=True) if incident.kind in (c.events or [])]
        subject = f"{incident.get_kind_display()}"
        text = incident.summary
    console = f"{settings.BRIDGE_PUBLIC_URL}/admin/"
    rows = [
        AlertNotification(
            channel=channel,
            incident=incident,
            recovery=recovery,
            subject=f"[Handover Bridge] {subject}"[:255],
            text=f"{text}\n\nConsole: {console}",
        )
        for channel in channels
    ]
    AlertNotification.objects.bulk_create(rows)
    return len(rows)


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}" if minutes else "less than a minute"


def payload(channel: AlertChannel, note: AlertNotification) -> dict:
    """The webhook body in the channel's format (Slack and Teams incoming webhooks, or generic JSON).

    Slack: https://api.slack.com/messaging/webhooks ({"text": ...}).
    Teams: https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
    (a MessageCard with summary, title and text). Generic: the fields below.
    """
    if channel.kind == AlertChannel.Kind.SLACK:
        return {"text": f"*{note.subject}*\n{note.text}"}
    if channel.kind == AlertChannel.Kind.TEAMS:
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": note.subject,
            "title": note.subject,
            "text": note.text.replace("\n", "<br>"),
        }
    incident = note.incident
    return {
        "event": incident.kind,
        "status": "resolved" if note.recovery else "opened",
        "key": incident.key,
        "subject": note.subject,
        "text": note.text,
        "openedAt": incident.opened_at.isoformat(),
        "resolvedAt": incident.resolved_at.isoformat() if incident.resolved_at else None,
    }


def _send(channel: AlertChannel, note: AlertNotification) -> None:
    target = channel.target or {}
    if channel.kind == AlertChannel.Kind.EMAIL:
        recipients = [a for a in (target.get("to") or []) if a]
        if not recipients:
            raise BridgeError(f"alert channel {channel.name}: no recipient address")
        send_mail(note.subject, note.text, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
        return
    url = target.get("url") or ""
    if not url:
        raise BridgeError(f"alert channel {channel.name}: no webhook URL")
    session = http.make_session(reuse_key=f"alert:{channel.pk}")
    http.request(
        session,
        "POST",
        url,
        service=f"alert channel {channel.name}",
        check_url=True,
        json=payload(channel, note),
    )


def send_due(now=None, *, limit: int = 50) -> int:
    """Send the due notifications (oldest first); return how many were sent."""
    now = now or timezone.now()
    sent = 0
    due = AlertNotification.objects.filter(state=AlertNotification.Status.PENDING, next_attempt_at__lte=now)
    for note in due.select_related("channel", "incident").order_by("id")[:limit]:
        channel = note.channel
        hour_ago = now - timedelta(hours=1)
        if channel.notifications.filter(
            state=AlertNotification.Status.DONE, sent_at__gt=hour_ago
        ).count() >= (channel.max_per_hour):
            AlertNotification.objects.filter(pk=note.pk).update(
                state=AlertNotification.Status.SKIPPED,
                last_error=f"rate limit: {channel.max_per_hour} an hour",
            )
            continue
        claimed = AlertNotification.objects.filter(
            pk=note.pk, state=AlertNotification.Status.PENDING, attempts=note.attempts
        ).update(
            attempts=note.attempts + 1, next_attempt_at=now + timedelta(seconds=settings.BRIDGE_LEASE_SECONDS)
        )
        if not claimed:
            continue  # another sender has it
        note.attempts += 1
        try:
            _send(channel, note)
        except Exception as exc:  # every failure is recorded and retried; none stops the others
            error = (str(exc) or type(exc).__name__)[:2000]
            dead = note.attempts >= settings.BRIDGE_RETRY_MAX_ATTEMPTS
            AlertNotification.objects.filter(pk=note.pk).update(
                state=AlertNotification.Status.DEAD if dead else AlertNotification.Status.PENDING,
                next_attempt_at=now + timedelta(seconds=backoff_seconds(note.attempts)),
                last_error=error,
            )
            AlertChannel.objects.filter(pk=channel.pk).update(last_error=error, last_error_at=now)
            logger.warning(
                "alert %s to channel %s failed (attempt %s): %s", note.pk, channel.name, note.attempts, error
            )
            continue
        AlertNotification.objects.filter(pk=note.pk).update(
            state=AlertNotification.Status.DONE, sent_at=now, last_error=""
        )
        AlertChannel.objects.filter(pk=channel.pk).update(last_sent_at=now, last_error="")
        sent += 1
    return sent


def run(*, check_worker: bool = False) -> tuple[Evaluated, int]:
    """One round: evaluate, then send what is due (the ticker, `bridge_sync`, `bridge_alerts`)."""
    result = evaluate(check_worker=check_worker)
    return result, send_due()
