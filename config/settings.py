"""Settings, read from the environment (and a `.env` file in the project root) with django-environ.

Every variable of the public contract is documented in README.md. Development defaults apply only
while DEBUG is on; with DEBUG off the bridge refuses to start without its secrets.
"""

import base64
import hashlib
import os
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# BRIDGE_ENV_FILE names another file, or none when empty (the demo's sandbox reads none).
ENV_FILE = os.environ.get("BRIDGE_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _required(name: str, dev_default: str) -> str:
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (see README, Configuration).")


SECRET_KEY = _required("SECRET_KEY", "dev-only-insecure-secret-key-change-me-0123456789")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",
    "django_q",
    "bridge",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions serialise writers up front instead of failing on lock upgrade; WAL lets
    # the web process read while a worker writes. The busy timeout is how long a writer waits.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("SQLITE_TIMEOUT_SECONDS", default=20),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    if env.str("TEST_SQLITE_NAME", default=""):
        DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_SQLITE_NAME")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    if "postgresql" in DATABASES["default"]["ENGINE"]:
        # A worker host that dies or is cut off in the middle of a transaction must not hold row locks
        # (a handover's lane) until TCP notices, which can take hours: the server ends a session idle
        # inside a transaction after BRIDGE_DB_IDLE_IN_TRANSACTION_SECONDS, and the client probes
        # quiet connections with keepalives.
        _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
        for _key, _value in {
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }.items():
            _pg_options.setdefault(_key, _value)
        _idle = env.int("BRIDGE_DB_IDLE_IN_TRANSACTION_SECONDS", default=300)
        if _idle > 0:
            _pg_options["options"] = (
                f"{_pg_options.get('options', '')} -c idle_in_transaction_session_timeout={_idle * 1000}".strip()
            )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Task queue (django-q2) -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER = {
    "name": "bridge",
    "workers": env.int("Q_WORKERS", default=4),
    # A task killed mid-run is handed out again after `retry` seconds (ORM broker); it must be longer
    # than the longest task (`timeout`), which is the ticker's run plus slack.
    "timeout": env.int("Q_TIMEOUT_SECONDS", default=150),
    "retry": env.int("Q_RETRY_SECONDS", default=180),
    "max_attempts": 0,
    "save_limit": env.int("Q_SAVE_LIMIT", default=1000),
    "ack_failures": True,
    "catch_up": False,
    "poll": env.float("Q_POLL_SECONDS", default=0.5),
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if env.bool("Q_SYNC", default=False):
    Q_CLUSTER["sync"] = True

# --- Auth, i18n, static ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["config.formats"]  # one date format in the console (config/formats/en)
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# Webhook bodies above this are refused before parsing (413).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("BRIDGE_MAX_BODY_BYTES", default=1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["bridge.inputs.StrictJSONParser"],
    "EXCEPTION_HANDLER": "bridge.api.views.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Handover Bridge API",
    "DESCRIPTION": "Escalations, handovers and the webhooks Infobip and contact centers call.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Security is per operation (bridge.api.auth.BearerTokenScheme): the escalation and handover API use
    # the bearer token; the webhooks use a secret path token or a signature, described in their text.
}

# --- The bridge ------------------------------------------------------------------------------------
INFOBIP_BASE_URL = env.str("INFOBIP_BASE_URL", default="")
INFOBIP_API_KEY = env.str("INFOBIP_API_KEY", default="")
INFOBIP_AGENT_ID = env.str("INFOBIP_AGENT_ID", default="")
BRIDGE_PUBLIC_URL = env.str("BRIDGE_PUBLIC_URL", default="http://localhost:8000").rstrip("/")
BRIDGE_INBOUND_TOKEN = _required("BRIDGE_INBOUND_TOKEN", "dev-inbound-token-0123456789abcdefghijklmnop")
BRIDGE_API_TOKEN = _required("BRIDGE_API_TOKEN", "dev-api-token")
if len(BRIDGE_INBOUND_TOKEN) < 32:
    raise ImproperlyConfigured("BRIDGE_INBOUND_TOKEN must be at least 32 url-safe characters.")


def _derived_fernet_key(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(f"bridge-encryption:{secret}".encode()).digest()).decode()


BRIDGE_ENCRYPTION_KEYS = env.list("BRIDGE_ENCRYPTION_KEYS", default=[])
if not BRIDGE_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "BRIDGE_ENCRYPTION_KEYS must be set when DEBUG is off. Generate one with: python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        )
    BRIDGE_ENCRYPTION_KEYS = [_derived_fernet_key(SECRET_KEY)]
# django-fernet-encrypted-fields reads SALT_KEY; our field subclass uses BRIDGE_ENCRYPTION_KEYS.
SALT_KEY = ["handover-bridge"]

BRIDGE_RETRY_BASE_SECONDS = env.float("BRIDGE_RETRY_BASE_SECONDS", default=5)
BRIDGE_RETRY_MAX_SECONDS = env.float("BRIDGE_RETRY_MAX_SECONDS", default=3600)
BRIDGE_RETRY_MAX_ATTEMPTS = env.int("BRIDGE_RETRY_MAX_ATTEMPTS", default=15)
BRIDGE_POLL_INTERVAL_SECONDS = env.float("BRIDGE_POLL_INTERVAL_SECONDS", default=15)
BRIDGE_STUCK_AFTER_SECONDS = env.float("BRIDGE_STUCK_AFTER_SECONDS", default=900)
BRIDGE_ALERT_WAITING_SECONDS = env.float("BRIDGE_ALERT_WAITING_SECONDS", default=600)
BRIDGE_ALERT_HEARTBEAT_SECONDS = env.float("BRIDGE_ALERT_HEARTBEAT_SECONDS", default=300)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="handover-bridge@localhost")
# Alert e-mail: EMAIL_URL such as smtp+tls://user:password@smtp.example.com:587 (django-environ).
globals().update(env.email_url("EMAIL_URL", default="consolemail://"))
BRIDGE_IDLE_CLOSE_SECONDS = env.float("BRIDGE_IDLE_CLOSE_SECONDS", default=86400)
# How long a claimed delivery stays leased to its worker. A heartbeat renews it every third of this
# while the worker is still working, so it bounds how long a killed worker's delivery waits, not how
# long a call may take.
BRIDGE_LEASE_SECONDS = env.float("BRIDGE_LEASE_SECONDS", default=10)
# How often the ticker looks for due work (retries, polls, stuck and idle handovers).
BRIDGE_TICK_SECONDS = env.float("BRIDGE_TICK_SECONDS", default=1)
BRIDGE_HTTP_CONNECT_TIMEOUT = env.float("BRIDGE_HTTP_CONNECT_TIMEOUT", default=5)
BRIDGE_HTTP_READ_TIMEOUT = env.float("BRIDGE_HTTP_READ_TIMEOUT", default=30)
BRIDGE_ALLOW_PRIVATE_URLS = env.bool("BRIDGE_ALLOW_PRIVATE_URLS", default=False)
# Data retention (bridge.retention), off by default: days after a handover ended before its message
# content is removed, and days after receipt before raw vendor payloads are removed.
BRIDGE_RETENTION_DAYS = env.float("BRIDGE_RETENTION_DAYS", default=0)
BRIDGE_RAW_RETENTION_DAYS = env.float("BRIDGE_RAW_RETENTION_DAYS", default=0)

