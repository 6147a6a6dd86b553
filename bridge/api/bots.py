"""POST /webhooks/infobip-bot/<token>/: Infobip forwarding a customer message to an external bot.

The path token names the bot; the static secret header `X-Bridge-Bot-Secret` (the only kind of
authentication Infobip offers for bot webhooks) proves the request comes from Infobip. Answers:
200 once stored (duplicates too), 400 unparseable, 401 without the header, 403 with a wrong one,
404 for an unknown token, 503 when it could not be stored. Nothing is stored before the header is
checked, and no other system is called: Infobip waits for this answer.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response

from bridge import bots, inputs
from bridge.api.views import ErrorSerializer, WebhookView
from bridge.exceptions import WebhookError
from bridge.infobip.events import parse_webhook
from bridge.models import InfobipBot
from bridge.signing import tokens_equal


@extend_schema_view(
    post=extend_schema(
        summary="Infobip external-bot webhook (customer messages forwarded to the bot)",
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
            503: ErrorSerializer,
        },
    )
)
class InfobipBotWebhookView(WebhookView):
    def post(self, request: Request, token: str) -> Response:
        bot = InfobipBot.objects.filter(webhook_token=token).first()
        if bot is None or not tokens_equal(token, bot.webhook_token):
            raise Http404
        given = request.headers.get(InfobipBot.SECRET_HEADER)
        if not given:
            raise WebhookError(f"the {InfobipBot.SECRET_HEADER} header is missing", status=401)
        if not bot.secret or not tokens_equal(given, bot.secret):
            raise WebhookError(f"the {InfobipBot.SECRET_HEADER} header is wrong", status=403)
        body = self.raw_body(request)
        data = inputs.load_json(body)  # strict JSON, bounded depth (bridge.inputs)
        parsed = parse_webhook(data)
        if parsed.ignored:
            return Response({"status": "ignored", "reason": parsed.ignored})
        recorded = bots.receive(bot, parsed.messages)
        answer = {
            "status": "ok",
            "stored": recorded.stored,
            "duplicates": recorded.duplicates,
            "ignored": recorded.ignored,
        }
        if parsed.refused:
            refused = [r.as_json() for r in parsed.refused]
            error = f"{len(refused)} refused, the rest stored; #{refused[0]['index']}: {refused[0]['error']}"
            return Response({**answer, "status": "refused", "error": error, "refused": refused}, status=400)
        return Response(answer)
