"""The code location as the UI shows it, and how its assets behave at the edges:
missing PagerDuty token, blocking integrity checks, overlapping backfills."""

import datetime as dt
import threading

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.events.schemas import DeploymentEvent, FailureEvent
from connectors.events.store import EventStore
from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import (
    api_deployments,
    dora_change_failure_rate_daily,
    dora_time_to_restore_daily,
)
from dora_assets.definitions import defs
from dora_assets.ingest.event_api import event_api_events_asset
from dora_assets.ingest.pagerduty import pagerduty_incidents_asset
from dora_assets.metrics.change_failure_rate import dora_change_failure_rate_daily_asset
from dora_assets.metrics.time_to_restore import dora_time_to_restore_daily_asset
from dora_assets.normalized.deployments import dora_deployments_asset, dora_deployments_checks
from dora_assets.normalized.incidents import dora_incidents_asset
from dora_assets.resources import PagerDutyResource, WarehouseResource

GROUPS = {
    "pagerduty_incidents": "ingest",
    "event_api_events": "ingest",
    "git_commits": "ingest",
    "dora_deployment_commits": "normalized",
    "dora_change_lead_time_daily": "metrics",
    "dora_deployments": "normalized",
    "dora_incidents": "normalized",
    "dora_incident_deployments": "normalized",
    "dora_change_failure_rate_daily": "metrics",
    "dora_time_to_restore_daily": "metrics",
    "dora_change_failures_daily": "metrics",
    "dora_failed_deployment_recovery_daily": "metrics",
    "dora_summary": "report",
}
PARTITIONED = {
    "pagerduty_incidents",
    "dora_change_failure_rate_daily",
    "dora_time_to_restore_daily",
    "dora_change_failures_daily",
    "dora_failed_deployment_recovery_daily",
    "dora_change_lead_time_daily",
}
RANGE_TAGS = {
    "dagster/asset_partition_range_start": "2025-03-01",
    "dagster/asset_partition_range_end": "2025-03-04",
}


def test_every_asset_is_described_for_the_ui() -> None:
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == set(GROUPS)
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.group_name == GROUPS[name]
        assert node.owners == ["team:platform"]
        assert len(node.description or "") > 100, name
        assert node.kinds, name
        if name in PARTITIONED:
            assert node.partitions_def is not None
            assert node.backfill_policy == dg.BackfillPolicy.single_run()
        else:
            assert node.partitions_def is None
    assert "pagerduty" in graph.get(dg.AssetKey("pagerduty_incidents")).kinds
    assert "sql" in graph.get(dg.AssetKey("dora_time_to_restore_daily")).kinds


def test_warehouse_url_defaults_to_the_environment(monkeypatch, sqlite_url: str) -> None:
    monkeypatch.setenv("DORA_WAREHOUSE_URL", sqlite_url)
    assert WarehouseResource().url == sqlite_url


def test_the_ui_sees_the_warehouse_variable_not_its_url(monkeypatch, sqlite_url: str) -> None:
    """A PostgreSQL URL carries a password: Dagster's resource config must name the variable."""
    monkeypatch.setenv("DORA_WAREHOUSE_URL", sqlite_url)
    resource = WarehouseResource.from_environment()
    shown = resource.get_resource_definition().config_schema.default_value
    assert shown == {"url": {"env": "DORA_WAREHOUSE_URL"}}
    # ... and a run resolves it to the warehouse (the variable's name is no SQLAlchemy URL).
    result = dg.materialize([event_api_events_asset], resources={"warehouse": resource})
    assert result.success


def land(engine: sa.Engine) -> None:
    store = EventStore(engine)
    for number in range(6):
        finished = dt.datetime(2025, 3, 1, 12) + dt.timedelta(hours=13 * number)
        store.upsert_deployment(
            DeploymentEvent(
                "checkout", finished - dt.timedelta(minutes=5), finished, id=f"D{number}"
            )
        )
        store.upsert_failure(
            FailureEvent(
                finished, ("checkout",), finished_at=finished + dt.timedelta(minutes=number + 1)
            )
        )


def test_missing_pagerduty_token_fails_only_the_pagerduty_asset(
    warehouse_url: str, monkeypatch
) -> None:
    monkeypatch.delenv("PAGERDUTY_API_TOKEN", raising=False)
    result = dg.materialize(
        [pagerduty_incidents_asset, event_api_events_asset, dora_deployments_asset],
        resources={
            "warehouse": WarehouseResource(url=warehouse_url),
            "pagerduty": PagerDutyResource.from_environment(),
        },
        partition_key="2025-03-01",
        raise_on_error=False,
    )
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "pagerduty_incidents"
    assert "PAGERDUTY_API_TOKEN is not set" in failure.step_failure_data.error.message
    materialized = {
        event.asset_key.to_user_string() for event in result.get_asset_materialization_events()
    }
    # dora_deployments also reads dora_incidents (attribution), which is not selected here.
    assert materialized == {"event_api_events", "dora_deployments", "dora_incident_deployments"}


