"""The bridge's tables: the database is the truth about every handover and every delivery.

CcaasEndpoint   one configured contact-center connection (credentials encrypted).
ConversationLink one handover: one Infobip conversation linked to one interaction on one endpoint.
Message         every message of a handed-over conversation, either direction, recorded once.
Tag             the conversation's Infobip tags.
Delivery        the outbox: every call the bridge owes another system (open, message, close), with
                its retry state; one lane per handover and target, worked strictly in order.
InboundEvent    every event received from a contact center (or Infobip envelope), raw, deduplicated.
OwnMessage      every message the bridge created on either side, by the id that side gave it (echoes).
HandoverEvent   the handover's timeline, for operators.
Lease           named, expiring locks (the ticker, endpoint polls).
InfobipBot      an Infobip external chatbot (`/ccaas/1/bots`) whose webhook is the bridge.
Heartbeat       when the worker cluster last showed it was alive (for /healthz).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q
from django.utils import timezone

from bridge.causes import Cause, touches_endpoint
from bridge.exceptions import UpstreamAuthError
from bridge.fields import RotatingEncryptedJSONField, is_readable


def stuck_cutoff(now=None):
    """Older than this and still not active, closing, or failing: stuck (BRIDGE_STUCK_AFTER_SECONDS)."""
    return (now or timezone.now()) - timedelta(seconds=settings.BRIDGE_STUCK_AFTER_SECONDS)


def today_start(now=None):
    now = timezone.localtime(now or timezone.now())
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class CcaasEndpointQuerySet(models.QuerySet):
    """Endpoint health, from evidence only: the outcome of the last real call to the contact center.

    Unhealthy: enabled, and the last call failed (`last_error` set) or the credentials were refused.
    Healthy: enabled, a call succeeded, and none failed since. Anything else: no call made yet.
    """

    UNHEALTHY = Q(auth_failed=True) | ~Q(last_error="")

    def unhealthy(self) -> CcaasEndpointQuerySet:
        return self.filter(enabled=True).filter(self.UNHEALTHY)

    def healthy(self) -> CcaasEndpointQuerySet:
        return self.filter(enabled=True, last_success_at__isnull=False).exclude(self.UNHEALTHY)


class CcaasEndpoint(models.Model):
    class Mode(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        POLL = "poll", "Poll"

    slug = models.SlugField(max_length=64, unique=True, help_text="Used in URLs and the escalation API.")
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(
        max_length=32, help_text="Connector kind: generic, zendesk, chatwoot, rt, genesys."
    )
    config = models.JSONField(default=dict, blank=True)
    credentials = RotatingEncryptedJSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False, help_text="Chosen when an escalation names no endpoint and no routing rule matches."
    )
    routing_rules = models.JSONField(
        default=list,
        blank=True,
        help_text="List of rules; one matches when all its conditions hold, e.g. "
        '[{"tags_any": ["billing"], "metadata": {"language": "de"}}]. Endpoints are tried by routing order.',
    )
    routing_order = models.PositiveIntegerField(default=100)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    auth_failed = models.BooleanField(
        default=False, help_text="Set when the contact center answered 401/403."
    )
    poll_cursor = models.TextField(blank=True)
    poll_next_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CcaasEndpointQuerySet.as_manager()

    class Meta:
        verbose_name = "contact-center endpoint"
        ordering = ["routing_order", "slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_endpoint"
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def mode(self) -> str:
        """The config's mode, else the connector's default (a kind without webhooks is polled)."""
        from bridge.connectors import connector_class
        from bridge.exceptions import ConfigurationError

        try:
            return connector_class(self.kind).mode_of(self.config)
        except ConfigurationError:
            return (self.config or {}).get("mode") or self.Mode.WEBHOOK

    @property
    def polled(self) -> bool:
        """Whether the ticker and `bridge_sync` poll this endpoint (decided by its connector)."""
        from bridge.connectors import connector_class
        from bridge.exceptions import ConfigurationError

        try:
            return connector_class(self.kind).polled(self.config)
        except ConfigurationError:
            return False

    def webhook_url(self) -> str:
        return f"{settings.BRIDGE_PUBLIC_URL}/webhooks/ccaas/{self.slug}/"

    # --- health: the only writers of last_success_at / last_error / auth_failed ---------------------
    def record_success(self, *, now=None, throttle_seconds: float = 0) -> None:
        """A real call to this contact center succeeded: healthy, errors cleared.

        With `throttle_seconds`, a healthy endpoint's last success is rewritten at most that often
        (many workers delivering to one contact center would otherwise all write this one row).
        Call only after a call was made: a poll with nothing to ask, or a skipped delivery, is no
        evidence and must not call this.
        """
        now = now or timezone.now()
        stale = Q(last_success_at__isnull=True) | Q(
            last_success_at__lt=now - timedelta(seconds=throttle_seconds)
        )
        CcaasEndpoint.objects.filter(pk=self.pk).filter(stale | CcaasEndpointQuerySet.UNHEALTHY).update(
            last_success_at=now, auth_failed=False, last_error=""
        )
        self.last_success_at, self.auth_failed, self.last_error = now, False, ""

    def record_failure(self, exc: BaseException, *, now=None) -> bool:
        """A real call to this contact center failed (or its settings cannot work): unhealthy, with
        the time and the error's operator-worded text. Errors that are Infobip's, not the contact
        center's, are ignored. Returns whether anything was recorded."""
        if not touches_endpoint(exc):
            return False
        now = now or timezone.now()
        error = (str(exc) or type(exc).__name__)[:2000]
        auth = isinstance(exc, UpstreamAuthError)
        CcaasEndpoint.objects.filter(pk=self.pk).update(last_error=error, last_error_at=now, auth_failed=auth)
        self.last_error, self.last_error_at, self.auth_failed = error, now, auth
        return True

    @property
    def health(self) -> tuple[str, str]:
        """(label, tone) for the console, by the same rules as CcaasEndpointQuerySet."""
        if not self.enabled:
            return "disabled", "muted"
        if not is_readable(self):
            return "credentials unreadable", "bad"
        if self.auth_failed:
            return "credentials refused", "bad"
        if self.last_error:
            return "unhealthy", "bad"
        if self.last_success_at:
            return "healthy", "ok"
        return "no call yet", "muted"


