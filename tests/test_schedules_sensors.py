"""Schedules at fixed times, and the late-data sensor against real warehouses.

The late-data scenario runs on SQLite and PostgreSQL: the whole graph is materialized
(PagerDuty from the compatible server on loopback, deployments through the event
store), then a deployment is backfilled for a past day, another retracted, and a
PagerDuty incident resolved days late; the sensor must ask for exactly those days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.events.schemas import DeploymentEvent
from connectors.events.store import EventStore
from connectors.pagerduty.compat_server import IncidentStore, ServerOptions, build_app
from connectors.serving import serve_in_thread
from connectors.warehouse.schema import dora_change_failure_rate_daily, dora_time_to_restore_daily
from dora_assets.definitions import defs
from dora_assets.freshness import INGEST_KEYS, METRIC_KEYS, NORMALIZED_KEYS, REPORT_KEYS
from dora_assets.resources import PagerDutyResource, WarehouseResource
from dora_assets.schedules import daily_metrics_schedule, refresh_sources_schedule

PAGERDUTY_TOKEN = "late-data-token"
PAGERDUTY, EVENT_API, GIT = INGEST_KEYS
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def at(day: str, clock: str = "00:00:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=dt.UTC)


def naive(day: str, clock: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{clock}")


def definitions_with(**resources: object) -> dg.Definitions:
    """The code location's definitions with test resources in place of the defaults."""
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources={**defs.resources, **resources},
    )


def execute(definitions: dg.Definitions, instance, request: dg.RunRequest, job_name: str):
    result = definitions.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        asset_selection=request.asset_selection,
        partition_key=request.partition_key,
        tags=request.tags,
    )
    assert result.success
    return result


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


# --- schedules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tick", "partition"),
    [
        (at("2025-03-10", "10:15:00"), "2025-03-10"),
        (at("2025-03-10", "23:45:00"), "2025-03-10"),
        # The 00:00 tick covers the last 15 minutes of the day that just ended.
        (at("2025-03-11", "00:00:00"), "2025-03-10"),
        (at("2025-03-11", "00:15:00"), "2025-03-11"),
    ],
)
def test_refresh_pulls_the_partition_of_the_last_quarter_hour(
    monkeypatch: pytest.MonkeyPatch, tick: dt.datetime, partition: str
) -> None:
    monkeypatch.setenv("PAGERDUTY_API_TOKEN", PAGERDUTY_TOKEN)
    request = refresh_sources_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert request.partition_key == partition
    assert request.asset_selection == [PAGERDUTY, EVENT_API, GIT, *NORMALIZED_KEYS]
    assert refresh_sources_schedule.cron_schedule == "*/15 * * * *"
    assert refresh_sources_schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_refresh_without_a_pagerduty_token_still_takes_up_the_api_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PAGERDUTY_API_TOKEN", raising=False)
    context = dg.build_schedule_context(scheduled_execution_time=at("2025-03-10", "10:15:00"))
    request = refresh_sources_schedule(context)
    assert request.asset_selection == [EVENT_API, GIT, *NORMALIZED_KEYS]
    assert request.partition_key == "2025-03-10"


@pytest.mark.parametrize(
    ("token", "sources"), [(PAGERDUTY_TOKEN, [PAGERDUTY, EVENT_API, GIT]), (None, [EVENT_API, GIT])]
)
def test_daily_run_is_yesterday_plus_the_seven_days_before_in_one_range(
    monkeypatch: pytest.MonkeyPatch, token: str | None, sources: list[dg.AssetKey]
) -> None:
    if token:
        monkeypatch.setenv("PAGERDUTY_API_TOKEN", token)
    else:
        monkeypatch.delenv("PAGERDUTY_API_TOKEN", raising=False)
    context = dg.build_schedule_context(scheduled_execution_time=at("2025-03-10", "01:00:00"))
    request = daily_metrics_schedule(context)
    assert request.asset_selection == [*sources, *NORMALIZED_KEYS, *METRIC_KEYS, *REPORT_KEYS]
    assert request.tags == {RANGE_START: "2025-03-02", RANGE_END: "2025-03-09"}
    assert request.partition_key is None
    assert daily_metrics_schedule.cron_schedule == "0 1 * * *"
    assert daily_metrics_schedule.execution_timezone == "UTC"
    assert daily_metrics_schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_daily_run_starts_no_earlier_than_the_first_partition() -> None:
    first_day = at("2025-01-01", "01:00:00")  # DORA_START_DATE's default
    skipped = daily_metrics_schedule(dg.build_schedule_context(scheduled_execution_time=first_day))
    assert isinstance(skipped, dg.SkipReason)
    third_day = at("2025-01-03", "01:00:00")
    request = daily_metrics_schedule(dg.build_schedule_context(scheduled_execution_time=third_day))
    assert request.tags == {RANGE_START: "2025-01-01", RANGE_END: "2025-01-02"}