def test_a_backwards_deployment_fails_its_blocking_check_and_stops_the_metrics(
    warehouse_url: str,
) -> None:
    engine = open_warehouse(warehouse_url)
    land(engine)
    with engine.begin() as connection:
        now = dt.datetime(2025, 3, 2)
        connection.execute(
            sa.insert(api_deployments).values(
                deployment_id="backwards",
                service="checkout",
                started_at=dt.datetime(2025, 3, 2, 12),
                finished_at=dt.datetime(2025, 3, 2, 11),
                received_at=now,
                updated_at=now,
            )
        )
    engine.dispose()
    result = dg.materialize(
        [dora_deployments_asset, dora_deployments_checks, dora_change_failure_rate_daily_asset],
        resources={"warehouse": WarehouseResource(url=warehouse_url)},
        tags=RANGE_TAGS,
        raise_on_error=False,
    )
    backwards = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "finished_not_before_started"
    ]
    assert [e.passed for e in backwards] == [False]
    assert backwards[0].metadata["offending_rows"].value == 1
    materialized = {
        event.asset_key.to_user_string() for event in result.get_asset_materialization_events()
    }
    assert materialized == {"dora_deployments", "dora_incident_deployments"}


def metric_rows(url: str) -> list[list[tuple]]:
    engine = open_warehouse(url)
    with engine.connect() as connection:
        tables = [
            sorted(tuple(row) for row in connection.execute(sa.select(table)))
            for table in (dora_change_failure_rate_daily, dora_time_to_restore_daily)
        ]
    engine.dispose()
    return tables


def test_overlapping_backfills_at_once_leave_no_duplicates(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    land(engine)
    engine.dispose()
    resources = {"warehouse": WarehouseResource(url=warehouse_url)}
    dg.materialize(
        [event_api_events_asset, dora_deployments_asset, dora_incidents_asset], resources=resources
    )
    metrics = [dora_change_failure_rate_daily_asset, dora_time_to_restore_daily_asset]
    dg.materialize(metrics, resources=resources, tags=RANGE_TAGS)
    built_alone = metric_rows(warehouse_url)

    outcomes: list[bool] = []

    def backfill(first: str, last: str) -> None:
        tags = {
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        }
        for _ in range(3):
            outcomes.append(dg.materialize(metrics, resources=resources, tags=tags).success)

    threads = [
        threading.Thread(target=backfill, args=("2025-03-01", "2025-03-03")),
        threading.Thread(target=backfill, args=("2025-03-02", "2025-03-04")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == [True] * 6
    assert metric_rows(warehouse_url) == built_alone
    assert built_alone[0] and built_alone[1]


@pytest.mark.parametrize(
    ("asset", "counts", "undefined"),
    [
        (
            dora_change_failure_rate_daily_asset,
            ("deployments", "failures"),
            "org_change_failure_rate",
        ),
        (
            dora_time_to_restore_daily_asset,
            ("resolved_incidents",),
            "org_median_time_to_restore_seconds",
        ),
    ],
)
def test_an_empty_range_writes_nothing_and_succeeds(
    asset: dg.AssetsDefinition, counts: tuple[str, ...], undefined: str, sqlite_url: str
) -> None:
    result = dg.materialize(
        [asset], resources={"warehouse": WarehouseResource(url=sqlite_url)}, tags=RANGE_TAGS
    )
    events = result.get_asset_materialization_events()
    assert len(events) == 4
    for event in events:
        metadata = event.materialization.metadata
        # Quiet days plot as zeros; a rate or median of nothing is left out, not 0.
        assert [metadata[name].value for name in ("dagster/row_count", *counts)] == [0] * (
            1 + len(counts)
        )
        assert undefined not in metadata


@pytest.mark.parametrize("key", sorted(GROUPS))
def test_every_asset_can_be_materialized_on_its_own(key: str) -> None:
    """What `dagster asset materialize --select KEY` builds: the asset with its checks."""
    job = defs.resolve_implicit_global_asset_job_def()
    subset = job.get_subset(asset_selection={dg.AssetKey(key)})
    assert dg.AssetKey(key) in subset.asset_layer.executable_asset_keys
