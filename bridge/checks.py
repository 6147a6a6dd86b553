"""System checks (tag "bridge"): the configuration problems config/settings.py found, and whether the
database and the broker answer. `manage.py check` lists them; config/startup.py refuses to start any
process while one is an error, printing one line per problem.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections

from config.validation import redact_url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200].rstrip(".")


def _has_problem(name: str) -> bool:
    return any(line.startswith(f"{name}:") for line in settings.CONFIG_PROBLEMS)


@register("bridge")
def configuration(app_configs=None, **kwargs) -> list[CheckMessage]:
    """One error per problem found while reading the settings (config/validation.py); a secret that
    is merely missing in development mode is a warning here (config/startup.py still refuses it)."""
    development = settings.CONFIG_PROBLEMS.missing_in_development
    return [
        (Warning(line, id="bridge.W001") if line in development else Error(line, id="bridge.E001"))
        for line in settings.CONFIG_PROBLEMS
    ]


@register("bridge")
def database_answers(app_configs=None, **kwargs) -> list[Error]:
    """The default database accepts a connection (PostgreSQL gives up after its connect timeout)."""
    if _has_problem("DATABASE_URL"):
        return []
    connection = connections["default"]
    try:
        connection.ensure_connection()
    except Exception as exc:
        return [
            Error(
                f"DATABASE_URL: cannot connect to {redact_url(settings.DATABASE_URL)}: {_first_line(exc)}; "
                "is the database running and reachable from here?",
                id="bridge.E002",
            )
        ]
    return []


@register("bridge")
def broker_answers(app_configs=None, **kwargs) -> list[Error]:
    """Redis (REDIS_URL) answers a PING within a few seconds; the ORM broker is the database."""
    if not settings.REDIS_URL or _has_problem("REDIS_URL"):
        return []
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        return [
            Error(
                f"REDIS_URL: cannot reach {redact_url(settings.REDIS_URL)}: {_first_line(exc)}; "
                "is Redis running, or unset REDIS_URL to queue in the database",
                id="bridge.E003",
            )
        ]
    finally:
        client.close()
    return []
