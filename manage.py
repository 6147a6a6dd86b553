#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config.startup import execute, refuse_bad_configuration

    refuse_bad_configuration(sys.argv)  # every problem at once, one line each, before any command runs
    execute(sys.argv)  # an unexpected error is one line too


if __name__ == "__main__":
    main()