def test_daily_request_executes_as_one_run_over_eight_partitions(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, instance: dg.DagsterInstance
) -> None:
    monkeypatch.delenv("PAGERDUTY_API_TOKEN", raising=False)
    context = dg.build_schedule_context(scheduled_execution_time=at("2025-03-10", "01:00:00"))
    request = daily_metrics_schedule(context)
    definitions = definitions_with(warehouse=WarehouseResource(url=sqlite_url))

    execute(definitions, instance, request, daily_metrics_schedule.job_name)

    assert len(instance.get_runs()) == 1
    days = {f"2025-03-{day:02d}" for day in range(2, 10)}
    for key in METRIC_KEYS:
        assert instance.get_materialized_partitions(key) == days


# --- late-data sensor -----------------------------------------------------------------


def deployment(identifier: str, day: str, clock: str) -> DeploymentEvent:
    finished = naive(day, clock)
    return DeploymentEvent(
        id=identifier,
        service="checkout",
        team="payments",
        env="prod",
        started_at=finished - dt.timedelta(minutes=5),
        finished_at=finished,
    )


def metric_rows(engine: sa.Engine, table: sa.Table, *columns: str) -> list[tuple]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.day, table.c.service, *(table.c[name] for name in columns)).order_by(
                table.c.day, table.c.service
            )
        )
        return [(str(day), *rest) for day, *rest in rows]


def test_late_data_sensor_requests_exactly_the_changed_days_in_one_run(
    monkeypatch: pytest.MonkeyPatch,
    warehouse: sa.Engine,
    warehouse_url: str,
    instance: dg.DagsterInstance,
) -> None:
    monkeypatch.setenv("PAGERDUTY_API_TOKEN", PAGERDUTY_TOKEN)
    events = EventStore(warehouse)
    events.upsert_deployments(
        [
            deployment("d-0301", "2025-03-01", "10:00:00"),
            deployment("d-0305", "2025-03-05", "11:00:00"),
            deployment("d-0306", "2025-03-06", "09:00:00"),
        ]
    )
    incidents = IncidentStore()
    checkout = ("PSVC001", "checkout")
    payments = [("PTEAM01", "payments")]
    late = incidents.add(naive("2025-03-03", "10:00:00"), service=checkout, teams=payments)
    quick = incidents.add(naive("2025-03-04", "08:00:00"), service=checkout, teams=payments)
    incidents.resolve(quick.id, naive("2025-03-04", "09:00:00"))
    options = ServerOptions(api_token=PAGERDUTY_TOKEN)

    with serve_in_thread(build_app(incidents, options)) as pagerduty_url:
        resources = {
            "warehouse": WarehouseResource(url=warehouse_url),
            "pagerduty": PagerDutyResource(api_token=PAGERDUTY_TOKEN, api_url=pagerduty_url),
        }
        definitions = definitions_with(**resources)
        sensor = definitions.resolve_sensor_def("late_data_sensor")

        def evaluate(cursor: str | None):
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, definitions=definitions, resources=resources
            ) as context:
                return sensor.evaluate_tick(context)

        built = dg.RunRequest(
            asset_selection=[*INGEST_KEYS, *NORMALIZED_KEYS, *METRIC_KEYS],
            tags={RANGE_START: "2025-03-01", RANGE_END: "2025-03-10"},
        )
        execute(definitions, instance, built, "daily_metrics")
        nothing = evaluate(None)
        assert nothing.run_requests == []
        assert nothing.skip_message == "no built metric day has changed inputs"

        # A deployment backfilled through the API for 2 March, one retracted on 5 March,
        # and the incident of 3 March resolved on 8 March, taken up by the next refresh.
        events.upsert_deployment(deployment("d-0302", "2025-03-02", "12:00:00"))
        events.delete_deployment("d-0305")
        incidents.resolve(late.id, naive("2025-03-08", "12:00:00"))
        refresh = refresh_sources_schedule(
            dg.build_schedule_context(scheduled_execution_time=dt.datetime.now(dt.UTC))
        )
        execute(definitions, instance, refresh, refresh_sources_schedule.job_name)

        first = evaluate(None)
        [request] = first.run_requests
        assert request.asset_selection == list(METRIC_KEYS)
        assert request.tags == {
            RANGE_START: "2025-03-02",
            RANGE_END: "2025-03-08",
            "dora/stale_days": "2025-03-02,2025-03-05,2025-03-08",
            "dagster/sensor_name": "late_data_sensor",
        }
        # While that run is in flight, the same finding is not requested again.
        again = evaluate(first.cursor)
        assert again.run_requests == []
        assert "already requested" in again.skip_message

        runs_before = len(instance.get_runs())
        execute(definitions, instance, request, sensor.job_name)
        assert len(instance.get_runs()) == runs_before + 1
        settled = evaluate(first.cursor)
        assert settled.run_requests == []
        assert settled.skip_message == "no built metric day has changed inputs"

    assert metric_rows(warehouse, dora_change_failure_rate_daily, "deployments", "failures") == [
        ("2025-03-01", "checkout", 1, 0),
        ("2025-03-02", "checkout", 1, 0),
        ("2025-03-03", "checkout", 0, 1),
        ("2025-03-04", "checkout", 0, 1),
        ("2025-03-06", "checkout", 1, 0),
    ]
    restored_in = (dt.timedelta(days=5, hours=2)).total_seconds()
    assert metric_rows(
        warehouse, dora_time_to_restore_daily, "resolved_incidents", "total_seconds"
    ) == [("2025-03-04", "checkout", 1, 3600.0), ("2025-03-08", "checkout", 1, restored_in)]