# Infobip side (docs/infobip.md). Reconciliation re-reads open conversations' messages this often,
# so a dropped Infobip webhook costs at most one interval; the overlap re-reads a little earlier.
BRIDGE_RECONCILE_INTERVAL_SECONDS = env.float("BRIDGE_RECONCILE_INTERVAL_SECONDS", default=60)
BRIDGE_RECONCILE_OVERLAP_SECONDS = env.float("BRIDGE_RECONCILE_OVERLAP_SECONDS", default=300)
# Infobip publishes ~500 Get Messages requests a minute; the bridge stays under it across workers.
BRIDGE_INFOBIP_GET_MESSAGES_PER_MINUTE = env.int("BRIDGE_INFOBIP_GET_MESSAGES_PER_MINUTE", default=450)
# Subscriptions webhook security. Infobip does not document the HMAC header name or encoding, so
# both are configurable: any of these headers, hex or base64, with or without a "sha256=" prefix.
BRIDGE_INFOBIP_HMAC_HEADERS = env.list(
    "BRIDGE_INFOBIP_HMAC_HEADERS",
    default=["X-Hub-Signature-256", "X-Hub-Signature", "X-Signature", "X-Infobip-Signature"],
)
BRIDGE_INFOBIP_HMAC_ENCODING = env.str("BRIDGE_INFOBIP_HMAC_ENCODING", default="any")  # hex|base64|any
BRIDGE_INFOBIP_SUBSCRIPTION_ID = env.str("BRIDGE_INFOBIP_SUBSCRIPTION_ID", default="handover-bridge")
# While migrating from the legacy account-configuration webhook (which cannot sign), accept its
# unsigned message bodies even when Subscriptions security is configured.
BRIDGE_INFOBIP_ACCEPT_UNSIGNED_LEGACY = env.bool("BRIDGE_INFOBIP_ACCEPT_UNSIGNED_LEGACY", default=False)

# Infobip's custom context card (GET/POST /api/context-card/): its own bearer token (unset: the card
# is off), and the origins allowed to embed its HTML (CSP frame-ancestors) and to call it from a browser.
BRIDGE_CARD_TOKEN = env.str("BRIDGE_CARD_TOKEN", default="")
if BRIDGE_CARD_TOKEN and BRIDGE_CARD_TOKEN in (BRIDGE_API_TOKEN, BRIDGE_INBOUND_TOKEN):
    raise ImproperlyConfigured(
        "BRIDGE_CARD_TOKEN must differ from BRIDGE_API_TOKEN and BRIDGE_INBOUND_TOKEN."
    )
