"""The REST client against the PagerDuty-compatible server: auth, retries, rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from connectors.pagerduty.client import (
    PagerDutyAuthError,
    PagerDutyClient,
    PagerDutyConfigError,
    RateLimiter,
    RetriesExhausted,
)
from connectors.pagerduty.compat_server import IncidentStore, ServerOptions, build_app
from connectors.serving import serve_in_thread

TOKEN = "client-test-token"


def fast_client(url: str, token: str = TOKEN, **options: object) -> PagerDutyClient:
    defaults = {
        "rate_limiter": RateLimiter(per_minute=600_000, burst=100),
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "timeout_s": 2.0,
    }
    return PagerDutyClient(token, url, **{**defaults, **options})


def serve(options: ServerOptions) -> Iterator[str]:
    store = IncidentStore()
    store.add(datetime(2025, 1, 1))
    with serve_in_thread(build_app(store, options)) as url:
        yield url


def test_no_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAGERDUTY_API_TOKEN", raising=False)
    with pytest.raises(PagerDutyConfigError, match="PAGERDUTY_API_TOKEN"):
        PagerDutyClient.from_environment()


def test_environment_selects_token_and_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGERDUTY_API_TOKEN", "from-env")
    monkeypatch.setenv("PAGERDUTY_API_URL", "https://api.eu.pagerduty.com/")
    with PagerDutyClient.from_environment() as client:
        assert client.base_url == "https://api.eu.pagerduty.com"
    monkeypatch.delenv("PAGERDUTY_API_URL")
    with PagerDutyClient.from_environment() as client:
        assert client.base_url == "https://api.pagerduty.com"


def test_401_fails_at_once_naming_token_and_region() -> None:
    options = ServerOptions(api_token=TOKEN)
    for url in serve(options):
        with fast_client(url, token="wrong") as client, pytest.raises(PagerDutyAuthError) as error:
            client.list_incidents_page({"date_range": "all"})
    message = str(error.value)
    assert "PAGERDUTY_API_TOKEN" in message
    assert "PAGERDUTY_API_URL" in message
    assert "EU" in message
    assert "wrong" not in message  # the secret is never echoed
    assert options.counters == {"requests": 1, "unauthorized": 1}


@pytest.mark.parametrize("kind", ["500", "502", "503", "429", "truncated", "timeout"])
def test_transient_faults_are_retried_then_reported(kind: str) -> None:
    options = ServerOptions(
        api_token=TOKEN, fault_rate=1.0, fault_kinds=(kind,), timeout_fault_s=0.3
    )
    for url in serve(options):
        with fast_client(url, timeout_s=0.1, max_retries=6) as client:
            with pytest.raises(RetriesExhausted, match="after 6 retries"):
                client.list_incidents_page({"date_range": "all"})
            assert client.requests == 7
    assert options.counters[f"fault_{kind}"] == 7


def test_retries_until_success() -> None:
    options = ServerOptions(api_token=TOKEN, fault_rate=0.5, fault_seed=3, timeout_fault_s=0.3)
    for url in serve(options):
        with fast_client(url, timeout_s=0.1) as client:
            for _ in range(20):
                body = client.list_incidents_page({"date_range": "all"})
                assert len(body["incidents"]) == 1
    faults = sum(count for name, count in options.counters.items() if name.startswith("fault_"))
    assert faults > 0
    assert options.counters["requests"] == 20 + faults


def test_429_with_reset_pauses_every_request_until_the_reset() -> None:
    # Two requests a minute, burst 1: the second request waits out `ratelimit-reset`.
    options = ServerOptions(api_token=TOKEN, rate_limit_per_minute=60, rate_limit_burst=1)
    for url in serve(options):
        limiter = RateLimiter(per_minute=600_000, burst=100)
        with fast_client(url, rate_limiter=limiter, backoff_base_s=5.0) as client:
            client.list_incidents_page({"date_range": "all"})
            client.list_incidents_page({"date_range": "all"})
    # The first answer said remaining 0, reset 1: the client paused instead of hammering.
    assert options.counters.get("rate_limited", 0) == 0
    assert options.counters["requests"] == 2


def test_get_incident() -> None:
    store = IncidentStore()
    incident = store.add(datetime(2025, 1, 1), title="disk full")
    with (
        serve_in_thread(build_app(store, ServerOptions(api_token=TOKEN))) as url,
        fast_client(url) as client,
    ):
        assert client.get_incident(incident.id)["title"] == "disk full"
