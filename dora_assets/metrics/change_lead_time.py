"""`dora_change_lead_time_daily`: how long shipped commits took to reach production."""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse.items import lead_times
from connectors.warehouse.schema import (
    dora_change_lead_time_daily,
    dora_deployment_commits,
    dora_deployments,
)
from connectors.warehouse.sql import percentile_cont, ranked
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata
from dora_assets.metrics.durations import KEY, org_median_per_day
from dora_assets.metrics.rebuild import rebuild_days
from dora_assets.metrics.reconcile import reconciliation_check
from dora_assets.partitions import daily_partitions
from dora_assets.resources import WarehouseResource

table = dora_change_lead_time_daily


def change_lead_time_rows(first_day: dt.date, end_day: dt.date) -> sa.Select:
    """The metric rows of `[first_day, end_day)`, computed entirely in the database:
    statistics over commits, joined with the median over deployments of each one's mean."""
    commits = ranked(lead_times(first_day, end_day), "seconds", KEY)
    per_commit = (
        sa.select(
            *(commits.c[name] for name in KEY),
            sa.func.count(sa.distinct(commits.c.deployment_id)).label("deployments"),
            sa.func.count().label("commits"),
            sa.func.sum(commits.c.seconds).label("total"),
            sa.func.avg(commits.c.seconds).label("mean"),
            percentile_cont(commits, "seconds", 50).label("median"),
            percentile_cont(commits, "seconds", 90).label("p90"),
        )
        .group_by(*(commits.c[name] for name in KEY))
        .subquery("per_commit")
    )
    listed = lead_times(first_day, end_day).subquery()
    deployment_means = sa.select(
        *(listed.c[name] for name in KEY),
        listed.c.deployment_id,
        sa.func.avg(listed.c.seconds).label("seconds"),
    ).group_by(*(listed.c[name] for name in KEY), listed.c.deployment_id)
    deployments = ranked(deployment_means, "seconds", KEY)
    per_deployment = (
        sa.select(
            *(deployments.c[name] for name in KEY),
            percentile_cont(deployments, "seconds", 50).label("median"),
        )
        .group_by(*(deployments.c[name] for name in KEY))
        .subquery("per_deployment")
    )
    same_key = sa.and_(*(per_commit.c[name] == per_deployment.c[name] for name in KEY))
    return sa.select(
        *(per_commit.c[name] for name in KEY),
        per_commit.c.deployments,
        per_commit.c.commits,
        per_commit.c.total,
        per_commit.c.mean,
        per_commit.c.median,
        per_commit.c.p90,
        per_deployment.c.median,
    ).select_from(per_commit.join(per_deployment, same_key))


def org_figures_per_day(
    connection: sa.Connection, first_day: dt.date, end_day: dt.date
) -> dict[dt.date, dict[str, float | int | None]]:
    return org_median_per_day(
        connection,
        table,
        lead_times(first_day, end_day),
        first_day,
        end_day,
        count_name="commits",
        median_name="org_median_lead_time_seconds",
    )


@dg.asset(
    key="dora_change_lead_time_daily",
    group_name="metrics",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["dora_deployment_commits"],
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(table),
    description="""
**Change lead time per UTC day, service, team and env** (key `day`, `service`, `team`,
`env`; `day` = the UTC day the deployment finished), from `dora_deployment_commits`.

- `deployments_with_commits`, `commits`;
- over commits: `total_seconds` (additive: a window's mean is `sum(total_seconds) /
  sum(commits)`), `mean_seconds`, `median_seconds`, `p90_seconds` (linear interpolation);
- `median_deployment_seconds`: the median over deployments of each one's mean commit lead
  time, as Datadog reports it.

A commit's lead time is its deployment's `finished_at` - its author date. Days without
shipped commits have no row. Each partition's materialization carries the org-wide
median lead time of its day.
""",
)
def dora_change_lead_time_daily_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    return rebuild_days(
        context,
        warehouse,
        table,
        rows=change_lead_time_rows,
        org_figures=org_figures_per_day,
        preview_largest=table.c.commits,
    )


# Each shipped commit with the day its deployment finished: what the metric's counts add up to.
_shipped = (
    sa.select(
        dora_deployments.c.finished_day.label("day"),
        dora_deployment_commits.c.lead_time_seconds.label("seconds"),
    )
    .select_from(
        dora_deployment_commits.join(
            dora_deployments,
            dora_deployments.c.deployment_id == dora_deployment_commits.c.deployment_id,
        )
    )
    .subquery("shipped_commits")
)
dora_change_lead_time_daily_reconciliation = reconciliation_check(
    table,
    measures={
        "commits": (_shipped.c.day, sa.func.count()),
        "total_seconds": (_shipped.c.day, sa.func.sum(_shipped.c.seconds)),
    },
)
