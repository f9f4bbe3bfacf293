"""Signing webhook bodies so that a receiver can tell they come from us and are recent.

The signature is HMAC-SHA256 over `"{timestamp}.{body}"` with the shared secret, sent as
`X-Agent-Growth-Signature: t=<unix seconds>,v1=<hex digest>`. Signing the timestamp together with
the body lets a receiver refuse a captured request replayed later; receivers drop retried
duplicates by `X-Agent-Growth-Event-Id`. A header may carry several `v1=` entries, so a receiver
verifying with either of two secrets keeps working while the secret is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Agent-Growth-Signature"
EVENT_ID_HEADER = "X-Agent-Growth-Event-Id"

DEFAULT_TOLERANCE_S = 300
"""How far a signature's timestamp may be from the receiver's clock: five minutes of skew."""


def _digest(secret: str, *, timestamp_s: int, body: bytes) -> str:
    message = str(timestamp_s).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp_s: int | None = None) -> str:
    """The value of the signature header for `body`, signed now unless `timestamp_s` is given."""
    if timestamp_s is None:
        timestamp_s = int(time.time())
    return f"t={timestamp_s},v1={_digest(secret, timestamp_s=timestamp_s, body=body)}"


def verify_signature(
    secret: str,
    *,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now_s: float | None = None,
) -> bool:
    """True when `header` signs exactly `body` with `secret`, within `tolerance_s` of now.

    `body` must be the raw request body as received, before any JSON parsing: re-serialising
    the parsed payload changes the bytes and breaks the signature. `header` and `body` are
    keyword-only because both may be strings, and swapped they would fail without an error.
    """
    if not header:
        return False
    if isinstance(body, str):
        body = body.encode("utf-8")

    timestamp_s: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp_s = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp_s is None or not candidates:
        return False

    if now_s is None:
        now_s = time.time()
    if abs(now_s - timestamp_s) > tolerance_s:
        return False

    expected = _digest(secret, timestamp_s=timestamp_s, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
