"""GET/POST /api/context-card/?conversationId=...: Infobip's custom context card.

Answers (JSON by default, `format=html` for a self-contained page):
  200  the card (bridge.card.build_card), also for a conversation never handed over
  400  {"error"} without a usable conversationId
  401  {"error"} without the right BRIDGE_CARD_TOKEN (Authorization: Bearer <token>, a bare token, or
       `token=` in the URL for set-ups that can only embed a page)
  404  {"error"} when the card is off (BRIDGE_CARD_TOKEN unset)
Database only: no call to Infobip or a contact center on this path.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt

from bridge.card import VARIABLES, build_card
from bridge.signing import tokens_equal

MAX_ID_LENGTH = 255


def _token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "").strip()
    scheme, _, rest = header.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    if header:
        return header  # Infobip's card form has one "Authorization header" field; a bare token is fine
    return request.GET.get("token", "")


def _variables(request: HttpRequest) -> dict[str, str]:
    """The card variables from the query string, then (for POST) a JSON object or form body, flat
    or under "conversation" (Infobip does not document a body; both shapes are accepted)."""
    found: dict[str, str] = {}
    sources: list[Any] = [request.GET]
    if request.method == "POST" and request.body:
        if "json" in request.content_type:
            try:
                body = json.loads(request.body)
            except (ValueError, UnicodeDecodeError):
                body = None
            if isinstance(body, dict):
                sources += [
                    body,
                    body.get("conversation") if isinstance(body.get("conversation"), dict) else {},
                ]
        else:
            sources.append(request.POST)
    for source in sources:
        for name in (*VARIABLES, "format"):
            value = source.get(name)
            if name not in found and isinstance(value, (str, int)) and str(value).strip():
                found[name] = str(value).strip()[:MAX_ID_LENGTH]
    return found


def _cors(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    origin = request.headers.get("Origin", "")
    if origin and origin in settings.BRIDGE_CARD_ORIGINS:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response["Access-Control-Max-Age"] = "600"
    response["Vary"] = "Origin, Authorization"
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@method_decorator([csrf_exempt, xframe_options_exempt], name="dispatch")
class ContextCardView(View):
    http_method_names = ["get", "post", "options"]

    def options(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return _cors(request, HttpResponse(status=204))

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.answer(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        return self.answer(request)

    def answer(self, request: HttpRequest) -> HttpResponse:
        if not settings.BRIDGE_CARD_TOKEN:
            return _cors(request, _error("the context card is off (BRIDGE_CARD_TOKEN is not set)", 404))
        if not tokens_equal(_token(request), settings.BRIDGE_CARD_TOKEN):
            response = _error("a valid card token is required (Authorization: Bearer <token>)", 401)
            response["WWW-Authenticate"] = 'Bearer realm="context-card"'
            return _cors(request, response)
        variables = _variables(request)
        conversation_id = variables.get("conversationId", "")
        if not conversation_id or not conversation_id.isprintable():
            return _cors(request, _error("conversationId is required", 400))
        card = build_card(conversation_id, variables)
        if variables.get("format", "").lower() != "html":
            return _cors(request, JsonResponse(card))
        response = HttpResponse(
            render_to_string("bridge/context_card.html", {"card": card}),
            content_type="text/html; charset=utf-8",
        )
        # Self-contained: nothing may load from anywhere; only Infobip's workspace may frame it.
        ancestors = " ".join(settings.BRIDGE_CARD_ORIGINS) or "'none'"
        response["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            f"form-action 'none'; frame-ancestors {ancestors}"
        )
        response["X-Content-Type-Options"] = "nosniff"
        return _cors(request, response)


def _error(message: str, code: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=code)
