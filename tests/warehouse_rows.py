"""Rows written straight into warehouse tables, for tests that start from a given state."""

import datetime as dt


def deployment_row(deployment_id: str, at: dt.datetime, **columns: object) -> dict[str, object]:
    """A `dora_deployments` row of checkout/payments/prod that started and finished `at`;
    `columns` adds or replaces columns (the classification's have server defaults)."""
    return {
        "deployment_id": deployment_id,
        "service": "checkout",
        "team": "payments",
        "env": "prod",
        "started_at": at,
        "finished_at": at,
        "finished_day": at.date(),
        "source": "api",
        "custom_tags": "[]",
        "ingested_at": at,
        **columns,
    }
