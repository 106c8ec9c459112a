"""The duration items the metrics are medians of, one row each, filed under the UTC day
their daily table uses: resolved incidents (time to restore), recovered failed
deployments (failed deployment recovery time) and shipped commits (change lead time).

Each select has columns `item`, `day`, `service`, `team`, `env`, `seconds` and covers
the days `[first_day, end_day)`. The daily metric assets and the summary read the same
items, so a window's median and a day's median count the same things.
"""

import datetime as dt

import sqlalchemy as sa

from connectors.warehouse.schema import dora_deployment_commits, dora_deployments, dora_incidents
from connectors.warehouse.sql import seconds_between

incident = dora_incidents.c
deployment = dora_deployments.c
restore_seconds = seconds_between(incident.finished_at, incident.started_at)
recovery_seconds = seconds_between(deployment.recovered_at, deployment.finished_at)


def resolved_in(first_day: dt.date, end_day: dt.date) -> sa.ColumnElement[bool]:
    return sa.and_(
        incident.status == "resolved",
        incident.finished_day >= first_day,
        incident.finished_day < end_day,
    )


def restores(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """One row per resolved incident and service: its key and seconds to restore."""
    return sa.select(
        incident.incident_id.label("item"),
        incident.finished_day.label("day"),
        incident.service,
        incident.team,
        incident.env,
        restore_seconds.label("seconds"),
    ).where(resolved_in(first_day, end_day))


def recoveries(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """One row per failed deployment recovered in `[first_day, end_day)`."""
    return sa.select(
        deployment.deployment_id.label("item"),
        deployment.recovered_day.label("day"),
        deployment.service,
        deployment.team,
        deployment.env,
        recovery_seconds.label("seconds"),
    ).where(deployment.recovered_day >= first_day, deployment.recovered_day < end_day)


def lead_times(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """One row per commit a deployment finished in `[first_day, end_day)` shipped (`item`
    is the pair, so a commit two services shipped counts for each), with its
    `deployment_id`."""
    commit = dora_deployment_commits.c
    return (
        sa.select(
            (commit.deployment_id + ":" + commit.commit_sha).label("item"),
            deployment.finished_day.label("day"),
            deployment.service,
            deployment.team,
            deployment.env,
            commit.lead_time_seconds.label("seconds"),
            commit.deployment_id,
        )
        .select_from(
            dora_deployment_commits.join(
                dora_deployments, deployment.deployment_id == commit.deployment_id
            )
        )
        .where(deployment.finished_day >= first_day, deployment.finished_day < end_day)
    )