class State(models.TextChoices):
    REQUESTED = "REQUESTED", "Requested"
    ACTIVE = "ACTIVE", "Active"
    CLOSING = "CLOSING", "Closing"
    CLOSED = "CLOSED", "Closed"
    FAILED = "FAILED", "Failed"


OPEN_STATES = (State.REQUESTED, State.ACTIVE, State.CLOSING)
PRIORITIES = ("LOW", "NORMAL", "HIGH", "URGENT")


class ConversationLinkQuerySet(models.QuerySet):
    """The handover predicates every reader uses: the console, /metrics, the commands, the alerts."""

    def open(self) -> ConversationLinkQuerySet:
        return self.filter(state__in=OPEN_STATES)

    @staticmethod
    def stuck_condition(now=None) -> Q:
        """Not yet active too long after the escalation, closing too long, with a delivery being
        retried for longer than BRIDGE_STUCK_AFTER_SECONDS, or open with a dead letter (at once:
        nothing will retry it by itself, so someone must look)."""
        cutoff = stuck_cutoff(now)
        failing = Delivery.objects.failing().filter(link=OuterRef("pk"), failing_since__lt=cutoff)
        dead = Delivery.objects.dead().filter(link=OuterRef("pk"))
        return (
            Q(state=State.REQUESTED, escalated_at__lt=cutoff)
            | Q(state=State.CLOSING, closing_at__lt=cutoff)
            | Q(state__in=OPEN_STATES) & Exists(failing)
            | Q(state__in=OPEN_STATES) & Exists(dead)
        )

    def stuck(self, now=None) -> ConversationLinkQuerySet:
        return self.filter(self.stuck_condition(now))

    def with_stuck(self, now=None) -> ConversationLinkQuerySet:
        """Annotate `stuck_now` (boolean) for lists that show the flag on every row."""
        return self.annotate(
            stuck_now=ExpressionWrapper(self.stuck_condition(now), output_field=BooleanField())
        )

    def failing(self) -> ConversationLinkQuerySet:
        """With a delivery being retried right now (not yet dead)."""
        return self.filter(Exists(Delivery.objects.failing().filter(link=OuterRef("pk"))))

    def with_dead_letters(self) -> ConversationLinkQuerySet:
        return self.filter(Exists(Delivery.objects.dead().filter(link=OuterRef("pk"))))

    def waiting_for_agent(self) -> ConversationLinkQuerySet:
        """Open, and no agent has accepted the interaction or written in it yet."""
        agent_wrote = Message.objects.filter(link=OuterRef("pk"), source=Message.Source.CCAAS)
        return self.filter(state__in=(State.REQUESTED, State.ACTIVE), accepted_at__isnull=True).exclude(
            Exists(agent_wrote)
        )

    def closed_since(self, when) -> ConversationLinkQuerySet:
        return self.filter(closed_at__gte=when)


