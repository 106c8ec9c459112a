"""`event_api_events`: takes up what the event API landed since the last run."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from connectors.events.spool import Landed, Spool
from connectors.events.store import upsert_events
from connectors.pagerduty.webhooks import fold_webhook_deliveries
from connectors.warehouse.schema import api_deployments, api_failures
from connectors.warehouse.watermarks import lock_watermark, save_watermark
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND
from dora_assets.resources import WarehouseResource

WATERMARK = "event_api_events.updated_at"


@dataclass(frozen=True)
class TakenUp:
    deployments: int
    failures: int
    retractions: int
    watermark: dt.datetime | None


def _tally(
    connection: sa.Connection, table: sa.Table, watermark: dt.datetime | None
) -> tuple[int, int, dt.datetime | None]:
    """(live, retracted, newest `updated_at`) among `table`'s rows written after `watermark`."""
    retracted = table.c.deleted_at.is_not(None)
    live_count, retracted_count, newest = connection.execute(
        sa.select(
            sa.func.count().filter(~retracted),
            sa.func.count().filter(retracted),
            sa.func.max(table.c.updated_at),
        ).where(table.c.updated_at > watermark if watermark else sa.true())
    ).one()
    return live_count, retracted_count, newest


def landed_since(connection: sa.Connection, watermark: dt.datetime | None) -> TakenUp:
    """API events written or retracted after `watermark` (all of them on the first run).

    The counts are for the UI only: each normalized table reads the landing tables from
    its own watermark (re-reading a few minutes behind it), so an event committed out of
    `updated_at` order is never lost.
    """
    deployments, retracted_deployments, newest_deployment = _tally(
        connection, api_deployments, watermark
    )
    failures, retracted_failures, newest_failure = _tally(connection, api_failures, watermark)
    stamps = [stamp for stamp in (watermark, newest_deployment, newest_failure) if stamp]
    return TakenUp(
        deployments=deployments,
        failures=failures,
        retractions=retracted_deployments + retracted_failures,
        watermark=max(stamps, default=None),
    )


@dg.asset(
    key="event_api_events",
    group_name="ingest",
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    description="""
**Takes up what the event API landed** since the previous run: deployments and
failures (`api_deployments`, `api_failures`), retractions, and PagerDuty webhook
deliveries, which it folds into per-incident state (the latest event by `occurred_at`
wins, whatever the delivery order).

On a SQLite warehouse it first lands the events the API kept in its spool while a job
held the warehouse's write lock (`spooled_events_landed`).

Its metadata reports how many events it took up; the normalized assets downstream
apply what changed since their own watermarks. Unpartitioned: the API accepts events
for any day.
""",
)
def event_api_events_asset(warehouse: WarehouseResource) -> dg.MaterializeResult:
    folded = fold_webhook_deliveries(warehouse.engine)
    spool = Spool.beside(warehouse.engine, create=False)
    with warehouse.engine.begin() as connection:
        # Events the API spooled while a job held the warehouse's lock land first.
        landed = spool.apply(connection, upsert_events) if spool else Landed(0, 0)
        taken_up = landed_since(connection, lock_watermark(connection, WATERMARK))
        if taken_up.watermark is not None:
            save_watermark(connection, WATERMARK, taken_up.watermark)
    if spool is not None:
        if landed.through:
            spool.forget(landed.through)
        spool.dispose()
    events = taken_up.deployments + taken_up.failures + taken_up.retractions + folded.deliveries
    return dg.MaterializeResult(
        metadata={
            "events_taken_up": dg.MetadataValue.int(events),
            "deployments": dg.MetadataValue.int(taken_up.deployments),
            "failures": dg.MetadataValue.int(taken_up.failures),
            "retractions": dg.MetadataValue.int(taken_up.retractions),
            "spooled_events_landed": dg.MetadataValue.int(landed.events),
            "pagerduty_webhook_deliveries": dg.MetadataValue.int(folded.deliveries),
            "pagerduty_incidents_refolded": dg.MetadataValue.int(folded.incidents),
            "watermark": dg.MetadataValue.text(
                taken_up.watermark.isoformat() if taken_up.watermark else "none yet"
            ),
        }
    )
