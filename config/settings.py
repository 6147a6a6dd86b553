"""Settings, read from the environment (and a `.env` file in the project root) with django-environ.

Every variable of the public contract is documented in README.md. Values are checked as they are read
(config/validation.py): every problem becomes one line of CONFIG_PROBLEMS and a safe placeholder stands
in, so that every problem is reported at once and no process starts until they are fixed
(config/startup.py, bridge/checks.py).
"""

import base64
import hashlib
import os
import re
from pathlib import Path

import environ

from config import validation

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# BRIDGE_ENV_FILE names another file, or none when empty (the demo's sandbox reads none).
ENV_FILE = os.environ.get("BRIDGE_ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)

CONFIG_PROBLEMS = validation.Problems()
URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _int(name: str, default: int, minimum: int = 0) -> int:
    return CONFIG_PROBLEMS.number(name, env.str(name, default=""), default, int, minimum)


def _float(name: str, default: float, minimum: float = 0) -> float:
    return CONFIG_PROBLEMS.number(name, env.str(name, default=""), default, float, minimum)


DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = CONFIG_PROBLEMS.secret(
    "SECRET_KEY",
    env.str("SECRET_KEY", default=""),
    min_length=50,
    debug=DEBUG,
    how=validation.MAKE_SECRET_KEY,
)
BRIDGE_PUBLIC_URL = CONFIG_PROBLEMS.http_url(
    "BRIDGE_PUBLIC_URL",
    env.str("BRIDGE_PUBLIC_URL", default="http://localhost:8000").rstrip("/"),
    "https://bridge.example.com",
)
# Without ALLOWED_HOSTS, a production bridge answers to the host of its public URL.
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=["localhost", "127.0.0.1", "[::1]"]
    if DEBUG
    else [validation.host_of(BRIDGE_PUBLIC_URL) or "localhost"],
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Hosts a load balancer's health probe may send (besides any IP address): /healthz answers them.
BRIDGE_PROBE_HOSTS = env.list("BRIDGE_PROBE_HOSTS", default=[])

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
    "bridge.health.ProbeHostMiddleware",  # /healthz for probes that send an IP address as Host
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
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": CONFIG_PROBLEMS.database(DATABASE_URL, environ.Env.db_url_config)
    # stands in for an unusable DATABASE_URL so the problem can be reported
    or {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions serialise writers up front instead of failing on lock upgrade; WAL lets
    # the web process read while a worker writes. The busy timeout is how long a writer waits.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": _float("SQLITE_TIMEOUT_SECONDS", 20),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    if env.str("TEST_SQLITE_NAME", default=""):
        DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_SQLITE_NAME")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", _int("CONN_MAX_AGE", 60))
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
        # a database that does not answer fails the start (and /healthz) in seconds, not minutes
        _pg_options.setdefault("connect_timeout", _int("DATABASE_CONNECT_TIMEOUT_SECONDS", 5, 1))
        _idle = _int("BRIDGE_DB_IDLE_IN_TRANSACTION_SECONDS", 300)
        if _idle > 0:
            _pg_options["options"] = (
                f"{_pg_options.get('options', '')} -c idle_in_transaction_session_timeout={_idle * 1000}".strip()
            )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Task queue (django-q2) -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CONFIG_PROBLEMS.redis_url(REDIS_URL)
Q_CLUSTER = {
    "name": "bridge",
    "workers": _int("Q_WORKERS", 4),
    # A task killed mid-run is handed out again after `retry` seconds (ORM broker); it must be longer
    # than the longest task (`timeout`), which is the ticker's run plus slack.
    "timeout": _int("Q_TIMEOUT_SECONDS", 150),
    "retry": _int("Q_RETRY_SECONDS", 180),
    "max_attempts": 0,
    "save_limit": _int("Q_SAVE_LIMIT", 1000),
    "ack_failures": True,
    "catch_up": False,
    "poll": _float("Q_POLL_SECONDS", 0.5),
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
DATA_UPLOAD_MAX_MEMORY_SIZE = _int("BRIDGE_MAX_BODY_BYTES", 1024 * 1024)

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
if INFOBIP_BASE_URL:
    CONFIG_PROBLEMS.http_url("INFOBIP_BASE_URL", INFOBIP_BASE_URL, "https://xxxxx.api.infobip.com")
elif not DEBUG:
    CONFIG_PROBLEMS.add(
        "INFOBIP_BASE_URL",
        "not set (needed when DEBUG is off); your account's base URL, e.g. https://xxxxx.api.infobip.com",
    )
if not INFOBIP_API_KEY and not DEBUG:
    CONFIG_PROBLEMS.add(
        "INFOBIP_API_KEY",
        "not set (needed when DEBUG is off); an Infobip API key with the conversations:manage scope",
    )
BRIDGE_INBOUND_TOKEN = CONFIG_PROBLEMS.secret(
    "BRIDGE_INBOUND_TOKEN",
    env.str("BRIDGE_INBOUND_TOKEN", default=""),
    min_length=32,
    debug=DEBUG,
    how=validation.MAKE_TOKEN,
)
if any(c not in URL_SAFE for c in BRIDGE_INBOUND_TOKEN):
    CONFIG_PROBLEMS.add(
        "BRIDGE_INBOUND_TOKEN",
        f"must be url-safe (letters, digits, '-' and '_'), e.g. the output of {validation.MAKE_TOKEN}",
    )
BRIDGE_API_TOKEN = CONFIG_PROBLEMS.secret(
    "BRIDGE_API_TOKEN",
    env.str("BRIDGE_API_TOKEN", default=""),
    min_length=32,
    debug=DEBUG,
    how=validation.MAKE_TOKEN,
)


def _derived_fernet_key(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(f"bridge-encryption:{secret}".encode()).digest()).decode()


BRIDGE_ENCRYPTION_KEYS = CONFIG_PROBLEMS.fernet_keys(
    "BRIDGE_ENCRYPTION_KEYS", env.list("BRIDGE_ENCRYPTION_KEYS", default=[])
)
if not env.list("BRIDGE_ENCRYPTION_KEYS", default=[]):
    if not DEBUG:
        CONFIG_PROBLEMS.add(
            "BRIDGE_ENCRYPTION_KEYS",
            f"not set (needed when DEBUG is off); comma-separated Fernet keys, newest first; generate one with "
            f"{validation.MAKE_FERNET_KEY}",
        )
    BRIDGE_ENCRYPTION_KEYS = [_derived_fernet_key(SECRET_KEY)]
elif not BRIDGE_ENCRYPTION_KEYS:
    BRIDGE_ENCRYPTION_KEYS = [_derived_fernet_key(SECRET_KEY)]  # placeholder; the start is refused
# django-fernet-encrypted-fields reads SALT_KEY; our field subclass uses BRIDGE_ENCRYPTION_KEYS.
SALT_KEY = ["handover-bridge"]

BRIDGE_RETRY_BASE_SECONDS = _float("BRIDGE_RETRY_BASE_SECONDS", 5)
BRIDGE_RETRY_MAX_SECONDS = _float("BRIDGE_RETRY_MAX_SECONDS", 3600)
BRIDGE_RETRY_MAX_ATTEMPTS = _int("BRIDGE_RETRY_MAX_ATTEMPTS", 15)
BRIDGE_POLL_INTERVAL_SECONDS = _float("BRIDGE_POLL_INTERVAL_SECONDS", 15)
BRIDGE_STUCK_AFTER_SECONDS = _float("BRIDGE_STUCK_AFTER_SECONDS", 900)
BRIDGE_ALERT_WAITING_SECONDS = _float("BRIDGE_ALERT_WAITING_SECONDS", 600)
BRIDGE_ALERT_HEARTBEAT_SECONDS = _float("BRIDGE_ALERT_HEARTBEAT_SECONDS", 300)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="handover-bridge@localhost")
# Alert e-mail: EMAIL_URL such as smtp+tls://user:password@smtp.example.com:587 (django-environ).
globals().update(env.email_url("EMAIL_URL", default="consolemail://"))
BRIDGE_IDLE_CLOSE_SECONDS = _float("BRIDGE_IDLE_CLOSE_SECONDS", 86400)
# How long a claimed delivery stays leased to its worker. A heartbeat renews it every third of this
# while the worker is still working, so it bounds how long a killed worker's delivery waits, not how
# long a call may take.
BRIDGE_LEASE_SECONDS = _float("BRIDGE_LEASE_SECONDS", 10)
# How often the ticker looks for due work (retries, polls, stuck and idle handovers).
BRIDGE_TICK_SECONDS = _float("BRIDGE_TICK_SECONDS", 1)
# /healthz reports the worker missing when the cluster's ticker has not beaten for this long
# (the ticker restarts from a once-a-minute schedule, so keep it above 60).
BRIDGE_HEARTBEAT_STALE_SECONDS = _float("BRIDGE_HEARTBEAT_STALE_SECONDS", 120)
# How long /healthz waits for the database to accept (and roll back) a write.
BRIDGE_HEALTHZ_WRITE_TIMEOUT_SECONDS = _float("BRIDGE_HEALTHZ_WRITE_TIMEOUT_SECONDS", 2)
BRIDGE_HTTP_CONNECT_TIMEOUT = _float("BRIDGE_HTTP_CONNECT_TIMEOUT", 5)
BRIDGE_HTTP_READ_TIMEOUT = _float("BRIDGE_HTTP_READ_TIMEOUT", 30)
BRIDGE_ALLOW_PRIVATE_URLS = env.bool("BRIDGE_ALLOW_PRIVATE_URLS", default=False)
# Data retention (bridge.retention), off by default: days after a handover ended before its message
# content is removed, and days after receipt before raw vendor payloads are removed.
BRIDGE_RETENTION_DAYS = _float("BRIDGE_RETENTION_DAYS", 0)
BRIDGE_RAW_RETENTION_DAYS = _float("BRIDGE_RAW_RETENTION_DAYS", 0)

# Infobip side (docs/infobip.md). Reconciliation re-reads open conversations' messages this often,
# so a dropped Infobip webhook costs at most one interval; the overlap re-reads a little earlier.
BRIDGE_RECONCILE_INTERVAL_SECONDS = _float("BRIDGE_RECONCILE_INTERVAL_SECONDS", 60)
BRIDGE_RECONCILE_OVERLAP_SECONDS = _float("BRIDGE_RECONCILE_OVERLAP_SECONDS", 300)
# Infobip publishes ~500 Get Messages requests a minute; the bridge stays under it across workers.
BRIDGE_INFOBIP_GET_MESSAGES_PER_MINUTE = _int("BRIDGE_INFOBIP_GET_MESSAGES_PER_MINUTE", 450)
# Subscriptions webhook security. Infobip does not document the HMAC header name or encoding, so
# both are configurable: any of these headers, hex or base64, with or without a "sha256=" prefix.
BRIDGE_INFOBIP_HMAC_HEADERS = env.list(
    "BRIDGE_INFOBIP_HMAC_HEADERS",
    default=["X-Hub-Signature-256", "X-Hub-Signature", "X-Signature", "X-Infobip-Signature"],
)
BRIDGE_INFOBIP_HMAC_ENCODING = CONFIG_PROBLEMS.choice(
    "BRIDGE_INFOBIP_HMAC_ENCODING",
    env.str("BRIDGE_INFOBIP_HMAC_ENCODING", default="any"),
    ("hex", "base64", "any"),
)  # hex|base64|any
BRIDGE_INFOBIP_SUBSCRIPTION_ID = env.str("BRIDGE_INFOBIP_SUBSCRIPTION_ID", default="handover-bridge")
# While migrating from the legacy account-configuration webhook (which cannot sign), accept its
# unsigned message bodies even when Subscriptions security is configured.
BRIDGE_INFOBIP_ACCEPT_UNSIGNED_LEGACY = env.bool("BRIDGE_INFOBIP_ACCEPT_UNSIGNED_LEGACY", default=False)

# Infobip's custom context card (GET/POST /api/context-card/): its own bearer token (unset: the card
# is off), and the origins allowed to embed its HTML (CSP frame-ancestors) and to call it from a browser.
BRIDGE_CARD_TOKEN = env.str("BRIDGE_CARD_TOKEN", default="")
if BRIDGE_CARD_TOKEN and BRIDGE_CARD_TOKEN in (BRIDGE_API_TOKEN, BRIDGE_INBOUND_TOKEN):
    CONFIG_PROBLEMS.add(
        "BRIDGE_CARD_TOKEN",
        "must differ from BRIDGE_API_TOKEN and BRIDGE_INBOUND_TOKEN; e.g. the output of "
        + validation.MAKE_TOKEN,
    )
if BRIDGE_CARD_TOKEN and len(BRIDGE_CARD_TOKEN) < 32:
    CONFIG_PROBLEMS.add(
        "BRIDGE_CARD_TOKEN", f"must be at least 32 characters; e.g. the output of {validation.MAKE_TOKEN}"
    )
# External bots (.venv/bin/python manage.py bridge_bot): how often the ticker compares them with Infobip (0: never).
BRIDGE_BOT_CHECK_SECONDS = _float("BRIDGE_BOT_CHECK_SECONDS", 300)
BRIDGE_CARD_ORIGINS = env.list("BRIDGE_CARD_ORIGINS", default=["https://portal.infobip.com"])
for _origin in BRIDGE_CARD_ORIGINS:
    if not re.fullmatch(r"https?://[A-Za-z0-9.*-]+(:[0-9]{1,5})?", _origin):
        CONFIG_PROBLEMS.add(
            "BRIDGE_CARD_ORIGINS", f"{_origin!r} is not an origin like https://portal.infobip.com"
        )

# --- Production security (docs/deploy.md) ------------------------------------------------------------
# Each is on by default when DEBUG is off and can be set from the environment. Behind a TLS-terminating
# reverse proxy set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https (the proxy must set that header).
_PRODUCTION = not DEBUG
_proxy_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_header and len(_proxy_header) != 2:
    CONFIG_PROBLEMS.add(
        "SECURE_PROXY_SSL_HEADER", "must be a header and a value, e.g. HTTP_X_FORWARDED_PROTO,https"
    )
    _proxy_header = []
SECURE_PROXY_SSL_HEADER = tuple(_proxy_header) or None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_PRODUCTION)
# Load balancers and scrapers inside the network probe these over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = _int("SESSION_COOKIE_AGE", 8 * 3600)
SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 31536000 if _PRODUCTION else 0)
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
BRIDGE_TRUSTED_PROXIES = _int("BRIDGE_TRUSTED_PROXIES", 0)
AXES_ENABLED = BRIDGE_ADMIN_LOCKOUT
AXES_FAILURE_LIMIT = _int("BRIDGE_ADMIN_LOCKOUT_FAILURES", 5)
AXES_COOLOFF_TIME = _float("BRIDGE_ADMIN_LOCKOUT_MINUTES", 15) / 60  # hours
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
BRIDGE_LOG_FORMAT = CONFIG_PROBLEMS.choice(
    "BRIDGE_LOG_FORMAT", env.str("BRIDGE_LOG_FORMAT", default="plain").lower(), ("json", "plain")
)
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