class ConversationLink(models.Model):
    """One handover: an Infobip conversation handed to one contact-center interaction."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation_id = models.CharField("Infobip conversation", max_length=255, db_index=True)
    endpoint = models.ForeignKey(
        CcaasEndpoint, on_delete=models.PROTECT, null=True, blank=True, related_name="handovers"
    )
    interaction_id = models.CharField(max_length=255, blank=True, db_index=True)
    interaction_data = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the connector keeps about the interaction (ids on its side).",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.REQUESTED)
    channel = models.CharField(max_length=64, blank=True)
    customer_address = models.CharField(max_length=255, blank=True)
    customer_name = models.CharField(max_length=255, blank=True)
    business_sender = models.CharField(max_length=255, blank=True)
    queue = models.CharField(max_length=255, blank=True)
    priority = models.CharField(max_length=8, default="NORMAL")
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    escalated_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    closing_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    last_infobip_message_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=32, blank=True)
    closed_by = models.CharField(max_length=150, blank=True)
    last_error = models.TextField(blank=True)
    stuck_flagged_at = models.DateTimeField(null=True, blank=True)
    bot = models.ForeignKey(
        "InfobipBot",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="handovers",
        help_text="The Infobip external bot the conversation came through (external-bot mode).",
    )

    objects = ConversationLinkQuerySet.as_manager()

    class Meta:
        verbose_name = "handover"
        ordering = ["-escalated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation_id"],
                condition=Q(state__in=["REQUESTED", "ACTIVE", "CLOSING"]),
                name="one_open_handover_per_conversation",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "escalated_at"]),
            models.Index(fields=["state", "last_activity_at"]),
            models.Index(fields=["endpoint", "interaction_id"]),
            models.Index(fields=["customer_address"]),
            models.Index(fields=["closed_at"]),
            models.Index(fields=["escalated_at"], name="link_escalated_idx"),
            models.Index(fields=["channel"], name="link_channel_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def is_stuck(self, now=None) -> bool:
        stuck = getattr(self, "stuck_now", None)
        if stuck is not None and now is None:
            return bool(stuck)
        return ConversationLink.objects.stuck(now).filter(pk=self.pk).exists()

    def note(self, kind: str, text: str = "", actor: str = "") -> HandoverEvent:
        return HandoverEvent.objects.create(link=self, kind=kind, text=text[:2000], actor=actor)


class Tag(models.Model):
    link = models.ForeignKey(ConversationLink, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["link", "name"], name="unique_tag_per_handover")]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """A message of a handed-over conversation, recorded once per source id and direction."""

    class Direction(models.TextChoices):
        INBOUND = "INBOUND", "From the customer"
        OUTBOUND = "OUTBOUND", "To the customer"

    class Source(models.TextChoices):
        INFOBIP = "infobip", "Infobip"
        CCAAS = "ccaas", "Contact center"

    link = models.ForeignKey(ConversationLink, on_delete=models.CASCADE, related_name="messages")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.INFOBIP)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    external_id = models.CharField(
        max_length=255,
        help_text="The sender's id: the Infobip message id, or the contact center's message id.",
    )
    infobip_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    author_type = models.CharField(max_length=16, default="CUSTOMER")
    author_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=64, default="TEXT")
    content = models.JSONField(default=dict)
    created_at = models.DateTimeField(help_text="When the sender created it.")
    received_at = models.DateTimeField(auto_now_add=True)
    in_history = models.BooleanField(
        default=False, help_text="Carried inside the interaction's opening history."
    )
    recovered = models.BooleanField(
        default=False,
        help_text="Found by reconciliation because its webhook never arrived: it reaches the contact "
        "center late, marked as recovered, with its original time.",
    )
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["link", "source", "external_id"], name="message_once_per_source_id"
            ),
        ]
        indexes = [models.Index(fields=["link", "created_at"])]

    def __str__(self) -> str:
        return f"{self.direction} {self.external_id}"

    @property
    def text(self) -> str:
        content = self.content or {}
        return str(content.get("text") or content.get("caption") or content.get("url") or "")


# How a lane is worked: phase (open, messages, close), then the sender's order, then the database's.
LANE_ORDER = ("phase", "sort_at", "sort_seq", "id")


class DeliveryQuerySet(models.QuerySet):
    """The delivery predicates every reader uses (console, /metrics, alerts)."""

    def failing(self) -> DeliveryQuerySet:
        """Being retried right now: failed at least once, not yet delivered, skipped or dead."""
        return self.filter(
            failing_since__isnull=False, state__in=(Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT)
        )

    def dead(self) -> DeliveryQuerySet:
        return self.filter(state=Delivery.Status.DEAD)

    def waiting_customer(self) -> DeliveryQuerySet:
        """What keeps a customer waiting for the contact center: their messages not yet delivered,
        and opens not yet done (the customer wrote just before the escalation), whether queued,
        behind a pending open, being retried or dead-lettered; on handovers that are open, or
        failed and not handed back to Infobip's agents."""
        routed_back = Delivery.objects.filter(
            link=OuterRef("link"), kind=Delivery.Kind.ROUTE_BACK, state=Delivery.Status.DONE
        )
        return self.filter(
            lane=Delivery.Lane.TO_CCAAS,
            kind__in=(Delivery.Kind.OPEN, Delivery.Kind.MESSAGE),
            state__in=(Delivery.Status.PENDING, Delivery.Status.IN_FLIGHT, Delivery.Status.DEAD),
            link__state__in=(*OPEN_STATES, State.FAILED),
        ).exclude(Exists(routed_back))

    def oldest_waiting_customer(self) -> Delivery | None:
        """The delivery behind the customer who has waited longest (see waiting_customer), or None."""
        return self.waiting_customer().select_related("message", "link").order_by("sort_at", "id").first()


