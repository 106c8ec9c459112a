"""Listing every incident of a time range, completely and fast.

`GET /incidents` answers at most 6 months per request (`since`/`until` filter
on `created_at`) and never past offset+limit 10,000. So a range is cut into
windows of at most 6 calendar months; each window's first page is requested
with `total=true`, which both returns 100 incidents and says how many pages
follow; a window over 10,000 (or one that answers error 2002 because it grew
while being read) is split in two and listed again. All pages of all windows
are then fetched concurrently, each with the same fixed `until`, sorted by
`created_at` ascending in UTC, and the account-wide rate limiter of the client
sets the pace. Incidents seen twice (a window re-listed after a split, a
listing that shifted) are passed on once.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.pagerduty.client import OffsetLimitExceeded, PagerDutyClient, PagerDutyError
from connectors.timestamps import utcnow

PAGE_SIZE = 100
OFFSET_LIMIT_CAP = 10_000
MAX_WINDOW_MONTHS = 6
OPEN_STATUSES = ("triggered", "acknowledged")

Progress = Callable[[str], None]


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus calendar months, the day clamped to the target month (Aug 31 + 6 = Feb 28)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _format(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ListingError(PagerDutyError):
    """A listing that cannot be completed within PagerDuty's paging rules."""


class AllDatesListingTooLarge(ListingError):
    """A `date_range=all` listing over 10,000: it has no time window to split."""


@dataclass(frozen=True)
class Window:
    """A created_at range [since, until) in naive UTC, or every date (both None)."""

    since: datetime | None
    until: datetime | None

    @property
    def label(self) -> str:
        if self.since is None or self.until is None:
            return "all dates"
        if self.since.time() == self.until.time() == datetime.min.time():
            return f"{self.since:%Y-%m-%d}..{self.until:%Y-%m-%d}"
        return f"{_format(self.since)}..{_format(self.until)}"

    def params(self) -> dict[str, str]:
        if self.since is None or self.until is None:
            return {"date_range": "all"}
        return {"since": _format(self.since), "until": _format(self.until)}

    def halves(self) -> tuple[Window, Window]:
        if self.since is None or self.until is None:
            raise AllDatesListingTooLarge(
                "More than 10,000 incidents match a listing over all dates, which PagerDuty "
                "cannot page through; list them by created_at windows instead."
            )
        seconds = int((self.until - self.since).total_seconds())
        if seconds < 2:
            raise ListingError(
                f"More than 10,000 incidents were created in {self.label}; PagerDuty cannot "
                "page past 10,000 and the window cannot be split further."
            )
        middle = self.since + timedelta(seconds=seconds // 2)
        return Window(self.since, middle), Window(middle, self.until)


def windows_between(since: datetime, until: datetime) -> list[Window]:
    """[since, until) cut into consecutive windows of at most 6 calendar months."""
    if since >= until:
        return []
    windows = []
    start = since
    while start < until:
        end = min(add_months(start, MAX_WINDOW_MONTHS), until)
        windows.append(Window(start, end))
        start = end
    return windows


@dataclass
class Page:
    """Incidents not seen before in this listing, and when PagerDuty reported them."""

    incidents: list[dict[str, Any]]
    observed_at: datetime


@dataclass
class ListingStats:
    windows: int = 0
    pages: int = 0
    split_windows: int = 0


@dataclass
class _WindowProgress:
    pages_total: int
    pages_done: int = 0
    last_offset: int = 0


@dataclass(frozen=True)
class _Request:
    window: Window
    offset: int


@dataclass
class IncidentLister:
    """Lists incidents through `client` with up to `max_workers` requests in flight."""

    client: PagerDutyClient
    max_workers: int = 10
    on_progress: Progress | None = None
    stats: ListingStats = field(default_factory=ListingStats)

    def created_between(
        self, since: datetime, until: datetime, filters: Mapping[str, Any] | None = None
    ) -> Iterator[Page]:
        """Every incident created in [since, until) (naive UTC) that matches `filters`."""
        return self._list(windows_between(since, until), filters or {})

    def all_dates(self, filters: Mapping[str, Any]) -> Iterator[Page]:
        """Every incident matching `filters` whatever its date (`date_range=all`)."""
        return self._list([Window(None, None)], filters)

    def probe_total(self, window: Window, filters: Mapping[str, Any]) -> int:
        """How many incidents a listing would return, in one request."""
        body = self.client.list_incidents_page(self._params(window, filters, 0, limit=1))
        return int(body["total"])

    def _params(
        self, window: Window, filters: Mapping[str, Any], offset: int, limit: int = PAGE_SIZE
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            **filters,
            **window.params(),
            "time_zone": "UTC",
            "sort_by": "created_at:asc",
            "limit": limit,
            "offset": offset,
        }
        if offset == 0:
            params["total"] = "true"
        return params

    def _fetch(self, request: _Request, filters: Mapping[str, Any]) -> tuple[dict, datetime]:
        body = self.client.list_incidents_page(
            self._params(request.window, filters, request.offset)
        )
        return body, utcnow()

    def _list(self, windows: list[Window], filters: Mapping[str, Any]) -> Iterator[Page]:
        progress: dict[Window, _WindowProgress] = {}
        seen: set[str] = set()
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="pagerduty") as pool:
            pending: dict[Future, _Request] = {}

            def submit(window: Window, offset: int) -> None:
                request = _Request(window, offset)
                pending[pool.submit(self._fetch, request, filters)] = request

            def split(window: Window) -> None:
                self.stats.split_windows += 1
                progress.pop(window, None)
                for half in window.halves():
                    submit(half, 0)

            try:
                for window in windows:
                    submit(window, 0)
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        request = pending.pop(future)
                        window = request.window
                        if request.offset and window not in progress:
                            continue  # a page of a window that was split meanwhile
                        try:
                            body, observed_at = future.result()
                        except OffsetLimitExceeded:
                            split(window)
                            continue
                        self.stats.pages += 1
                        if request.offset == 0:
                            total = int(body["total"] or 0)
                            if total > OFFSET_LIMIT_CAP:
                                split(window)
                                continue
                            self.stats.windows += 1
                            pages_total = max(1, math.ceil(total / PAGE_SIZE))
                            state = _WindowProgress(pages_total)
                            state.last_offset = (state.pages_total - 1) * PAGE_SIZE
                            progress[window] = state
                            for offset in range(PAGE_SIZE, total, PAGE_SIZE):
                                submit(window, offset)
                        state = progress[window]
                        state.pages_done += 1
                        # The listing grew after the probe: follow `more` past the planned end.
                        if request.offset == state.last_offset and body.get("more"):
                            state.last_offset += PAGE_SIZE
                            state.pages_total += 1
                            submit(window, state.last_offset)
                        self._report(window, state)
                        fresh = [i for i in body["incidents"] if i["id"] not in seen]
                        seen.update(incident["id"] for incident in fresh)
                        yield Page(fresh, observed_at)
            finally:
                for future in pending:
                    future.cancel()

    def _report(self, window: Window, state: _WindowProgress) -> None:
        if self.on_progress:
            self.on_progress(f"window {window.label}: page {state.pages_done}/{state.pages_total}")


def utc_naive(moment: datetime) -> datetime:
    """A datetime as naive UTC (aware ones converted, naive ones taken as UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