if BRIDGE_CARD_TOKEN and len(BRIDGE_CARD_TOKEN) < 32:
    raise ImproperlyConfigured("BRIDGE_CARD_TOKEN must be at least 32 characters.")
# External bots (manage.py bridge_bot): how often the ticker compares them with Infobip (0: never).
BRIDGE_BOT_CHECK_SECONDS = env.float("BRIDGE_BOT_CHECK_SECONDS", default=300)
BRIDGE_CARD_ORIGINS = env.list("BRIDGE_CARD_ORIGINS", default=["https://portal.infobip.com"])
for _origin in BRIDGE_CARD_ORIGINS:
    if not re.fullmatch(r"https?://[A-Za-z0-9.*-]+(:[0-9]{1,5})?", _origin):
        raise ImproperlyConfigured(
            f"BRIDGE_CARD_ORIGINS: {_origin!r} is not an origin like https://portal.infobip.com"
        )

# --- Production security (docs/deploy.md) ------------------------------------------------------------
# Each is on by default when DEBUG is off and can be set from the environment. Behind a TLS-terminating
# reverse proxy set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https (the proxy must set that header).
_PRODUCTION = not DEBUG
_proxy_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_header and len(_proxy_header) != 2:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER must be a header and a value, e.g. HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header) or None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_PRODUCTION)
# Load balancers and scrapers inside the network probe these over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if _PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=_PRODUCTION)
# The console behind a proxy on another origin needs its https origin trusted for CSRF; by default the
# public URL's origin is.
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[BRIDGE_PUBLIC_URL] if re.match(r"https?://[^/]+$", BRIDGE_PUBLIC_URL) else [],
)

# Content-Security-Policy (django-csp): the console loads everything from itself. Views that set their
# own header (the context card) keep it.
BRIDGE_CSP = env.bool("BRIDGE_CSP", default=_PRODUCTION)
CONTENT_SECURITY_POLICY = (
    {
        "DIRECTIVES": {
            "default-src": ["'self'"],
            "script-src": ["'self'"],
            "style-src": ["'self'"],
            "img-src": ["'self'", "data:"],
            "object-src": ["'none'"],
            "base-uri": ["'none'"],
            "form-action": ["'self'"],
            "frame-ancestors": ["'none'"],
        }
    }
    if BRIDGE_CSP
    else None
)

# Console login: lockout after repeated failures (django-axes) and a TOTP second factor (django-otp).
BRIDGE_ADMIN_LOCKOUT = env.bool("BRIDGE_ADMIN_LOCKOUT", default=_PRODUCTION)
BRIDGE_ADMIN_2FA = env.bool("BRIDGE_ADMIN_2FA", default=_PRODUCTION)
# Reverse proxies in front of the bridge that append to X-Forwarded-For (used to find the client's address).
BRIDGE_TRUSTED_PROXIES = env.int("BRIDGE_TRUSTED_PROXIES", default=0)
AXES_ENABLED = BRIDGE_ADMIN_LOCKOUT
AXES_FAILURE_LIMIT = env.int("BRIDGE_ADMIN_LOCKOUT_FAILURES", default=5)
AXES_COOLOFF_TIME = env.float("BRIDGE_ADMIN_LOCKOUT_MINUTES", default=15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "bridge.security.client_ip"
AXES_HTTP_RESPONSE_CODE = 429
# The axes backend does nothing while AXES_ENABLED is off.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
OTP_TOTP_ISSUER = env.str("BRIDGE_TOTP_ISSUER", default="Handover Bridge")

INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "axes"]
_after = MIDDLEWARE.index("django_prometheus.middleware.PrometheusAfterMiddleware")
MIDDLEWARE[_after:_after] = [
    "django_otp.middleware.OTPMiddleware",
    "csp.middleware.CSPMiddleware",
    # django-axes wants to be last of the request middleware.
    "axes.middleware.AxesMiddleware",
]

# Operator-only URLs (bridge.security): a bearer token or a staff login, unless made public.
BRIDGE_METRICS_TOKEN = env.str("BRIDGE_METRICS_TOKEN", default="")
BRIDGE_METRICS_PUBLIC = env.bool("BRIDGE_METRICS_PUBLIC", default=False)
BRIDGE_SCHEMA_PUBLIC = env.bool("BRIDGE_SCHEMA_PUBLIC", default=False)

# --- Logging -----------------------------------------------------------------------------------------
# BRIDGE_LOG_FORMAT=json writes one JSON object per line with handover_id and delivery_id on the lines of
# a handover's work; plain (the default) appends them. Secrets are masked either way (bridge.logs).
BRIDGE_LOG_FORMAT = env.str("BRIDGE_LOG_FORMAT", default="plain").lower()
if BRIDGE_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"BRIDGE_LOG_FORMAT must be plain or json, not {BRIDGE_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "bridge.logs.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "bridge.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": BRIDGE_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