class Delivery(models.Model):
    """One call the bridge owes another system, with its retry state (the transactional outbox).

    Deliveries of one handover form two lanes (to the contact center, to Infobip). A lane is worked
    strictly in LANE_ORDER, one delivery in flight at a time; a retrying head holds the rest of its
    lane, never other handovers. Closes (phase 2) wait for both lanes.

    The sort key is the sender's order, never a process clock: `sort_at` is the time the sender gave
    (Infobip `createdAt` for customer messages; the contact center's own time for agent messages),
    `sort_seq` the sender's sequence within that time (a monotonic message, comment or transaction
    id), and `id` (the database's sequence) breaks what is left, in the order rows were written.
    """

    class Kind(models.TextChoices):
        OPEN = "OPEN", "Open interaction"
        MESSAGE = "MESSAGE", "Message"
        CLOSE_CCAAS = "CLOSE_CCAAS", "Close interaction"
        CLOSE_INFOBIP = "CLOSE_INFOBIP", "Close Infobip conversation"
        ROUTE_BACK = "ROUTE_BACK", "Route back to Infobip's agents"

    class Lane(models.TextChoices):
        TO_CCAAS = "TO_CCAAS", "To contact center"
        TO_INFOBIP = "TO_INFOBIP", "To Infobip"

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        IN_FLIGHT = "IN_FLIGHT", "In flight"
        DONE = "DONE", "Delivered"
        SKIPPED = "SKIPPED", "Skipped (not sent)"
        DEAD = "DEAD", "Dead letter"

    TERMINAL_STATES = (Status.DONE, Status.SKIPPED, Status.DEAD)
    # Queries for work to do filter on exactly this, so the partial indexes below (over open
    # deliveries only) serve them: their cost follows the work waiting, not the history kept.
    OPEN_DELIVERY_STATES = (Status.PENDING, Status.IN_FLIGHT)
    LANE_ORDER = LANE_ORDER
    PHASES = {Kind.OPEN: 0, Kind.MESSAGE: 1, Kind.CLOSE_CCAAS: 2, Kind.CLOSE_INFOBIP: 2, Kind.ROUTE_BACK: 2}

    link = models.ForeignKey(ConversationLink, on_delete=models.CASCADE, related_name="deliveries")
    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="delivery"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    lane = models.CharField(max_length=16, choices=Lane.choices)
    phase = models.PositiveSmallIntegerField(default=1)
    sort_at = models.DateTimeField(default=timezone.now)
    sort_seq = models.BigIntegerField(
        default=0, help_text="The sender's sequence (message, comment or transaction id) within sort_at."
    )
    state = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=36, blank=True)
    nudged_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweeper last queued this lane."
    )
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    cause = models.CharField(
        max_length=24,
        choices=Cause.choices,
        blank=True,
        help_text="Why the last attempt failed, as an operator can act on it; empty once delivered.",
    )
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = list(LANE_ORDER)
        indexes = [
            models.Index(fields=["link", "lane", "state"]),
            models.Index(fields=["state", "next_attempt_at"]),
            models.Index(fields=["state", "lease_until"]),
            models.Index(fields=["failing_since"]),
            models.Index(fields=["lane", "state", "sort_at"], name="delivery_lane_waiting_idx"),
            # The next delivery of a lane (claims), and whether a handover has work left.
            models.Index(
                fields=["link", "lane", *LANE_ORDER],
                condition=Q(state__in=("PENDING", "IN_FLIGHT")),
                name="delivery_open_lane_idx",
            ),
            # The sweeper: retries that came due, claims whose lease ran out.
            models.Index(
                fields=["next_attempt_at"], condition=Q(state="PENDING"), name="delivery_pending_due_idx"
            ),
            models.Index(
                fields=["lease_until"], condition=Q(state="IN_FLIGHT"), name="delivery_lease_expiry_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL_STATES


class InboundEvent(models.Model):
    """Every event a contact center (or Infobip's event webhook) sent us, raw and deduplicated."""

    source = models.CharField(max_length=80, help_text='"infobip" or "ccaas:<endpoint slug>".')
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=64)
    endpoint = models.ForeignKey(CcaasEndpoint, null=True, blank=True, on_delete=models.SET_NULL)
    link = models.ForeignKey(
        ConversationLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_events"
    )
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["source", "event_id"], name="event_once_per_source")]

    def __str__(self) -> str:
        return f"{self.source} {self.type} {self.event_id}"


