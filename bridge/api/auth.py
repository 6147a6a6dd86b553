"""Authentication for the bridge's own API: a bearer token compared in constant time."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission

from bridge.signing import tokens_equal


class ApiClient:
    """The caller holding BRIDGE_API_TOKEN (the chatbot, scripts)."""

    is_authenticated = True
    username = "api"

    def __str__(self) -> str:
        return "api token"


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        if not tokens_equal(token.strip(), settings.BRIDGE_API_TOKEN):
            raise AuthenticationFailed("invalid token")
        return (ApiClient(), None)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="bridge"'


class HasApiToken(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, ApiClient)


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """How the API schema describes BearerTokenAuthentication: only the views that use it carry it, so
    the webhooks (path token or signature, not bearer) are not described as bearer-protected."""

    target_class = BearerTokenAuthentication
    name = "bearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "BRIDGE_API_TOKEN"}
