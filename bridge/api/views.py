"""HTTP endpoints: thin. Verify, parse, store in one transaction, answer. Never call another system.

Webhook answers: 200 once stored (duplicates too), 400 for what cannot be parsed, 403 for a bad
signature, 404 for a wrong path token or unknown endpoint, 413 for an oversized body, 503 when the
database could not store it (the sender should retry).
"""

from __future__ import annotations

import json
import logging
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from bridge import conversation_events, health, inputs, services
from bridge.api.auth import BearerTokenAuthentication, HasApiToken
from bridge.connectors import get_connector
from bridge.exceptions import BridgeError, ConfigurationError, WebhookError
from bridge.infobip import subscriptions
from bridge.infobip.events import is_event_envelope, parse_event, parse_webhook
from bridge.models import PRIORITIES, CcaasEndpoint, ConversationLink, Delivery, Message
from bridge.signing import tokens_equal

logger = logging.getLogger(__name__)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()


def error(message: str, code: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=code)


def exception_handler(exc, context):
    """DRF errors as {"error": "..."} like every other error the bridge answers."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data.get("detail") if isinstance(response.data, dict) else None
    if detail is None:
        detail = response.data
    if isinstance(exc, NotAuthenticated) or response.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="bridge"'
    response.data = {"error": detail if isinstance(detail, str) else json.dumps(detail)}
    return response


class WebhookView(APIView):
    """Base for webhooks: raw body first (signatures cover the exact bytes), JSON only."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes: list = []

    def raw_body(self, request: Request) -> bytes:
        content_type = request.META.get("CONTENT_TYPE", "")
        if "json" not in content_type.lower():
            raise WebhookError(f"Content-Type must be application/json, not {content_type or 'missing'!r}")
        try:
            return request._request.body
        except RequestDataTooBig as exc:
            raise WebhookError(
                f"body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes", status=413
            ) from exc

    def handle_exception(self, exc):
        if isinstance(exc, WebhookError):
            return Response({"error": str(exc)}, status=exc.status)
        if isinstance(exc, ConfigurationError):
            # The bridge cannot check the request (e.g. a secret it cannot decrypt): the sender
            # should retry once an operator fixed it; the reason is logged, not sent.
            logger.error("webhook cannot be checked: %s", exc)
            return Response(
                {"error": "the bridge cannot check this webhook now; try again later"}, status=503
            )
        if isinstance(exc, DatabaseError):
            logger.exception("webhook could not be stored")
            return Response({"error": "could not store the request; try again"}, status=503)
        return super().handle_exception(exc)


@extend_schema_view(
    post=extend_schema(
        summary="Infobip webhook (account configuration messages and Subscriptions events)",
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            400: ErrorSerializer,
            404: ErrorSerializer,
            503: ErrorSerializer,
        },
    )
)
class InfobipWebhookView(WebhookView):
    """Infobip's inbound-message webhook (account configuration and, later, Subscriptions events)."""

    def post(self, request: Request, token: str) -> Response:
        if not tokens_equal(token, settings.BRIDGE_INBOUND_TOKEN):
            raise Http404
        body = self.raw_body(request)
        data = inputs.load_json(body)
        if is_event_envelope(data):
            # Subscriptions "customer engagement" events: always checked when security is configured.
            subscriptions.verify(body, request.headers, subscriptions.active_subscription())
            outcome = conversation_events.record_infobip_event(parse_event(data))
            return Response({"status": "ok" if outcome.stored else "duplicate", "note": outcome.note})
        if not settings.BRIDGE_INFOBIP_ACCEPT_UNSIGNED_LEGACY:
            subscriptions.verify(body, request.headers, subscriptions.active_subscription())
        parsed = parse_webhook(data)
        if parsed.ignored:
            return Response({"status": "ignored", "reason": parsed.ignored})
        recorded = services.record_inbound(parsed.messages)
        answer = {
            "status": "ok",
            "stored": recorded.stored,
            "duplicates": recorded.duplicates,
            "ignored": recorded.ignored,
            "normalised": recorded.normalised,
        }
        refused = [r.as_json() for r in parsed.refused] + [
            {"id": message_id, "error": why} for message_id, why in recorded.refused
        ]
        if refused:
            # The others are stored; the sender learns exactly which messages were not, and why.
            logger.warning("Infobip webhook: %d message(s) refused: %s", len(refused), refused)
            return Response(
                {**answer, "status": "refused", "error": _refusal_text(refused), "refused": refused},
                status=400,
            )
        return Response(answer)


