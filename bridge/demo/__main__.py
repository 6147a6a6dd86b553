"""`python -m bridge.demo`: the sandboxed side of `manage.py bridge_demo` (see bridge.demo.sandbox).

Expects the environment bridge.demo.sandbox.environment() gives; exits 0 when the handover completed.
"""

from __future__ import annotations

import sys

import django


def main() -> int:
    django.setup()
    from django.core.management import call_command

    from bridge.demo.scenario import DemoFailed, play

    call_command("migrate", verbosity=0)
    try:
        summary = play(print)
    except DemoFailed as exc:
        print(exc)
        return 1
    print(f"Demo complete: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
