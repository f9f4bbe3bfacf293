"""Opaque cursors for keyset paging over (timestamp, id).

A cursor carries the sort key of the last row a page returned, and the name of the list it came
from, as URL-safe base64 of JSON. The next page resumes strictly after that key, so rows sharing
one timestamp are told apart by their id: none is skipped or repeated, and rows added meanwhile
do not shift the pages the way OFFSET would. Clients treat cursors as opaque strings.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from dataclasses import dataclass

from agent_growth.api.errors import InvalidQuery

MAX_CURSOR_CHARS = 512
"""Far above any cursor we hand out; longer strings are refused before decoding."""


@dataclass(frozen=True)
class Cursor:
    at: dt.datetime
    ident: str


def encode(kind: str, *, at: dt.datetime, ident: object) -> str:
    payload = json.dumps({"k": kind, "t": at.isoformat(), "i": str(ident)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode(kind: str, value: str, *, uuid_ident: bool = False) -> Cursor:
    """The position `value` names; InvalidQuery("cursor") when it is not a cursor of `kind`.

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
        if at.tzinfo is None or not isinstance(ident, str):
            raise ValueError("malformed position")
        if uuid_ident:
            ident = str(uuid.UUID(ident))
    except (ValueError, TypeError, KeyError, UnicodeError, binascii.Error) as exc:
        raise InvalidQuery(
            "cursor",
            f"is not a cursor of this list ({exc}); pass `next_cursor` from the previous page "
            "unchanged, or leave it out to start from the first page",
        ) from exc
    return Cursor(at=at, ident=ident)
