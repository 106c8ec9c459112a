"""`dora_change_failure_rate_daily`: deployments, failures and their ratio per UTC day."""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_deployments,
    dora_incidents,
)
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata
from dora_assets.metrics.durations import KEY, org_counts_per_day
from dora_assets.metrics.rebuild import DayRows, rebuild_days
from dora_assets.metrics.reconcile import reconciliation_check
from dora_assets.partitions import daily_partitions
from dora_assets.resources import WarehouseResource

table = dora_change_failure_rate_daily


def deployments_per_day(first_day: dt.date, end_day: dt.date) -> sa.Select:
    d = dora_deployments.c
    return (
        sa.select(
            d.finished_day.label("day"),
            d.service,
            d.team,
            d.env,
            sa.func.count().label("deployments"),
            sa.literal(0).label("failures"),
        )
        .where(d.finished_day >= first_day, d.finished_day < end_day)
        .group_by(d.finished_day, d.service, d.team, d.env)
    )


def failures_per_day(first_day: dt.date, end_day: dt.date) -> sa.Select:
    i = dora_incidents.c
    return (
        sa.select(
            i.started_day.label("day"),
            i.service,
            i.team,
            i.env,
            sa.literal(0).label("deployments"),
            sa.func.count().label("failures"),
        )
        .where(i.started_day >= first_day, i.started_day < end_day)
        .group_by(i.started_day, i.service, i.team, i.env)
    )


def change_failure_rate_rows(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """The metric rows of `[first_day, end_day)`, computed entirely in the database.

    Each side is grouped on its indexed day column first (no per-row functions), so
    the outer grouping only merges the two small per-key tallies.
    """
    tallies = sa.union_all(
        deployments_per_day(first_day, end_day), failures_per_day(first_day, end_day)
    ).subquery("tallies")
    deployments = sa.func.sum(tallies.c.deployments)
    failures = sa.func.sum(tallies.c.failures)
    key = [tallies.c[name] for name in KEY]
    return sa.select(*key, deployments, failures, _rate(failures, deployments)).group_by(*key)


def joined_change_failure_rate_rows(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """`change_failure_rate_rows` as a full outer join of the two per-day tallies.

    PostgreSQL merges the two tallies in the order their day indexes give them, where
    grouping their union sorts it again: a year's backfill spends about a quarter less in
    this statement (bench/metrics_backfill.py). SQLite has no merge join and takes
    minutes over a full join of two subqueries, so it keeps the union.
    """
    deployed = deployments_per_day(first_day, end_day).subquery("deployed")
    failed = failures_per_day(first_day, end_day).subquery("failed")
    deployments = sa.func.coalesce(deployed.c.deployments, 0)
    failures = sa.func.coalesce(failed.c.failures, 0)
    return sa.select(
        *(sa.func.coalesce(deployed.c[name], failed.c[name]) for name in KEY),
        deployments,
        failures,
        _rate(failures, deployments),
    ).select_from(
        deployed.join(
            failed, sa.and_(*(deployed.c[name] == failed.c[name] for name in KEY)), full=True
        )
    )


def _rate(
    failures: sa.ColumnElement[int], deployments: sa.ColumnElement[int]
) -> sa.ColumnElement[float]:
    return sa.case((deployments > 0, sa.cast(failures, sa.Float) / deployments), else_=sa.null())


def rows_for(dialect: sa.Dialect) -> DayRows:
    """The metric query that is fastest on `dialect`; both give the same rows."""
    if dialect.name == "postgresql":
        return joined_change_failure_rate_rows
    return change_failure_rate_rows


def org_figures_per_day(
    connection: sa.Connection, first_day: dt.date, end_day: dt.date
) -> dict[dt.date, dict[str, float | int | None]]:
    return org_counts_per_day(
        connection,
        table,
        first_day,
        end_day,
        ("deployments", "failures"),
        "org_change_failure_rate",
    )


@dg.asset(
    key="dora_change_failure_rate_daily",
    group_name="metrics",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["dora_deployments", "dora_incidents"],
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(table),
    description="""
**Change failure rate per UTC day, service, team and env** (key `day`, `service`,
`team`, `env`).

- `deployments`: deployments that finished that UTC day;
- `failures`: incidents that started that UTC day (open ones included; an incident
  naming several services counts once for each);
- `change_failure_rate = failures / deployments`, NULL when there were no deployments.

Counts are additive: a window's rate is `sum(failures) / sum(deployments)`. A run
replaces its partition range up to 31 days per transaction, each span with one
`INSERT ... SELECT` (the two per-day tallies, deployments and incidents, merged by
key). Each partition's materialization carries the org-wide rate of its day.
""",
)
def dora_change_failure_rate_daily_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return rebuild_days(
        context,
        warehouse,
        table,
        rows=rows_for(warehouse.engine.dialect),
        org_figures=org_figures_per_day,
        preview_largest=table.c.failures,
    )


dora_change_failure_rate_daily_reconciliation = reconciliation_check(
    table,
    measures={
        "deployments": (dora_deployments.c.finished_day, sa.func.count()),
        "failures": (dora_incidents.c.started_day, sa.func.count()),
    },
)
