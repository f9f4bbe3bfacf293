"""Opaque cursors for keyset paging over (timestamp, id).

A cursor carries the sort key of the last row a page returned, the name of the list it came
from, and a fingerprint of the filters that list was read with (the agent, a status, a date
window), as URL-safe base64 of JSON. The next page resumes strictly after that key, so rows
sharing one timestamp are told apart by their id: none is skipped or repeated, and rows added
meanwhile do not shift the pages the way OFFSET would. A cursor offered to another list, or to
the same list with other filters, is refused rather than read as a position it never was.
Clients treat cursors as opaque strings.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from agent_growth.api.errors import InvalidQuery

MAX_CURSOR_CHARS = 512
"""Far above any cursor we hand out; longer strings are refused before decoding."""

NOT_OURS = (
    "is not a cursor this list returned; pass `next_cursor` from the previous page unchanged, "
    "or leave cursor out to start again from the first page"
)

OTHER_FILTERS = (
    "was returned for another agent or other filters; page with the same parameters as the "
    "request that returned it, or leave cursor out to start again from the first page"
)

Filters = Mapping[str, object]


@dataclass(frozen=True)
class Cursor:
    at: dt.datetime
    ident: str


def _fingerprint(filters: Filters) -> str:
    # A digest rather than the filters themselves keeps the cursor short whatever they hold.
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def encode(kind: str, *, at: dt.datetime, ident: object, filters: Filters) -> str:
    payload = json.dumps(
        {"k": kind, "f": _fingerprint(filters), "t": at.isoformat(), "i": str(ident)},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode(kind: str, value: str, *, filters: Filters, uuid_ident: bool = False) -> Cursor:
    """The position `value` names; InvalidQuery("cursor") unless `encode` made it for this list.

    With `uuid_ident`, the id must also be a UUID, since it is compared with a UUID column.
    """
    try:
        if len(value) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        padded = value + "=" * (-len(value) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(payload, dict) or payload.get("k") != kind:
            raise ValueError("made for another list")
        at = dt.datetime.fromisoformat(payload["t"])
        ident = payload["i"]
        if at.tzinfo is None or not isinstance(ident, str) or not isinstance(payload["f"], str):
            raise ValueError("malformed position")
        at = at.astimezone(dt.UTC)
        if uuid_ident:
            ident = str(uuid.UUID(ident))
    except (ValueError, TypeError, KeyError, OverflowError, binascii.Error) as exc:
        # The decoding error itself (a codec or a parser complaint) would tell the client nothing.
        raise InvalidQuery("cursor", NOT_OURS) from exc

    if payload["f"] != _fingerprint(filters):
        raise InvalidQuery("cursor", OTHER_FILTERS)
    return Cursor(at=at, ident=ident)
