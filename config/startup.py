"""Refuse to start with a bad configuration: one message listing every problem, one line each, and a
non-zero exit, never a traceback. Used by manage.py (every command but the few below) and config/wsgi.py.
The problems are the errors of the "bridge" system checks (bridge/checks.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Commands that need none of the bridge's settings: help, and the demo (its own sandbox).
NEEDS_NO_CONFIGURATION = {"help", "--help", "-h", "version", "--version", "makemigrations", "bridge_demo"}
HEADER = "Handover Bridge cannot start; fix these settings (environment variables or .env), then start again:"


def problems() -> list[str]:
    """Every "bridge" system-check message that is an error, and every secret missing in development
    mode (a warning for the checks, but no process runs without it). Django must be set up."""
    from django.conf import settings
    from django.core import checks

    development = settings.CONFIG_PROBLEMS.missing_in_development
    messages = checks.run_checks(tags=["bridge"])
    return [message.msg for message in messages if message.is_serious() or message.msg in development]


def refuse_bad_configuration(argv: list[str] | None = None, *, exit_code: int = 2) -> None:
    """Set Django up; print every configuration problem to stderr and exit with `exit_code` if any."""
    if argv is not None and (len(argv) < 2 or argv[1] in NEEDS_NO_CONFIGURATION):
        return
    import logging

    import django

    logging.disable(logging.INFO)  # apps' start-up chatter (django-axes) would come before the message
    try:
        django.setup()
    finally:
        logging.disable(logging.NOTSET)
    found = problems()
    if found:
        from django.conf import settings

        if settings.ENV_FILE and not Path(settings.ENV_FILE).exists():
            found.append(
                f"(no {settings.ENV_FILE}: for development, scripts/run writes one with random secrets)"
            )
        sys.stderr.write(HEADER + "\n" + "".join(f"  {line}\n" for line in found))
        sys.stderr.flush()
        sys.exit(exit_code)


def execute(argv: list[str]) -> None:
    """Run a management command; an unexpected error is one line and exit 1 (--traceback shows it all).

    Django already prints a CommandError as one line; anything else would be a traceback."""
    from django.core.management import execute_from_command_line

    if "--traceback" in argv:
        execute_from_command_line(argv)
        return
    try:
        execute_from_command_line(argv)
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        text = (lines[0] if lines else "")[:300]
        sys.stderr.write(
            f"Error: {type(exc).__name__}{': ' + text if text else ''} (run again with --traceback for details)\n"
        )
        sys.exit(1)
