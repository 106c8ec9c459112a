"""PagerDuty REST API connector: client, complete incident listing, incremental sync.

`compat_server` is a PagerDuty-compatible server for tests, the demo and the benchmark.
"""

from connectors.pagerduty.client import (
    PagerDutyAuthError,
    PagerDutyClient,
    PagerDutyConfigError,
    PagerDutyError,
    RateLimiter,
)
from connectors.pagerduty.sync import SyncReport, sync_incidents

__all__ = [
    "PagerDutyAuthError",
    "PagerDutyClient",
    "PagerDutyConfigError",
    "PagerDutyError",
    "RateLimiter",
    "SyncReport",
    "sync_incidents",
]
