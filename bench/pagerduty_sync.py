"""Listing a year of PagerDuty incidents: our lister vs the official client vs the rate limit.

The PagerDuty-compatible server is served over TLS (a throwaway `trustme` CA;
the official client only accepts https) with 300 ms of latency per request and
PagerDuty's 960 requests/minute as a token bucket that binds. Both clients list
every incident created in the same year, in the same 6-month windows (the API
answers at most 6 months per request). The lower bound is what the rate limit
allows for the minimum number of requests (one per 100 incidents), or the
latency of the shortest chain of dependent requests, whichever is larger.

Usage: python bench/pagerduty_sync.py [--quick]
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pagerduty
import trustme

from connectors.pagerduty.client import PagerDutyClient, RateLimiter
from connectors.pagerduty.compat_server import IncidentStore, ServerOptions, build_app
from connectors.pagerduty.listing import PAGE_SIZE, IncidentLister, windows_between
from connectors.serving import serve_in_thread

TOKEN = "bench-token"
SINCE, UNTIL = datetime(2025, 1, 1), datetime(2026, 1, 1)


@contextmanager
def tls_server(store: IncidentStore, options: ServerOptions, certificates: Path) -> Iterator[str]:
    """Serve the compat server over https on loopback; yields its base URL."""
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    key_file, cert_file = certificates / "server.key", certificates / "server.pem"
    certificate.private_key_pem.write_to_path(str(key_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    authority.cert_pem.write_to_path(str(certificates / "ca.pem"))
    app = build_app(store, options)
    with serve_in_thread(app, ssl_keyfile=str(key_file), ssl_certfile=str(cert_file)) as url:
        yield url.replace("http://", "https://")


def server_options(latency_s: float, per_minute: int) -> ServerOptions:
    # One second's worth of burst: over a run of seconds the limit binds at per_minute / 60.
    return ServerOptions(
        api_token=TOKEN,
        latency_s=latency_s,
        rate_limit_per_minute=per_minute,
        rate_limit_burst=max(1, per_minute // 60),
    )


def run_ours(url: str, trust: ssl.SSLContext, per_minute: int) -> tuple[float, int, int]:
    limiter = RateLimiter(per_minute=per_minute)
    with PagerDutyClient(TOKEN, url, verify=trust, rate_limiter=limiter) as client:
        started = time.perf_counter()
        lister = IncidentLister(client)
        listed = sum(len(page.incidents) for page in lister.created_between(SINCE, UNTIL))
        return time.perf_counter() - started, listed, client.requests


def run_official(url: str, trust: ssl.SSLContext) -> tuple[float, int]:
    client = pagerduty.RestApiV2Client(TOKEN, base_url=url, verify=trust)
    params = {"time_zone": "UTC", "sort_by": "created_at:asc"}
    started = time.perf_counter()
    seen: set[str] = set()
    for window in windows_between(SINCE, UNTIL):
        since = window.since.replace(tzinfo=UTC)
        until = window.until.replace(tzinfo=UTC)
        for incident in client.iter_history("/incidents", since, until, params=dict(params)):
            seen.add(incident["id"])
    return time.perf_counter() - started, len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 incidents (smoke test)")
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--rate-per-minute", type=int, default=960)
    arguments = parser.parse_args()
    count = 2_000 if arguments.quick else 20_000
    latency_s = arguments.latency_ms / 1000
    per_minute = arguments.rate_per_minute

    store = IncidentStore()
    store.generate(count, SINCE, UNTIL, seed=2025)
    minimum_requests = math.ceil(count / PAGE_SIZE)
    rate_bound_s = minimum_requests / (per_minute / 60)
    latency_bound_s = 2 * latency_s  # a window's first page must answer before its others
    bound_s = max(rate_bound_s, latency_bound_s)

    with tempfile.TemporaryDirectory() as folder:
        certificates = Path(folder)
        ours_options = server_options(latency_s, per_minute)
        with tls_server(store, ours_options, certificates) as url:
            trust = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
            ours_s, ours_listed, ours_requests = run_ours(url, trust, per_minute)
        official_options = server_options(latency_s, per_minute)
        with tls_server(store, official_options, certificates) as url:
            trust = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
            official_s, official_listed = run_official(url, trust)

    official_requests = official_options.counters.get("requests", 0)
    print(
        f"{count} incidents over {SINCE:%Y-%m-%d}..{UNTIL:%Y-%m-%d}, TLS, "
        f"{latency_s * 1000:.0f} ms latency, {per_minute} requests/min"
    )
    print(
        f"  ours:            {ours_s:7.2f} s  {ours_requests:4d} requests  "
        f"{ours_listed} incidents  429s: {ours_options.counters.get('rate_limited', 0)}"
    )
    print(
        f"  official client: {official_s:7.2f} s  {official_requests:4d} requests  "
        f"{official_listed} incidents  429s: {official_options.counters.get('rate_limited', 0)}"
    )
    print(
        f"  lower bound:     {bound_s:7.2f} s  ({minimum_requests} requests at "
        f"{per_minute}/min = {rate_bound_s:.2f} s; latency chain {latency_bound_s:.2f} s)"
    )
    print(
        f"  ours / bound = {ours_s / bound_s:.2f}x (target <= 1.3x); "
        f"official / ours = {official_s / ours_s:.2f}x (target >= 3x)"
    )
    if ours_listed != count or official_listed != count:
        raise SystemExit(f"incomplete listing: ours {ours_listed}, official {official_listed}")
    print(
        json.dumps(
            {
                "incidents": count,
                "ours_s": round(ours_s, 3),
                "official_client_s": round(official_s, 3),
                "rate_limit_bound_s": round(bound_s, 3),
                "ours_requests": ours_requests,
                "official_requests": official_requests,
                "minimum_requests": minimum_requests,
                "latency_ms": arguments.latency_ms,
                "rate_per_minute": per_minute,
                "ours_over_bound": round(ours_s / bound_s, 3),
                "official_over_ours": round(official_s / ours_s, 3),
                "ours_rate_limited": ours_options.counters.get("rate_limited", 0),
            }
        )
    )


if __name__ == "__main__":
    main()