@extend_schema_view(
    post=extend_schema(
        summary="Contact-center webhook (per connector; generic: signed event batches)",
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            400: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
)
class CcaasWebhookView(WebhookView):
    """Events from a contact center, verified and parsed by the endpoint's connector."""

    def post(self, request: Request, slug: str) -> Response:
        endpoint = CcaasEndpoint.objects.filter(slug=slug, enabled=True).first()
        if endpoint is None:
            raise Http404
        body = self.raw_body(request)
        try:
            connector = get_connector(endpoint)
            connector.verify_webhook(body, request.headers)
            events = connector.parse_webhook(body, request.headers)
        except ConfigurationError as exc:
            # 503: the contact center keeps the event and retries once an operator fixed it.
            logger.error("webhook for %s cannot be checked: %s", slug, exc)
            CcaasEndpoint.objects.filter(pk=endpoint.pk).update(
                last_error=f"webhook refused: {exc}"[:2000], last_error_at=timezone.now()
            )
            return Response({"error": "endpoint is not configured to receive webhooks"}, status=503)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # A connector met a shape it did not expect: the body is malformed for this kind.
            logger.warning("webhook for %s: malformed body (%s: %s)", slug, type(exc).__name__, exc)
            raise WebhookError(f"malformed {endpoint.kind} webhook body") from exc
        result = services.ingest_events(endpoint, events)
        answer = {
            "status": "ok",
            "stored": result.stored,
            "duplicates": result.duplicates,
            "unknown": result.unknown,
            "normalised": result.normalised,
        }
        if result.refused:
            refused = [{"id": event_id or None, "error": why} for event_id, why in result.refused]
            return Response(
                {**answer, "status": "refused", "error": _refusal_text(refused), "refused": refused},
                status=400,
            )
        return Response(answer)


def _refusal_text(refused: list[dict]) -> str:
    first = refused[0]
    who = f"{first['id']}" if first.get("id") else f"#{first.get('index', 0)}"
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    return f"{len(refused)} refused, the rest stored; {who}: {first['error']}{more}"


CONTEXT_MAX_BYTES = 65536


class EscalationSerializer(serializers.Serializer):
    conversationId = serializers.CharField(max_length=255)
    endpoint = serializers.SlugField(max_length=64, required=False, allow_blank=True, allow_null=True)
    queue = serializers.CharField(max_length=255, required=False, allow_blank=True, allow_null=True)
    priority = serializers.ChoiceField(choices=PRIORITIES, required=False, allow_null=True)
    context = serializers.DictField(required=False, allow_null=True)

    def validate_context(self, value):
        if value is None:
            return value
        problem = inputs.storable_json_problem(value, "context")
        if problem:
            raise serializers.ValidationError(problem)
        if len(json.dumps(value)) > CONTEXT_MAX_BYTES:
            raise serializers.ValidationError(f"context is larger than {CONTEXT_MAX_BYTES} bytes as JSON")
        return value


class HandoverRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=["REQUESTED", "ACTIVE", "CLOSING", "CLOSED", "FAILED"])


class HandoverSerializer(serializers.Serializer):
    """The flat handover object of GET /api/handovers/<id>/ (documentation; built by handover_json)."""

    id = serializers.UUIDField()
    conversationId = serializers.CharField()
    endpoint = serializers.CharField(allow_null=True)
    interactionId = serializers.CharField(allow_null=True)
    state = serializers.CharField()
    stuck = serializers.BooleanField()
    channel = serializers.CharField(allow_null=True)
    customerAddress = serializers.CharField(allow_null=True)
    queue = serializers.CharField(allow_null=True)
    priority = serializers.CharField()
    escalatedAt = serializers.DateTimeField()
    openedAt = serializers.DateTimeField(allow_null=True)
    acceptedAt = serializers.DateTimeField(allow_null=True)
    closingAt = serializers.DateTimeField(allow_null=True)
    closedAt = serializers.DateTimeField(allow_null=True)
    lastActivityAt = serializers.DateTimeField()
    closeReason = serializers.CharField(allow_null=True)
    messagesFromCustomer = serializers.IntegerField()
    messagesToCustomer = serializers.IntegerField()
    deliveriesPending = serializers.IntegerField()
    deliveriesDead = serializers.IntegerField()
    lastError = serializers.CharField(allow_null=True)
    bot = serializers.CharField(
        allow_null=True, help_text="Infobip bot id, for a conversation that came through an external bot"
    )