class OwnMessage(models.Model):
    """A message the bridge itself created on Infobip or on the contact center, by the id that side
    gave it: one row per part (an agent message with text and an image is several Create Message
    calls), so the echo of any part that comes back is recognised and never forwarded."""

    class Side(models.TextChoices):
        INFOBIP = "infobip", "Infobip"
        CCAAS = "ccaas", "Contact center"

    link = models.ForeignKey(ConversationLink, on_delete=models.CASCADE, related_name="own_messages")
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="own_ids"
    )
    side = models.CharField(max_length=8, choices=Side.choices)
    external_id = models.CharField(max_length=255, help_text="The id the other side gave the message.")
    part = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "message created by the bridge"
        constraints = [
            models.UniqueConstraint(fields=["link", "side", "external_id"], name="own_message_once")
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.external_id}"


class HandoverEvent(models.Model):
    """A line of a handover's timeline: escalated, opened, retry with its error, closed by whom."""

    link = models.ForeignKey(ConversationLink, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=32)
    text = models.TextField(blank=True)
    actor = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.text[:40]}"


class Lease(models.Model):
    """A named lock that expires by itself, so a killed holder never blocks for long."""

    name = models.CharField(max_length=150, primary_key=True)
    owner = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name


class InfobipSubscription(models.Model):
    """The bridge's Subscriptions-API subscription on Infobip, and how its webhooks prove themselves.

    Written by `manage.py bridge_subscribe --subscriptions`; read by the Infobip webhook view, which
    rejects a request that fails the check configured here.
    """

    class Security(models.TextChoices):
        HMAC = "HMAC", "HMAC-SHA256 signature"
        BASIC = "BASIC", "Basic auth"
        HEADER = "HEADER", "Static header"
        NONE = "NONE", "Path token only"

    subscription_id = models.CharField(max_length=255, unique=True)
    profile_id = models.CharField(max_length=255)
    auth_id = models.CharField(max_length=255, blank=True)
    security = models.CharField(max_length=16, choices=Security.choices, default=Security.HMAC)
    credentials = RotatingEncryptedJSONField(
        default=dict, blank=True, help_text="HMAC secret, Basic user and password, or header name and value."
    )
    notify_url = models.CharField(max_length=512)
    events = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.subscription_id} ({self.security})"


