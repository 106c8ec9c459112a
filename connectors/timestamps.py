"""Timestamp parsing shared by the event API, the CLI and the PagerDuty connector.

Integers are told apart by magnitude as Datadog does (seconds, milliseconds,
microseconds, nanoseconds); API strings must be RFC 3339 with an explicit offset.
Everything is returned as a naive `datetime` in UTC, the warehouse's convention,
between 1970 and 9999 whatever form it came in.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# Seconds since the epoch that still fit a datetime (year 9999) on every database.
_MAX_SECONDS = 253_402_300_799


class TimestampError(ValueError):
    """A value that is not a valid timestamp; the message says what is accepted."""


def from_epoch_number(value: int) -> datetime:
    """Unix time in s, ms, µs or ns by magnitude (|n| < 1e11 s, < 1e14 ms, < 1e17 µs)."""
    magnitude = abs(value)
    if magnitude < 10**11:
        micros = value * 1_000_000
    elif magnitude < 10**14:
        micros = value * 1_000
    elif magnitude < 10**17:
        micros = value
    else:
        micros = value // 1_000
    if not 0 <= micros // 1_000_000 <= _MAX_SECONDS:
        raise TimestampError(f"{value} is outside the supported range (1970 to 9999)")
    return _EPOCH + timedelta(microseconds=micros)


def from_rfc3339(value: str) -> datetime:
    """An RFC 3339 string with an offset (`Z` or `±HH:MM`); fractions beyond µs are truncated."""
    text = value.strip()
    if not _RFC3339.match(text):
        raise TimestampError(
            f"{value!r} is not an RFC 3339 timestamp with an offset, e.g. 2025-01-31T12:00:00Z"
        )
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("z", "Z").replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise TimestampError(f"{value!r} is not a valid date and time: {error}") from None
    return _naive_utc(parsed, value)


def from_iso8601(value: str) -> datetime:
    """Any ISO 8601 date and time Python reads (`Z`, `+02:00`, `+0200`, minutes only, a bare
    date...); without an offset it is taken as UTC, the warehouse's time. The CLI's leniency:
    the API insists on an offset, since a body without one may come from anywhere."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TimestampError(
            f"{value!r} is not an ISO 8601 date and time, e.g. 2025-01-31T12:00:00Z"
        ) from None
    return _naive_utc(parsed, value)


def _naive_utc(moment: datetime, value: object) -> datetime:
    """`moment` in UTC without tzinfo (a naive one is UTC already), if within 1970 to 9999."""
    out_of_range = TimestampError(f"{value!r} is outside the supported range (1970 to 9999)")
    try:
        utc = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except OverflowError:  # an offset that carries it past year 9999 or before year 1
        raise out_of_range from None
    if utc.year < _EPOCH.year:
        raise out_of_range
    return utc


def parse_timestamp(value: object) -> datetime:
    """Parse an API timestamp: an integer (any unit above) or an RFC 3339 string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TimestampError("expected an integer Unix timestamp or an RFC 3339 string")
    if isinstance(value, int):
        return from_epoch_number(value)
    return from_rfc3339(value)


def utcnow() -> datetime:
    """The current time as a naive UTC datetime, matching what the warehouse stores."""
    return datetime.now(UTC).replace(tzinfo=None)
