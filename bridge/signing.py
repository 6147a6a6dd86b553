"""Constant-time token checks and the generic protocol's HMAC signatures."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from bridge.exceptions import SignatureError

TIMESTAMP_HEADER = "X-Bridge-Timestamp"
SIGNATURE_HEADER = "X-Bridge-Signature"
MAX_SKEW_SECONDS = 300


def tokens_equal(given: str | None, expected: str) -> bool:
    """Compare secrets in constant time (never `==`)."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers that sign `body` per the generic protocol: v1=hex(HMAC-SHA256(secret, "<ts>." + body))."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac_sha256_hex(secret, ts.encode() + b"." + body)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"v1={digest}"}


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
    """Raise SignatureError unless the headers carry a valid, fresh generic-protocol signature."""
    ts = headers.get(TIMESTAMP_HEADER) or ""
    signature = headers.get(SIGNATURE_HEADER) or ""
    if not ts or not signature:
        raise SignatureError("missing X-Bridge-Timestamp or X-Bridge-Signature")
    try:
        ts_value = int(ts)
    except ValueError as exc:
        raise SignatureError("X-Bridge-Timestamp is not unix seconds") from exc
    current = time.time() if now is None else now
    if abs(current - ts_value) > MAX_SKEW_SECONDS:
        raise SignatureError("X-Bridge-Timestamp is more than 300 s away from our clock")
    expected = "v1=" + hmac_sha256_hex(secret, ts.encode() + b"." + body)
    # Several comma-separated signatures are accepted, so a sender can rotate its secret.
    if not any(
        hmac.compare_digest(expected.encode(), part.strip().encode()) for part in signature.split(",")
    ):
        raise SignatureError("signature does not match")
