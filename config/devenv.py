"""Write a development `.env` with random secrets: `python -m config.devenv [PATH]` (default `.env`).

scripts/run does this on its first start when there is no `.env` and no SECRET_KEY, so that every
later command (`.venv/bin/python manage.py ...`) runs with the same settings as the running bridge.
An existing file is never overwritten. The secrets are random per checkout; nothing fixed is served.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

TEMPLATE = """\
# Development settings, written by scripts/run on its first start (random secrets, this checkout only).
# Not for production: see the README's Configuration table. Delete this file to start over.
DEBUG=1
SECRET_KEY={secret_key}
BRIDGE_INBOUND_TOKEN={inbound_token}
BRIDGE_API_TOKEN={api_token}
BRIDGE_ENCRYPTION_KEYS={encryption_key}
# To try a real Infobip account:
# INFOBIP_BASE_URL=https://xxxxx.api.infobip.com
# INFOBIP_API_KEY=...
"""


def render() -> str:
    return TEMPLATE.format(
        secret_key=secrets.token_urlsafe(50),
        inbound_token=secrets.token_urlsafe(32),
        api_token=secrets.token_urlsafe(32),
        encryption_key=Fernet.generate_key().decode(),
    )


def write(path: Path) -> bool:
    """Create `path` (mode 0600) with fresh development settings; False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as file:
        file.write(render())
    return True


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else ".env")
    if write(path):
        print(f"Wrote {path} for development (DEBUG=1, random secrets); edit it or delete it to start over.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
