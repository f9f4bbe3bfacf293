"""Opaque cursors for keyset paging over (timestamp, id), or over a unique key alone.

A cursor carries the sort key of the last row a page returned, the name of the list it came
from, and a fingerprint of the filters that list was read with (the agent, a status, a date
window), as URL-safe base64 of JSON. The next page resumes strictly after that key, so rows
sharing one timestamp are told apart by their id: none is skipped or repeated, and rows added
meanwhile do not shift the pages the way OFFSET would. A cursor offered to another list, or to
the same list with other filters, is refused rather than read as a position it never was.
Clients treat cursors as opaque strings.

`fetch_page` is the one way a route pages: it reads one row more than the page holds, so it
knows whether another page follows without counting, and hands out the cursor of the last row.
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
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agent_growth.api.errors import InvalidQuery

MAX_CURSOR_CHARS = 512
"""Far above any cursor we hand out; longer strings are refused before decoding."""

DEFAULT_PAGE_SIZE = 100
"""Rows a page holds unless the client asks for another number."""

MAX_PAGE_SIZE = 1000
"""The most rows one page may hold: a page is one query and one response held in memory."""

NOT_OURS = (
    "is not a cursor this list returned; pass `next_cursor` from the previous page unchanged, "
    "or leave cursor out to start again from the first page"
)

OTHER_FILTERS = (
    "was returned for other filters; page with the same parameters as the request that "
    "returned it, or leave cursor out to start again from the first page"
)

PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
CursorParam = Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)]

Filters = Mapping[str, object]

Row = TypeVar("Row")


@dataclass(frozen=True)
class Cursor:
    at: dt.datetime | None
    ident: str


@dataclass(frozen=True, kw_only=True)
class Keyset:
    """The sort key of one list: a timestamp column and an id column that breaks its ties."""

    kind: str
    """Names the list inside its cursors, so a cursor of another list is refused."""
    at: InstrumentedAttribute[dt.datetime] | None
    """None for a list in the order of its unique `ident` alone (taxonomy nodes by key)."""
    ident: InstrumentedAttribute[Any]
    newest_first: bool
    uuid_ident: bool = False
    """True when the id column holds UUIDs; a cursor must then carry one."""


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    next_cursor: str | None


def _fingerprint(filters: Filters) -> str:
    # A digest rather than the filters themselves keeps the cursor short whatever they hold.
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


def encode(kind: str, *, at: dt.datetime | None, ident: object, filters: Filters) -> str:
    moment = None if at is None else at.isoformat()
    payload = json.dumps(
        {"k": kind, "f": _fingerprint(filters), "t": moment, "i": str(ident)},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode(
    kind: str, value: str, *, filters: Filters, uuid_ident: bool = False, timed: bool = True
) -> Cursor:
    """The position `value` names; InvalidQuery("cursor") unless `encode` made it for this list.

    With `uuid_ident`, the id must also be a UUID, since it is compared with a UUID column;
    without `timed`, the position is the id alone.
    """
    try:
        if len(value) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        padded = value + "=" * (-len(value) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(payload, dict) or payload.get("k") != kind:
            raise ValueError("made for another list")
        ident = payload["i"]
        if not isinstance(ident, str) or not isinstance(payload["f"], str):
            raise ValueError("malformed position")
        at = None
        if timed:
            at = dt.datetime.fromisoformat(payload["t"])
            if at.tzinfo is None:
                raise ValueError("a position without a time zone")
            at = at.astimezone(dt.UTC)
        elif payload["t"] is not None:
            raise ValueError("a timed position for a list ordered by id")
        if uuid_ident:
            ident = str(uuid.UUID(ident))
    except (ValueError, TypeError, KeyError, OverflowError, binascii.Error) as exc:
        # The decoding error itself (a codec or a parser complaint) would tell the client nothing.
        raise InvalidQuery("cursor", NOT_OURS) from exc

    if payload["f"] != _fingerprint(filters):
        raise InvalidQuery("cursor", OTHER_FILTERS)
    return Cursor(at=at, ident=ident)


def position(keyset: Keyset, cursor: str | None, *, filters: Filters) -> Cursor | None:
    """Where `cursor` resumes `keyset`'s list, None for the first page; InvalidQuery if foreign."""
    if cursor is None:
        return None
    return decode(
        keyset.kind,
        cursor,
        filters=filters,
        uuid_ident=keyset.uuid_ident,
        timed=keyset.at is not None,
    )


async def fetch_page(
    session: AsyncSession,
    statement: Select[Row],
    *,
    keyset: Keyset,
    after: Cursor | None,
    filters: Filters,
    limit: int,
) -> Page[Row]:
    """Up to `limit` rows of `statement` in `keyset` order after `after`, and the next cursor.

    `statement` carries the filters; `filters` are what the cursor is bound to, so they must
    name every filter the statement applies.
    """
    columns = [keyset.ident] if keyset.at is None else [keyset.at, keyset.ident]
    if keyset.newest_first:
        statement = statement.order_by(*(column.desc() for column in columns))
    else:
        statement = statement.order_by(*columns)
    if after is not None:
        ident: object = uuid.UUID(after.ident) if keyset.uuid_ident else after.ident
        resumed = tuple_(ident) if after.at is None else tuple_(after.at, ident)
        key = tuple_(*columns)
        statement = statement.where(key < resumed if keyset.newest_first else key > resumed)

    # One row past the page says whether another page follows, without counting.
    found = list((await session.scalars(statement.limit(limit + 1))).all())
    rows = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = rows[-1]
        next_cursor = encode(
            keyset.kind,
            at=None if keyset.at is None else getattr(last, keyset.at.key),
            ident=getattr(last, keyset.ident.key),
            filters=filters,
        )
    return Page(rows, next_cursor)
