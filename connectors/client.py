"""Deliver DORA events to the event API (or any Datadog-compatible DORA endpoint).

Retrying a POST is safe here because the API is idempotent: an event with an
`id` upserts, a deployment without one gets an id derived from its attributes,
and a failure without one is matched on (env, services or team, started_at).
So transient trouble (429, 5xx, refused connections, timeouts) is retried with
exponential backoff and jitter, while answers that retrying cannot change
(400, 401, 403, 404, 413, 415, ...) fail at once. Every failure ends in a
`DeliveryError` whose message is one line saying what went wrong and what to do.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

DEPLOYMENT_PATH = "/api/v2/dora/deployment"
FAILURE_PATH = "/api/v2/dora/failure"
# PATCH: a deployment by id below it, or the latest one of a service, env and version.
DEPLOYMENTS_PATH = "/api/v2/dora/deployments"
_MAX_BACKOFF_SECONDS = 30.0
_MAX_RETRY_AFTER_SECONDS = 120.0


class DeliveryError(RuntimeError):
    """The event was not accepted; `str(error)` is one line meant for the user."""


def event_body(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The Datadog DORA body: `{"data": {"attributes": {...}}}`."""
    return {"data": {"attributes": dict(attributes)}}


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After` as seconds (delta or HTTP date), capped so a CI job never hangs for long."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _validation_detail(response: httpx.Response) -> str:
    """The JSON:API errors as `detail (at /pointer)`; the raw body when it is not JSON:API."""
    try:
        errors = response.json()["errors"]
        parts = []
        for error in errors:
            detail = error.get("detail") or error.get("title") or "invalid"
            pointer = (error.get("source") or {}).get("pointer")
            parts.append(f"{detail} (at {pointer})" if pointer else detail)
        return _one_line("; ".join(parts))
    except (ValueError, KeyError, TypeError, AttributeError):
        return _one_line(response.text) or "no details given"


class EventClient:
    """POSTs events to `base_url` with the `DD-API-KEY` header; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        try:
            url = httpx.URL(self.base_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise DeliveryError(
                f"{base_url!r} is not an http(s) URL; set DORA_API_URL to the event API's "
                "base URL, e.g. http://127.0.0.1:8000"
            )
        self.max_attempts = max(1, max_attempts)
        self.backoff_seconds = backoff_seconds
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"DD-API-KEY": api_key, "Accept": "application/json"},
            timeout=timeout_seconds,
        )

    def __enter__(self) -> EventClient:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send_deployment(self, attributes: Mapping[str, Any]) -> str:
        """Deliver one deployment; returns the id the API assigned or confirmed."""
        return self.send(DEPLOYMENT_PATH, event_body(attributes))

    def send_failure(self, attributes: Mapping[str, Any]) -> str:
        """Deliver one failure (incident); returns the id the API assigned or confirmed."""
        return self.send(FAILURE_PATH, event_body(attributes))

    def send(self, path: str, body: Mapping[str, Any], method: str = "POST") -> str:
        """Send `body` to `path` (POST, or an idempotent PATCH), retrying transient trouble;
        returns `data.id` of the answer."""
        attempt = 1
        while True:
            last_attempt = attempt >= self.max_attempts
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as error:
                if last_attempt:
                    raise self._unreachable(error) from None
                time.sleep(self._backoff(attempt))
            else:
                if response.is_success:
                    return self._accepted_id(response)
                if not _retryable(response.status_code):
                    raise self._rejected(path, response, method)
                if last_attempt:
                    raise self._gave_up(response)
                time.sleep(max(self._backoff(attempt), _retry_after_seconds(response) or 0.0))
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": half the exponential delay is fixed, half random, so many CI jobs
        # failing together spread out without any of them retrying immediately.
        delay = min(self.backoff_seconds * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS)
        return delay / 2 + random.uniform(0, delay / 2)

    def _accepted_id(self, response: httpx.Response) -> str:
        try:
            return str(response.json()["data"]["id"])
        except (ValueError, KeyError, TypeError) as error:
            raise DeliveryError(
                f"{self.base_url} answered HTTP {response.status_code} without an event id, "
                "so it is not a DORA event API; check DORA_API_URL"
            ) from error

    def _unreachable(self, error: httpx.TransportError) -> DeliveryError:
        kind = "timed out" if isinstance(error, httpx.TimeoutException) else "could not connect"
        return DeliveryError(
            f"the event API at {self.base_url} is unreachable ({kind}: "
            f"{_one_line(str(error) or type(error).__name__)}) after {self.max_attempts} "
            "attempts; start it with `dora api` or set DORA_API_URL to where it runs"
        )

    def _gave_up(self, response: httpx.Response) -> DeliveryError:
        status = response.status_code
        advice = (
            "the server is rate limiting; send again later"
            if status == 429
            else "the server is failing; check the `dora api` logs and send again"
        )
        return DeliveryError(
            f"the event API at {self.base_url} answered HTTP {status} to all "
            f"{self.max_attempts} attempts; {advice}"
        )

    def _rejected(self, path: str, response: httpx.Response, method: str) -> DeliveryError:
        status = response.status_code
        if status in (401, 403):
            reason = (
                f"the event API at {self.base_url} refused the API key (HTTP {status}); "
                "set DORA_API_KEY to one of the keys in the server's DORA_API_KEYS"
            )
        elif status == 400:
            reason = (
                f"the event API rejected the event (HTTP 400): {_validation_detail(response)}; "
                "fix that value and send again"
            )
        elif status == 404 and method == "PATCH":
            reason = (
                f"the event API has no such deployment (HTTP 404): {_validation_detail(response)}"
            )
        elif status == 404:
            reason = (
                f"{self.base_url}{path} does not exist (HTTP 404); "
                "set DORA_API_URL to the base URL of `dora api`, e.g. http://127.0.0.1:8000"
            )
        elif status == 413:
            reason = "the event is too large for the event API (HTTP 413); send fewer custom tags"
        else:
            reason = (
                f"the event API at {self.base_url} answered HTTP {status}: "
                f"{_validation_detail(response)}; check DORA_API_URL"
            )
        return DeliveryError(reason)
