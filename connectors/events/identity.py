"""Deterministic event ids, so a retried POST without an `id` never creates a duplicate."""

from __future__ import annotations

import hashlib
from datetime import datetime

import orjson

from connectors.events.schemas import DeploymentEvent, FailureEvent


def _digest(parts: list[object]) -> str:
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def _instant(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def deployment_id(event: DeploymentEvent) -> str:
    """The event's own `id`, else a hash of every normalized attribute (tags as a set)."""
    if event.id is not None:
        return event.id
    return "dep-" + _digest(
        [
            event.service,
            event.env,
            event.team,
            event.version,
            _instant(event.started_at),
            _instant(event.finished_at),
            event.commit_sha,
            event.repository_url,
            sorted(set(event.custom_tags)),
        ]
    )


def failure_id(event: FailureEvent) -> str:
    """The event's own `id`, else (env, set of services, started_at) as Datadog matches
    failures, or (env, team, started_at) for a team-only failure. `finished_at` is left
    out on purpose: sending the failure again once resolved must find the same row."""
    if event.id is not None:
        return event.id
    if event.services:
        key: list[object] = ["services", event.env, list(event.services)]
    else:
        key = ["team", event.env, event.team]
    return "fail-" + _digest([*key, _instant(event.started_at)])