class RateWindow(models.Model):
    """One fixed window of a client-side rate limit, shared by every worker through the database."""

    key = models.CharField(max_length=100)
    window = models.BigIntegerField(help_text="Window start, in seconds since the epoch.")
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window"], name="rate_window_once")]

    def __str__(self) -> str:
        return f"{self.key}@{self.window}: {self.count}"


class InfobipBot(models.Model):
    """An Infobip external chatbot whose webhook is the bridge (external-bot mode).

    Infobip forwards every inbound message of the bot's number or page (destination and channel) to
    `/webhooks/infobip-bot/<webhook_token>/` with a static secret header, until the conversation is
    handed to someone else. Written by `manage.py bridge_bot`. Reference:
    https://www.infobip.com/docs/api/customer-engagement/conversations/setup-bot
    """

    SECRET_HEADER = "X-Bridge-Bot-Secret"

    class OnClose(models.TextChoices):
        CLOSE = "close", "Close the Infobip conversation"
        ROUTE = "route", "Route it to Infobip's agents"
        ASSIGN = "assign", "Assign it to an Infobip agent"
        QUEUE = "queue", "Put it in an Infobip queue"

    bot_id = models.CharField("Infobip bot id", max_length=255, blank=True, db_index=True)
    display_name = models.CharField(max_length=255)
    channel = models.CharField(max_length=64)
    destination = models.CharField(
        max_length=255, help_text="Phone number, Messenger page id or Live Chat widget id."
    )
    endpoint = models.ForeignKey(
        CcaasEndpoint,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="bots",
        help_text="Where its conversations go; empty: routing rules, then the default endpoint.",
    )
    webhook_token = models.CharField(max_length=64, unique=True)
    credentials = RotatingEncryptedJSONField(default=dict, blank=True, help_text="The secret header value.")
    enabled = models.BooleanField(default=True)
    session_timeout_seconds = models.PositiveIntegerField(default=86400)
    registered_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="What was last sent to Infobip (a hash; it includes the secret)."
    )
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Infobip bot"
        ordering = ["channel", "destination"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "destination"], name="one_bot_per_destination"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.channel} {self.destination})"

    def webhook_url(self) -> str:
        return f"{settings.BRIDGE_PUBLIC_URL}/webhooks/infobip-bot/{self.webhook_token}/"

    @property
    def secret(self) -> str:
        return str((self.credentials or {}).get("secret") or "")