class BridgeAPIView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [HasApiToken]

    def handle_exception(self, exc):
        if isinstance(exc, BridgeError) and not isinstance(exc, APIException):
            code = 400 if getattr(exc, "permanent", False) else 503
            return Response({"error": str(exc)}, status=code)
        return super().handle_exception(exc)


class EscalationView(BridgeAPIView):
    """POST /api/escalations/: the chatbot asks for a human agent."""

    @extend_schema(
        summary="Hand a conversation over to a contact center",
        description="Called by the chatbot's API element before its To Agent element.",
        request=EscalationSerializer,
        responses={
            202: HandoverRefSerializer,
            200: OpenApiResponse(
                HandoverRefSerializer, description="The conversation's handover is already open"
            ),
            400: ErrorSerializer,
            401: ErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = EscalationSerializer(data=request.data)
        if not serializer.is_valid():
            field, problems = next(iter(serializer.errors.items()))
            return Response({"error": f"{field}: {' '.join(str(p) for p in problems)}"}, status=400)
        data = serializer.validated_data
        link, created = services.escalate(
            services.EscalationRequest(
                conversation_id=data["conversationId"],
                endpoint=data.get("endpoint") or None,
                queue=data.get("queue") or "",
                priority=data.get("priority") or "NORMAL",
                context=data.get("context") or {},
            )
        )
        return Response(
            {"id": str(link.pk), "state": link.state},
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )


class HandoverView(BridgeAPIView):
    """GET /api/handovers/<id>/: one handover as a flat object."""

    @extend_schema(
        summary="One handover",
        responses={200: HandoverSerializer, 401: ErrorSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, pk: str) -> Response:
        try:
            link = ConversationLink.objects.select_related("endpoint").get(pk=uuid.UUID(pk))
        except (ValueError, ConversationLink.DoesNotExist):
            return Response({"error": "no such handover"}, status=404)
        return Response(handover_json(link))


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def handover_json(link: ConversationLink) -> dict:
    messages = Message.objects.filter(link=link)
    deliveries = Delivery.objects.filter(link=link)
    return {
        "id": str(link.pk),
        "conversationId": link.conversation_id,
        "endpoint": link.endpoint.slug if link.endpoint else None,
        "interactionId": link.interaction_id or None,
        "state": link.state,
        "stuck": link.is_stuck(),
        "channel": link.channel or None,
        "customerAddress": link.customer_address or None,
        "queue": link.queue or None,
        "priority": link.priority,
        "escalatedAt": _iso(link.escalated_at),
        "openedAt": _iso(link.opened_at),
        "acceptedAt": _iso(link.accepted_at),
        "closingAt": _iso(link.closing_at),
        "closedAt": _iso(link.closed_at),
        "lastActivityAt": _iso(link.last_activity_at),
        "closeReason": link.close_reason or None,
        "messagesFromCustomer": messages.filter(direction=Message.Direction.INBOUND).count(),
        "messagesToCustomer": messages.filter(direction=Message.Direction.OUTBOUND).count(),
        "deliveriesPending": deliveries.exclude(state__in=Delivery.TERMINAL_STATES).count(),
        "deliveriesDead": deliveries.filter(state=Delivery.Status.DEAD).count(),
        "lastError": link.last_error or None,
        "bot": link.bot.bot_id if link.bot_id and link.bot else None,
    }


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Database (a rolled-back write), broker, worker heartbeat and Infobip configuration: 503 when
    the database or broker fails, else 200 with status "ok" or "degraded" (see bridge.health)."""
    return health.response()
