"""The one loader of the vendor payloads in tests/fixtures/<source>/ (each folder's README gives
where every file comes from).

    load_fixture("infobip", "api_get_messages_200")       # parsed JSON, a fresh object on every call
    fixture_bytes("zendesk", "webhook_ticket_comment_added.json")   # the bytes as recorded (signatures)

`name` may leave out the `.json` suffix. A missing file is an error, never a skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


def fixture_path(source: str, name: str) -> Path:
    path = FIXTURES_DIR / source / (name if Path(name).suffix else f"{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"no fixture {path.relative_to(FIXTURES_DIR.parent)}")
    return path


def fixture_bytes(source: str, name: str) -> bytes:
    return fixture_path(source, name).read_bytes()


def load_fixture(source: str, name: str) -> Any:
    return json.loads(fixture_bytes(source, name))
