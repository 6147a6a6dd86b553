"""django-q2 entry points: thin, primary keys as arguments, safe to run twice."""

from __future__ import annotations

from bridge import delivery, periodic, retention


def drive_lane(link_id: str, lane: str) -> int:
    """Deliver what is due in one lane of one handover, in order."""
    return delivery.drive_lane(link_id, lane)


def poll_endpoint(endpoint_id: int) -> str:
    """Poll one poll-mode endpoint once."""
    result = periodic.poll_endpoint(endpoint_id)
    return str(result) if result else "skipped"


def run_ticker() -> str:
    """Second-level periodic work for about a minute, then chain the next run."""
    return periodic.run_ticker()


def tick() -> str:
    """One pass of periodic work."""
    return str(periodic.tick())


def apply_retention() -> str:
    """Remove message content and raw payloads past their retention periods."""
    return str(retention.apply())


def send_typing(link_id: str, started: bool) -> str:
    """Show (or stop showing) the agent typing to the customer; best effort, never retried."""
    from bridge import services

    return services.send_typing(link_id, started)
