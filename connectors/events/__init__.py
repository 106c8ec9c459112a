"""DORA events (deployments and failures): validation, identity and the landing store.

The event API, the CLI-free demo and tests all write events through
`EventStore`, so the rules for ids, upserts and retractions live in one place.
"""

from connectors.events.schemas import (
    DeploymentEvent,
    FailureEvent,
    InvalidRequest,
    Problem,
    Remediation,
)
from connectors.events.store import EventStore

__all__ = [
    "DeploymentEvent",
    "EventStore",
    "FailureEvent",
    "InvalidRequest",
    "Problem",
    "Remediation",
]