# --- daily audit ----------------------------------------------------------------------


def test_the_daily_audit_rebuilds_exactly_the_days_that_differ_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
    warehouse: sa.Engine,
    warehouse_url: str,
    instance: dg.DagsterInstance,
) -> None:
    monkeypatch.delenv("PAGERDUTY_API_TOKEN", raising=False)
    EventStore(warehouse).upsert_deployments(
        [
            deployment("d-0302", "2025-03-02", "12:00:00"),
            deployment("d-0304", "2025-03-04", "08:00:00"),
        ]
    )
    definitions = definitions_with(warehouse=WarehouseResource(url=warehouse_url))
    built = dg.RunRequest(
        asset_selection=[EVENT_API, *NORMALIZED_KEYS, *METRIC_KEYS],
        tags={RANGE_START: "2025-03-01", RANGE_END: "2025-03-05"},
    )
    execute(definitions, instance, built, "daily_metrics")
    before = metric_rows(warehouse, dora_change_failure_rate_daily, "deployments")
    # A day that drifted from its inputs without any recorded change (say, a bug, or a
    # hand edit): the sensor cannot see it, the audit must.
    with warehouse.begin() as connection:
        connection.execute(
            sa.update(dora_change_failure_rate_daily)
            .where(dora_change_failure_rate_daily.c.day == dt.date(2025, 3, 4))
            .values(deployments=5)
        )

    audit = definitions.resolve_job_def("audit_metric_days").execute_in_process(instance=instance)

    assert audit.success
    [output] = [event for event in audit.all_events if event.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["days_differing_and_rebuilt"].value == {
        "dora_change_failure_rate_daily": ["2025-03-04"],
        "dora_time_to_restore_daily": [],
        "dora_change_failures_daily": [],
        "dora_failed_deployment_recovery_daily": [],
        "dora_change_lead_time_daily": [],
    }
    assert set(metadata["days_audited"].value.values()) == {5}
    [rebuilt] = audit.asset_materializations_for_node("compare_and_repair_metric_days")
    assert (rebuilt.asset_key, rebuilt.partition) == (METRIC_KEYS[0], "2025-03-04")
    assert metric_rows(warehouse, dora_change_failure_rate_daily, "deployments") == before
    schedule = definitions.resolve_schedule_def("audit_metrics_daily_at_0300_utc")
    assert (schedule.cron_schedule, schedule.default_status) == (
        "0 3 * * *",
        dg.DefaultScheduleStatus.RUNNING,
    )
