"""Who may read the operator-only URLs, the console's second factor, and the client address behind a proxy.

Settings (docs/configuration.md, "Security"; docs/deploy.md):

- `/metrics` answers a request carrying `Authorization: Bearer <BRIDGE_METRICS_TOKEN>`, or a signed-in
  staff user; `BRIDGE_METRICS_PUBLIC=1` opens it (for a scraper on a private network).
- `/api/schema/` answers the bearer `BRIDGE_API_TOKEN` (the API's own clients), or a signed-in staff
  user; `BRIDGE_SCHEMA_PUBLIC=1` opens it.
- Anything else: 401 `{"error": ...}` with `WWW-Authenticate: Bearer`. Tokens are compared in constant time.
- With `BRIDGE_ADMIN_2FA` on (the default when `DEBUG` is off), the console asks for a TOTP code after the
  password and lets in only staff verified by a device (django-otp); `manage.py bridge_totp USER` gives a
  user a device.
- `client_ip` gives django-axes the address to count failed logins against: `REMOTE_ADDR`, or, behind
  `BRIDGE_TRUSTED_PROXIES` reverse proxies, the address the outermost trusted proxy saw in
  `X-Forwarded-For`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.sites import AdminSite
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from bridge.signing import tokens_equal


def _bearer(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _allowed(request: HttpRequest, public_setting: str, token_setting: str) -> bool:
    if getattr(settings, public_setting, False):
        return True
    token, expected = _bearer(request), getattr(settings, token_setting, "")
    if token and expected and tokens_equal(token, expected):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def protected(public_setting: str, token_setting: str) -> Callable:
    """Decorator for an operator-only view (see the module docstring)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not _allowed(request, public_setting, token_setting):
                response = JsonResponse(
                    {"error": f"authentication required: a bearer token ({token_setting}) or a staff login"},
                    status=401,
                )
                response["WWW-Authenticate"] = 'Bearer realm="bridge"'
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


class OneStepOTPAdminAuthenticationForm(OTPAdminAuthenticationForm):
    """Username, password and code in one step when the user has exactly one confirmed device; with
    several, the form asks which one (django-otp's behaviour)."""

    def _chosen_device(self, user):
        device = super()._chosen_device(user)
        if device is None:
            devices = list(devices_for_user(user, confirmed=True))
            if len(devices) == 1:
                device = devices[0]
        return device


class BridgeAdminSite(OTPAdminSite):
    """The console's admin site: Django's, plus a TOTP step when `BRIDGE_ADMIN_2FA` is on (read per request)."""

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    @property
    def login_form(self):  # type: ignore[override]
        return OneStepOTPAdminAuthenticationForm if settings.BRIDGE_ADMIN_2FA else AdminAuthenticationForm

    @property
    def login_template(self):  # type: ignore[override]
        return OTPAdminSite.login_template if settings.BRIDGE_ADMIN_2FA else None

    def has_permission(self, request: HttpRequest) -> bool:
        if settings.BRIDGE_ADMIN_2FA:
            return super().has_permission(request)
        return AdminSite.has_permission(self, request)


def client_ip(request: HttpRequest) -> str:
    """The client's address for login throttling (django-axes' AXES_CLIENT_IP_CALLABLE)."""
    remote = request.META.get("REMOTE_ADDR", "")
    hops = int(getattr(settings, "BRIDGE_TRUSTED_PROXIES", 0) or 0)
    if hops <= 0:
        return remote
    forwarded = [
        part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
    ]
    # Each trusted proxy appends the address it saw; the client is the one the outermost proxy saw.
    return forwarded[-hops] if len(forwarded) >= hops else remote
