"""A small, thread-safe client for the PagerDuty REST API v2.

It does the parts every caller needs and gets wrong when each does them alone:
token auth and the versioned Accept header, one request pace shared by every
thread using the key (PagerDuty allows 960 requests a minute per key), the
`ratelimit-*` headers, and retries of what is transient (408, 429, 5xx,
timeouts, broken connections, truncated or unparseable bodies) with capped
exponential backoff. What retrying cannot fix (400, 401, 403, 404) fails at once
with a message that says what to do.
"""

from __future__ import annotations

import itertools
import os
import random
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from connectors import settings

ACCEPT = "application/vnd.pagerduty+json;version=2"
DEFAULT_REQUESTS_PER_MINUTE = 960
# PagerDuty's "Arguments Caused Error" for offset+limit over 10,000.
OFFSET_LIMIT_ERROR_CODE = 2002

QueryParams = Mapping[str, str | int | list[str]]


class PagerDutyError(RuntimeError):
    """Any failure talking to PagerDuty; the message says what to check."""


class PagerDutyConfigError(PagerDutyError):
    """The client cannot be built from the configuration (e.g. no API token)."""


class PagerDutyHTTPError(PagerDutyError):
    """PagerDuty answered with an error that retrying will not fix."""

    def __init__(self, message: str, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PagerDutyAuthError(PagerDutyHTTPError):
    """401 or 403: the token is wrong, revoked, for the other region, or lacks access."""


class OffsetLimitExceeded(PagerDutyHTTPError):
    """Error 2002: offset+limit went past 10,000; the caller should narrow the time window."""


class RetriesExhausted(PagerDutyError):
    """A transient failure outlasted every retry."""


class RateLimiter:
    """Paces requests of all threads sharing one API key (GCRA, i.e. a token bucket).

    Requests are spread evenly at `per_minute / 60` a second, with at most `burst`
    sent back to back, so a steady stream never trips the server's limit. A
    response saying the allowance is used up (or a 429) pauses everyone until
    the server's reset time.
    """

    def __init__(self, per_minute: int = DEFAULT_REQUESTS_PER_MINUTE, burst: int = 4) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("per_minute and burst must be positive")
        self._interval = 60.0 / per_minute
        self._tolerance = (burst - 1) * self._interval
        self._theoretical_arrival = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until this thread may send its next request."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._paused_until, self._theoretical_arrival - self._tolerance)
            self._theoretical_arrival = max(self._theoretical_arrival, slot) + self._interval
        if slot > now:
            time.sleep(slot - now)

    def pause(self, seconds: float) -> None:
        """Hold back every request not yet scheduled for `seconds` from now."""
        with self._lock:
            until = time.monotonic() + seconds
            self._paused_until = max(self._paused_until, until)
            self._theoretical_arrival = max(self._theoretical_arrival, until)


class PagerDutyClient:
    """GET requests against the REST API; safe to share between threads."""

    def __init__(
        self,
        token: str | None,
        base_url: str | None = None,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 8,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        rate_limiter: RateLimiter | None = None,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = 20,
    ) -> None:
        if not token:
            raise PagerDutyConfigError(
                "No PagerDuty API token: set PAGERDUTY_API_TOKEN to a REST API key "
                "(PagerDuty > Integrations > API Access Keys; read-only is enough)."
            )
        self.base_url = (base_url or settings.pagerduty_api_url()).rstrip("/")
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rate_limiter = rate_limiter or RateLimiter()
        self._request_counter = itertools.count(1)
        self._requests = 0
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Token token={token}", "Accept": ACCEPT},
            timeout=timeout_s,
            verify=verify,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    @classmethod
    def from_environment(cls, **options: Any) -> PagerDutyClient:
        """A client for `PAGERDUTY_API_TOKEN` at `PAGERDUTY_API_URL` (US by default)."""
        return cls(os.environ.get("PAGERDUTY_API_TOKEN"), settings.pagerduty_api_url(), **options)

    @property
    def requests(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._requests

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PagerDutyClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def list_incidents_page(self, params: QueryParams) -> dict[str, Any]:
        """One page of `GET /incidents` (the caller sets offset, limit, filters)."""
        return self.get("/incidents", params)

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        """`GET /incidents/{id}`: the incident object itself."""
        return self.get(f"/incidents/{incident_id}", {})["incident"]

    def get(self, path: str, params: QueryParams) -> dict[str, Any]:
        """The decoded JSON body of a successful GET, after retrying what is transient."""
        failure = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._backoff(attempt - 1))
            self.rate_limiter.acquire()
            self._requests = next(self._request_counter)
            try:
                response = self._http.get(path, params=params)
            except httpx.TransportError as error:  # timeouts, resets, truncated transfers
                failure = f"{type(error).__name__}: {error}"
                continue
            self._honour_rate_limit_headers(response)
            status = response.status_code
            if status == 429 or status == 408 or status >= 500:
                failure = f"HTTP {status}"
                continue
            if status >= 400:
                raise self._client_error(response, path)
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                failure = f"unparseable JSON body ({len(response.content)} bytes)"
                continue
            if isinstance(body, dict):
                return body
            failure = "JSON body is not an object"
        raise RetriesExhausted(
            f"GET {path} at {self.base_url} still failing after {self.max_retries} retries "
            f"(last: {failure}). PagerDuty may be degraded; run the sync again later."
        )

    def _backoff(self, retry: int) -> float:
        # Equal jitter: spreads retries of concurrent threads without ever waiting zero.
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2**retry)
        return random.uniform(ceiling / 2, ceiling)

    def _honour_rate_limit_headers(self, response: httpx.Response) -> None:
        remaining = _header_number(response, "ratelimit-remaining")
        reset = _header_number(response, "ratelimit-reset")
        if reset is None:
            return
        if response.status_code == 429 or remaining == 0:
            self.rate_limiter.pause(reset + random.uniform(0, 0.1))

    def _client_error(self, response: httpx.Response, path: str) -> PagerDutyHTTPError:
        status = response.status_code
        message, code = _error_detail(response)
        if status == 401:
            return PagerDutyAuthError(
                f"PagerDuty rejected the API token (401: {message}) at {self.base_url}. "
                "Check PAGERDUTY_API_TOKEN, and whether the account is in the US or EU "
                "region: set PAGERDUTY_API_URL to https://api.pagerduty.com (US) or "
                "https://api.eu.pagerduty.com (EU).",
                status,
                code,
            )
        if status == 403:
            return PagerDutyAuthError(
                f"PagerDuty refused GET {path} (403: {message}): the API key in "
                "PAGERDUTY_API_TOKEN lacks access to incidents; use a key that can read them.",
                status,
                code,
            )
        if code == OFFSET_LIMIT_ERROR_CODE:
            return OffsetLimitExceeded(f"GET {path}: {message}", status, code)
        return PagerDutyHTTPError(f"GET {path} failed with {status}: {message}", status, code)


def _header_number(response: httpx.Response, name: str) -> float | None:
    try:
        return float(response.headers[name])
    except (KeyError, ValueError):
        return None


def _error_detail(response: httpx.Response) -> tuple[str, int | None]:
    """PagerDuty's `{"error": {"message", "code", "errors": [...]}}`, as readable text."""
    try:
        error = orjson.loads(response.content)["error"]
        details = "; ".join(str(item) for item in error.get("errors") or [])
        message = error.get("message", "") + (f" ({details})" if details else "")
        return message, error.get("code")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return response.text[:200], None
