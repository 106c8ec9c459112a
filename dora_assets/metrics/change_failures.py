"""`dora_change_failures_daily`: deployment-based change failure rate, rollbacks, rework."""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse.schema import dora_change_failures_daily, dora_deployments
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata
from dora_assets.metrics.durations import org_counts_per_day
from dora_assets.metrics.rebuild import rebuild_days
from dora_assets.metrics.reconcile import reconciliation_check
from dora_assets.partitions import daily_partitions
from dora_assets.resources import WarehouseResource

table = dora_change_failures_daily
d = dora_deployments.c


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _rate(numerator: sa.ColumnElement[int], denominator: sa.ColumnElement[int]):
    return sa.case((denominator > 0, sa.cast(numerator, sa.Float) / denominator), else_=sa.null())


def change_failures_rows(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """The metric rows of `[first_day, end_day)`, grouped in the database on the indexed
    `finished_day` (a deployment counts on the UTC day it finished)."""
    deployments = sa.func.count()
    failures = _count(d.change_failure)
    rollbacks = _count(d.is_rollback)
    rollforwards = _count(d.is_rollforward)
    # A deployment that is both counts once in rework.
    rework = _count(sa.or_(d.is_rollback, d.is_rollforward))
    return (
        sa.select(
            d.finished_day.label("day"),
            d.service,
            d.team,
            d.env,
            deployments.label("deployments"),
            failures.label("change_failures"),
            rollbacks.label("rollbacks"),
            rollforwards.label("rollforwards"),
            _rate(failures, deployments),
            _rate(failures, deployments - rollbacks),
            _rate(rework, deployments),
        )
        .where(d.finished_day >= first_day, d.finished_day < end_day)
        .group_by(d.finished_day, d.service, d.team, d.env)
    )


def org_figures_per_day(
    connection: sa.Connection, first_day: dt.date, end_day: dt.date
) -> dict[dt.date, dict[str, float | int | None]]:
    return org_counts_per_day(
        connection,
        table,
        first_day,
        end_day,
        ("deployments", "change_failures", "rollbacks"),
        "org_deployment_change_failure_rate",
    )


@dg.asset(
    key="dora_change_failures_daily",
    group_name="metrics",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["dora_deployments"],
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(table),
    description="""
**Deployment-based change failure rate per UTC day, service, team and env** (key `day`,
`service`, `team`, `env`; `day` = the UTC day the deployment finished).

- `deployments`; `change_failures`: deployments classified as change failures (rollback
  detected, hotfix rollforward, PATCH, or an attributed incident; see
  `dora_deployments.change_failure_reason`); `rollbacks`, `rollforwards`: deployments
  that were one;
- `change_failure_rate = change_failures / deployments` (DORA's definition);
- `change_failure_rate_excluding_rollbacks = change_failures / (deployments - rollbacks)`
  (Datadog's earlier denominator);
- `rework_rate` = deployments that were a rollback or a rollforward / deployments
  (DORA 2024). A rate is NULL when its denominator is 0.

Counts are additive, so a window's rate is a ratio of sums. This is not
`dora_change_failure_rate_daily`, which divides incidents by deployments. Each
partition's materialization carries the org-wide deployment change failure rate.
""",
)
def dora_change_failures_daily_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return rebuild_days(
        context,
        warehouse,
        table,
        rows=change_failures_rows,
        org_figures=org_figures_per_day,
        preview_largest=table.c.change_failures,
    )


dora_change_failures_daily_reconciliation = reconciliation_check(
    table,
    measures={
        "deployments": (d.finished_day, sa.func.count()),
        "change_failures": (d.finished_day, _count(d.change_failure)),
    },
)
