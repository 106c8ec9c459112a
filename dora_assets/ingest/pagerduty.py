"""`pagerduty_incidents`: raw PagerDuty incidents, pulled by created day."""

from dataclasses import asdict

import dagster as dg
import sqlalchemy as sa

from connectors.pagerduty.sync import sync_incidents
from connectors.warehouse import reading
from connectors.warehouse.schema import pagerduty_incidents
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, table_definition_metadata, table_metadata
from dora_assets.partition_metadata import attach_partition_metadata
from dora_assets.partitions import daily_partitions, day_range
from dora_assets.resources import PagerDutyResource, WarehouseResource


@dg.asset(
    key="pagerduty_incidents",
    group_name="ingest",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"pagerduty", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(pagerduty_incidents),
    description="""
**Raw PagerDuty incidents** (landing table `pagerduty_incidents`, one row per
incident), partitioned by the UTC day the incident was created.

A run lists `GET /incidents` for its whole partition range (windows of at most six
months, bisected past PagerDuty's 10,000-result cap, within the rate limit) and also
re-reads every incident the warehouse still holds as open, so a resolution that comes
days later always arrives. Needs `PAGERDUTY_API_TOKEN`; `PAGERDUTY_API_URL` picks the
US or EU service region.
""",
)
def pagerduty_incidents_asset(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    pagerduty: PagerDutyResource,
) -> dg.MaterializeResult:
    window = context.partition_time_window
    with pagerduty.client() as client:
        report = sync_incidents(
            warehouse.engine, client, window.start, window.end, on_progress=context.log.info
        )
    first_day, end_day = day_range(context.partition_key_range)
    landed = pagerduty_incidents.c
    in_range = sa.and_(landed.created_day >= first_day, landed.created_day < end_day)
    with reading(warehouse.engine) as connection:
        per_day = dict(
            connection.execute(
                sa.select(landed.created_day, sa.func.count())
                .where(in_range)
                .group_by(landed.created_day)
            ).all()
        )
        metadata = table_metadata(
            connection,
            pagerduty_incidents,
            sum(per_day.values()),
            sa.select(
                landed.incident_id,
                landed.status,
                landed.service_name,
                landed.created_at,
                landed.resolved_at,
            )
            .where(in_range)
            .order_by(landed.created_at.desc()),
        )
    return attach_partition_metadata(
        context,
        {day: {"dagster/row_count": count} for day, count in per_day.items()},
        {
            **metadata,
            "range_row_count": dg.MetadataValue.int(sum(per_day.values())),
            **{name: dg.MetadataValue.int(count) for name, count in asdict(report).items()},
        },
    )