class AlertChannel(models.Model):
    """Where people are told when something goes wrong: an e-mail list or a chat webhook.

    Operators subscribe a channel to the kinds of incident they want (`events`); each incident is
    sent once when it starts and once when it is over, through the alert outbox (AlertNotification).
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        SLACK = "slack", "Slack incoming webhook"
        TEAMS = "teams", "Microsoft Teams incoming webhook"
        JSON = "json", "Generic JSON webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EMAIL)
    target = RotatingEncryptedJSONField(
        default=dict,
        blank=True,
        help_text='{"to": ["ops@example.com"]} for e-mail, {"url": "https://hooks..."} for webhooks; '
        "stored encrypted (webhook URLs carry their own secret).",
    )
    events = models.JSONField(
        default=list, blank=True, help_text="The incident kinds this channel is told about."
    )
    enabled = models.BooleanField(default=True)
    max_per_hour = models.PositiveIntegerField(
        default=30, help_text="At most this many messages an hour; further incidents are counted, not sent."
    )
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "alert channel"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertIncident(models.Model):
    """One thing that went wrong, from when it was first seen until it was over (once per incident)."""

    class Kind(models.TextChoices):
        STUCK = "stuck", "Stuck handover"
        DEAD_LETTER = "dead_letter", "Dead letter"
        ENDPOINT = "endpoint", "Endpoint unhealthy"
        WORKER = "worker", "Worker heartbeat missing"
        WAITING = "waiting", "Customer waiting too long"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(
        max_length=255, help_text="What the incident is about: a handover id, an endpoint."
    )
    summary = models.CharField(max_length=500)
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "key"], condition=Q(resolved_at__isnull=True), name="one_open_incident"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.key}"


class AlertNotification(models.Model):
    """The alert outbox: one message owed to one channel, retried with backoff, dead-lettered
    visibly after BRIDGE_RETRY_MAX_ATTEMPTS, like every other delivery of the bridge."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        DONE = "DONE", "Sent"
        SKIPPED = "SKIPPED", "Not sent (rate limit)"
        DEAD = "DEAD", "Dead letter"

    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="notifications")
    incident = models.ForeignKey(AlertIncident, on_delete=models.CASCADE, related_name="notifications")
    recovery = models.BooleanField(default=False, help_text="The incident is over.")
    subject = models.CharField(max_length=255)
    text = models.TextField()
    state = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "alert notification"
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return self.subject


class RetiredEncryptionKey(models.Model):
    """A key of BRIDGE_ENCRYPTION_KEYS that `bridge_rotate_keys` moved every value off.

    Only a fingerprint is kept (the first 16 hex digits of the key's SHA-256), never the key. It
    lets the command refuse keys given oldest-first: a retired key must never encrypt again.
    """

    fingerprint = models.CharField(max_length=16, unique=True)
    retired_at = models.DateTimeField(default=timezone.now)
    values_moved = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"key {self.fingerprint} (retired {self.retired_at:%Y-%m-%d})"


class Heartbeat(models.Model):
    """The last time a process of one kind showed it was alive (the worker cluster's ticker writes
    `worker`); /healthz reports a worker missing when its beat is older than
    BRIDGE_HEARTBEAT_STALE_SECONDS. Written by bridge.heartbeat.beat()."""

    name = models.CharField(max_length=50, primary_key=True)
    beat_at = models.DateTimeField()
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"
