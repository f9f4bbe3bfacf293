"""The date bounds of a history query, read the way a person means them.

`start_date` and `end_date` take a date (`2026-03-01`) or a date-time (ISO 8601). A date stands
for its whole UTC day, both bounds included: `start_date=D` starts at D 00:00 UTC and
`end_date=D` ends just before D+1 00:00 UTC, so `start_date=D&end_date=D` is that one day. A
date-time is an instant and is included; without an offset it is read as UTC, with one it is
converted. Both become one half-open window `[start_at, end_before)`, which is what the query
compares timestamps with, so no bound depends on how finely a timestamp is stored.

In a query string `+` means a space (form encoding), so an unescaped `+02:00` arrives as
` 02:00`. That form is read as the offset it was meant to be; clients should still send `%2B`.
"""

from __future__ import annotations

import datetime as dt
import re

from agent_growth.api.errors import InvalidQuery

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SPACED_OFFSET = re.compile(r"(.*\d[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) (\d{2}(?::?\d{2})?)")
# The UTC offset at the end of a date-time: sign, hours, and minutes when given.
_OFFSET = re.compile(r"[T ][^+-]*([+-]\d{2}):?(\d{2})?(?::?\d{2}(?:[.,]\d+)?)?$")

# PostgreSQL stores timestamps to the microsecond, so "up to and including T" is "before T+1µs".
_RESOLUTION = dt.timedelta(microseconds=1)

_FORMATS = "a date (2026-03-01) or an ISO 8601 date-time (2026-03-01T12:00:00+02:00)"


def _check_offset(value: str, *, field: str) -> None:
    # Python refuses hours past 23 with a message about timedelta reprs, and reads minutes past
    # 59 as whole hours more (+05:75 as +06:15); ISO 8601 has neither.
    offset = _OFFSET.search(value)
    if offset is None:
        return
    hours, minutes = offset[1], offset[2] or "00"
    if abs(int(hours)) > 23 or int(minutes) > 59:
        raise InvalidQuery(
            field,
            f"{value!r} has the UTC offset {hours}:{minutes}; the UTC offset must be between "
            "-23:59 and +23:59",
        )


def _parse(value: str, *, field: str) -> dt.date | dt.datetime:
    value = value.strip()
    try:
        if _DATE_ONLY.fullmatch(value):
            return dt.date.fromisoformat(value)
        spaced = _SPACED_OFFSET.fullmatch(value)
        if spaced:
            value = f"{spaced[1]}+{spaced[2]}"
        _check_offset(value, field=field)
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidQuery(field, f"{value!r} is not {_FORMATS} ({exc})") from exc
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _bound(value: str, *, field: str, end: bool) -> dt.datetime:
    try:
        moment = _parse(value, field=field)
        if isinstance(moment, dt.datetime):
            return moment + _RESOLUTION if end else moment
        day_start = dt.datetime.combine(moment, dt.time(), tzinfo=dt.UTC)
        return day_start + dt.timedelta(days=1) if end else day_start
    except OverflowError as exc:
        if end:
            # The bound is exclusive; past the last representable instant means "no end".
            return dt.datetime.max.replace(tzinfo=dt.UTC)
        raise InvalidQuery(field, f"{value!r} lies outside years 1 to 9999 in UTC") from exc


def window(
    *, start_date: str | None, end_date: str | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """`(start_at, end_before)`: timestamps t with start_at <= t < end_before; None is open."""
    start_at = None if start_date is None else _bound(start_date, field="start_date", end=False)
    end_before = None if end_date is None else _bound(end_date, field="end_date", end=True)
    if start_at is not None and end_before is not None and start_at >= end_before:
        raise InvalidQuery(
            "start_date", f"{start_date} is after end_date {end_date}; swap them or widen the range"
        )
    return start_at, end_before
