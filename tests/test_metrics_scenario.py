"""Both metric tables over a small hand-computed scenario, through real Dagster runs.

Events land through the event API's own store (and one incident through the real
PagerDuty asset against the PagerDuty-compatible server on loopback); the asset graph
is materialized with `dg.materialize`, a metric range as ONE single-run backfill.

The scenario (env prod unless noted; catalog: checkout -> payments, search -> discovery):

deployments                      finished (UTC)       counted under
  D1 checkout                    03-01 10:00:00       checkout/payments (catalog)
  D2 checkout                    03-01 23:59:59       checkout/payments, still 03-01
  D3 checkout                    03-02 00:00:00       checkout/payments, already 03-02
  D4 search  team discovery      03-01 12:00:00       search/discovery
  D5 search  team growth         03-02 09:00:00       search/growth (own team wins)
  D6 billing (not in catalog)    03-02 11:00:00       billing/''
  D7 checkout, retracted         03-01 15:00:00       nowhere
  D8 checkout env staging        03-01 08:00:00       checkout/payments/staging
failures                         started -> finished
  F1 checkout                    03-01 11:00 -> 03-01 12:00            3,600 s
  F2 checkout+search             03-01 23:59:59 -> 03-02 00:29:59      1,800 s each
  F3 team payments only          03-02 00:00:00, open                  service ''
  F4 search                      03-03 06:00 -> 03-03 06:10              600 s
  F5 checkout                    03-02 08:00 -> 03-02 10:00            7,200 s
  F6 checkout                    03-02 09:00 -> 03-02 09:25            1,500 s
  F7 checkout                    02-28 20:00 -> 03-02 20:00          172,800 s
  F8 checkout, retracted         03-01 13:00
  F9 search                      03-03 07:00, open
  P1 PagerDuty "Checkout API" (unmapped), team Payments
                                 03-03 10:00 -> 03-03 10:20            1,200 s
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.events.schemas import DeploymentEvent, FailureEvent
from connectors.events.store import EventStore
from connectors.pagerduty.compat_server import IncidentStore, ServerOptions, build_app
from connectors.serving import serve_in_thread
from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_deployments,
    dora_incidents,
    dora_time_to_restore_daily,
)
from dora_assets.ingest.event_api import event_api_events_asset
from dora_assets.ingest.pagerduty import pagerduty_incidents_asset
from dora_assets.metrics.change_failure_rate import (
    dora_change_failure_rate_daily_asset,
    dora_change_failure_rate_daily_reconciliation,
)
from dora_assets.metrics.durations import percentile
from dora_assets.metrics.time_to_restore import (
    dora_time_to_restore_daily_asset,
    dora_time_to_restore_daily_reconciliation,
)
from dora_assets.normalized.deployments import dora_deployments_asset, dora_deployments_checks
from dora_assets.normalized.incidents import dora_incidents_asset, dora_incidents_checks
from dora_assets.resources import PagerDutyResource, WarehouseResource

FIRST_DAY, LAST_DAY = "2025-03-01", "2025-03-03"
CFR_KEY, TTR_KEY = dora_change_failure_rate_daily.name, dora_time_to_restore_daily.name
NORMALIZED = [
    event_api_events_asset,
    dora_deployments_asset,
    dora_incidents_asset,
    dora_deployments_checks,
    dora_incidents_checks,
]
METRICS = [
    dora_change_failure_rate_daily_asset,
    dora_time_to_restore_daily_asset,
    dora_change_failure_rate_daily_reconciliation,
    dora_time_to_restore_daily_reconciliation,
]
CATALOG = "services:\n  checkout: {team: payments}\n  search: {team: discovery}\n"
PAGERDUTY_TOKEN = "compat-token"

d, day = dt.date, dt.date


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"2025-{text}")


def land_api_events(engine: sa.Engine) -> None:
    store = EventStore(engine)
    for event in [
        DeploymentEvent("checkout", at("03-01 09:50"), at("03-01 10:00"), env="prod", id="D1"),
        DeploymentEvent("checkout", at("03-01 23:50"), at("03-01 23:59:59"), env="prod", id="D2"),
        DeploymentEvent("checkout", at("03-01 23:55"), at("03-02 00:00:00"), env="prod", id="D3"),
        DeploymentEvent(
            "search", at("03-01 11:50"), at("03-01 12:00"), env="prod", team="discovery", id="D4"
        ),
        DeploymentEvent(
            "search", at("03-02 08:50"), at("03-02 09:00"), env="prod", team="growth", id="D5"
        ),
        DeploymentEvent("billing", at("03-02 10:50"), at("03-02 11:00"), env="prod", id="D6"),
        DeploymentEvent("checkout", at("03-01 14:50"), at("03-01 15:00"), env="prod", id="D7"),
        DeploymentEvent("checkout", at("03-01 07:50"), at("03-01 08:00"), env="staging", id="D8"),
    ]:
        store.upsert_deployment(event)
    for event in [
        FailureEvent(
            at("03-01 11:00"), ("checkout",), env="prod", finished_at=at("03-01 12:00"), id="F1"
        ),
        FailureEvent(
            at("03-01 23:59:59"),
            ("checkout", "search"),
            env="prod",
            finished_at=at("03-02 00:29:59"),
            id="F2",
        ),
        FailureEvent(at("03-02 00:00:00"), team="payments", env="prod", id="F3"),
        FailureEvent(
            at("03-03 06:00"), ("search",), env="prod", finished_at=at("03-03 06:10"), id="F4"
        ),
        FailureEvent(
            at("03-02 08:00"), ("checkout",), env="prod", finished_at=at("03-02 10:00"), id="F5"
        ),
        FailureEvent(
            at("03-02 09:00"), ("checkout",), env="prod", finished_at=at("03-02 09:25"), id="F6"
        ),
        FailureEvent(
            at("02-28 20:00"), ("checkout",), env="prod", finished_at=at("03-02 20:00"), id="F7"
        ),
        FailureEvent(at("03-01 13:00"), ("checkout",), env="prod", id="F8"),
        FailureEvent(at("03-03 07:00"), ("search",), env="prod", id="F9"),
    ]:
        store.upsert_failure(event)
    assert store.delete_deployment("D7")
    assert store.delete_failure("F8")


@pytest.fixture
def pagerduty_url() -> Iterator[str]:
    incidents = IncidentStore()
    p1 = incidents.add(
        at("03-03 10:00"),
        title="Checkout API down",
        service=("PCHK", "Checkout API"),
        teams=[("PTEAM", "Payments")],
    )
    incidents.resolve(p1.id, at("03-03 10:20"))
    with serve_in_thread(build_app(incidents, ServerOptions(api_token=PAGERDUTY_TOKEN))) as url:
        yield url


@pytest.fixture
def scenario(warehouse_url: str, pagerduty_url: str, tmp_path, monkeypatch) -> dict[str, object]:
    config = tmp_path / "dora.yaml"
    config.write_text(CATALOG)
    monkeypatch.setenv("DORA_CONFIG", str(config))
    engine = open_warehouse(warehouse_url)
    land_api_events(engine)
    engine.dispose()
    return {
        "warehouse": WarehouseResource(url=warehouse_url),
        "pagerduty": PagerDutyResource(api_token=PAGERDUTY_TOKEN, api_url=pagerduty_url),
    }


def day_range_tags(first: str, last: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


def materialize(
    assets: list, resources: dict[str, object], instance: dg.DagsterInstance, **range_: str
) -> dg.ExecuteInProcessResult:
    tags = day_range_tags(range_["first"], range_["last"]) if range_ else None
    result = dg.materialize(assets, resources=resources, instance=instance, tags=tags)
    assert result.success
    return result


def build_everything(
    resources: dict[str, object], instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    materialize([pagerduty_incidents_asset], resources, instance, first=FIRST_DAY, last=LAST_DAY)
    materialize(NORMALIZED, resources, instance)
    return materialize(METRICS, resources, instance, first=FIRST_DAY, last=LAST_DAY)


def table_rows(url: str, table: sa.Table) -> list[tuple]:
    engine = open_warehouse(url)
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(sa.select(table))]
    engine.dispose()
    return sorted(rows, key=lambda row: tuple(str(value) for value in row))


EXPECTED_CHANGE_FAILURE_RATE = sorted(
    [
        (day(2025, 3, 1), "checkout", "payments", "prod", 2, 2, 1.0),
        (day(2025, 3, 1), "checkout", "payments", "staging", 1, 0, 0.0),
        (day(2025, 3, 1), "search", "discovery", "prod", 1, 1, 1.0),
        (day(2025, 3, 2), "checkout", "payments", "prod", 1, 2, 2.0),
        (day(2025, 3, 2), "search", "growth", "prod", 1, 0, 0.0),
        (day(2025, 3, 2), "billing", "", "prod", 1, 0, 0.0),
        (day(2025, 3, 2), "", "payments", "prod", 0, 1, None),  # team-only, open
        (day(2025, 3, 3), "search", "discovery", "prod", 0, 2, None),  # F4 + open F9
        (day(2025, 3, 3), "Checkout API", "Payments", "prod", 0, 1, None),  # PagerDuty P1
    ],
    key=lambda row: tuple(str(value) for value in row),
)

# checkout 03-02 resolved F2, F5, F6, F7: 1,500 1,800 7,200 172,800 s. Linear interpolation:
# median at rank 1.5 = 1,800 + 0.5 * 5,400 = 4,500; p90 at rank 2.7 = 7,200 + 0.7 * 165,600.
EXPECTED_TIME_TO_RESTORE = sorted(
    [
        (
            day(2025, 3, 1),
            "checkout",
            "payments",
            "prod",
            1,
            3600.0,
            3600.0,
            3600.0,
            3600.0,
            3600.0,
        ),
        (
            day(2025, 3, 2),
            "checkout",
            "payments",
            "prod",
            4,
            183300.0,
            45825.0,
            4500.0,
            7200.0 + 0.7 * 165600.0,
            172800.0,
        ),
        (day(2025, 3, 2), "search", "discovery", "prod", 1, 1800.0, 1800.0, 1800.0, 1800.0, 1800.0),
        (day(2025, 3, 3), "search", "discovery", "prod", 1, 600.0, 600.0, 600.0, 600.0, 600.0),
        (
            day(2025, 3, 3),
            "Checkout API",
            "Payments",
            "prod",
            1,
            1200.0,
            1200.0,
            1200.0,
            1200.0,
            1200.0,
        ),
    ],
    key=lambda row: tuple(str(value) for value in row),
)


def assert_rows(actual: list[tuple], expected: list[tuple]) -> None:
    assert len(actual) == len(expected), actual
    for got, want in zip(actual, expected, strict=True):
        assert got == pytest.approx(want), (got, want)


def test_both_metrics_match_the_hand_computed_scenario(
    scenario: dict[str, object], warehouse_url: str
) -> None:
    build_everything(scenario, dg.DagsterInstance.ephemeral())

    assert_rows(
        table_rows(warehouse_url, dora_change_failure_rate_daily), EXPECTED_CHANGE_FAILURE_RATE
    )
    assert_rows(table_rows(warehouse_url, dora_time_to_restore_daily), EXPECTED_TIME_TO_RESTORE)


def test_normalized_tables_fill_teams_drop_retractions_and_split_services(
    scenario: dict[str, object], warehouse_url: str
) -> None:
    build_everything(scenario, dg.DagsterInstance.ephemeral())

    deployments = {row[0]: row[1:4] for row in table_rows(warehouse_url, dora_deployments)}
    assert deployments == {
        "D1": ("checkout", "payments", "prod"),
        "D2": ("checkout", "payments", "prod"),
        "D3": ("checkout", "payments", "prod"),
        "D4": ("search", "discovery", "prod"),
        "D5": ("search", "growth", "prod"),
        "D6": ("billing", "", "prod"),
        "D8": ("checkout", "payments", "staging"),
    }
    incidents = {
        (row[0], row[1]): (row[2], row[6]) for row in table_rows(warehouse_url, dora_incidents)
    }
    assert incidents[("F2", "checkout")] == ("payments", "resolved")
    assert incidents[("F2", "search")] == ("discovery", "resolved")
    assert incidents[("F3", "")] == ("payments", "open")
    assert ("F8", "checkout") not in incidents
    pagerduty = [key for key in incidents if key[0].startswith("pagerduty:")]
    assert [service for _, service in pagerduty] == ["Checkout API"]


def test_each_partition_carries_the_org_wide_figures_and_checks_pass(
    scenario: dict[str, object],
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = build_everything(scenario, instance)

    rates = {
        event.partition: event.metadata
        for event in result.asset_materializations_for_node("dora_change_failure_rate_daily")
    }
    assert sorted(rates) == [FIRST_DAY, "2025-03-02", LAST_DAY]
    # 03-01: 4 deployments (D1, D2, D4, D8), 3 failures (F1, F2 twice); 03-03: no deployments.
    assert rates[FIRST_DAY]["org_change_failure_rate"].value == pytest.approx(0.75)
    assert rates["2025-03-02"]["org_change_failure_rate"].value == pytest.approx(1.0)
    assert "org_change_failure_rate" not in rates[LAST_DAY]
    assert rates[FIRST_DAY]["dagster/row_count"].value == 3
    assert rates[FIRST_DAY]["partition_range"].value == f"{FIRST_DAY}...{LAST_DAY}"
    assert "preview" in rates[LAST_DAY] and "preview" not in rates[FIRST_DAY]
    assert rates[LAST_DAY]["range_row_count"].value == 9

    restores = {
        event.partition: event.metadata
        for event in result.asset_materializations_for_node("dora_time_to_restore_daily")
    }
    # 03-02 org-wide: F2 once (1,800), F5, F6, F7 -> median 4,500.
    median = "org_median_time_to_restore_seconds"
    assert restores["2025-03-02"][median].value == pytest.approx(4500.0)
    assert restores[FIRST_DAY][median].value == pytest.approx(3600.0)
    assert restores[LAST_DAY][median].value == pytest.approx(900.0)  # 600 and 1,200

    evaluations = result.get_asset_check_evaluations()
    assert {evaluation.check_name for evaluation in evaluations} == {"reconciles_with_sources"}
    assert all(evaluation.passed for evaluation in evaluations)


def test_the_reconciliation_names_each_day_and_measure_that_no_longer_matches(
    scenario: dict[str, object],
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    build_everything(scenario, instance)
    engine = open_warehouse(scenario["warehouse"].url)  # type: ignore[attr-defined]
    with engine.begin() as connection:
        # A metric row edited behind the asset's back; a source row gone, its day not rebuilt.
        restores = dora_time_to_restore_daily.c
        connection.execute(
            sa.update(dora_time_to_restore_daily)
            .where(restores.day == day(2025, 3, 1))
            .values(total_seconds=1.0)
        )
        connection.execute(
            sa.delete(dora_deployments).where(dora_deployments.c.deployment_id == "D5")
        )
    engine.dispose()

    # Run on their own, the checks reconcile every materialized partition.
    result = dg.materialize(
        METRICS,
        resources=scenario,
        instance=instance,
        selection=dg.AssetSelection.all_asset_checks(),
    )
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    rate, restore = evaluations[CFR_KEY], evaluations[TTR_KEY]
    assert not rate.passed and not restore.passed
    assert rate.metadata["days_reconciled"].value == 3
    assert rate.metadata["mismatched_days"].value == 1
    assert "| 2025-03-02 | deployments | 3 | 2 |" in rate.metadata["mismatches"].value
    assert restore.metadata["mismatched_days"].value == 1
    assert "| 2025-03-01 | total_seconds | 1 | 3600 |" in restore.metadata["mismatches"].value


def test_unmapped_pagerduty_services_are_reported_as_a_warning(
    scenario: dict[str, object],
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    materialize([pagerduty_incidents_asset], scenario, instance, first=FIRST_DAY, last=LAST_DAY)
    result = materialize(NORMALIZED, scenario, instance)

    [incidents] = result.asset_materializations_for_node("dora_incidents")
    # 9 API rows (F2 twice; F8 retracted) and the PagerDuty incident
    assert incidents.metadata["rows_inserted"].value == 10
    assert incidents.metadata["dagster/row_count"].value == 10
    evaluations = result.get_asset_check_evaluations()
    [unmapped] = [e for e in evaluations if e.check_name == "pagerduty_services_mapped"]
    assert not unmapped.passed
    assert unmapped.severity == dg.AssetCheckSeverity.WARN
    assert unmapped.metadata["unmapped_services"].value == ["Checkout API"]
    others = [e for e in evaluations if e.check_name != "pagerduty_services_mapped"]
    assert len(others) == 8 and all(e.passed for e in others)

    # Nothing changed since: a second refresh reads, compares and writes nothing.
    again = materialize(NORMALIZED, scenario, instance)
    refreshed_by_key = {
        event.asset_key.to_user_string(): event.materialization
        for event in again.get_asset_materialization_events()
    }
    for key in ("dora_deployments", "dora_incidents"):
        refreshed = refreshed_by_key[key]
        written = ("rows_inserted", "rows_updated", "rows_deleted")
        assert [refreshed.metadata[name].value for name in written] == [0, 0, 0]


def test_rematerializing_partitions_leaves_identical_tables(
    scenario: dict[str, object], warehouse_url: str
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    build_everything(scenario, instance)
    before = [
        table_rows(warehouse_url, t)
        for t in (dora_change_failure_rate_daily, dora_time_to_restore_daily)
    ]

    dg.materialize(METRICS[:2], resources=scenario, instance=instance, partition_key="2025-03-02")
    materialize(METRICS, scenario, instance, first="2025-03-02", last=LAST_DAY)

    after = [
        table_rows(warehouse_url, t)
        for t in (dora_change_failure_rate_daily, dora_time_to_restore_daily)
    ]
    assert after == before


def test_a_late_event_is_picked_up_when_its_day_is_rebuilt(
    scenario: dict[str, object], warehouse_url: str
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    build_everything(scenario, instance)
    engine = open_warehouse(warehouse_url)
    EventStore(engine).upsert_failure(  # F9 resolved a day late: 03-03 07:00 -> 03-04 07:00
        FailureEvent(
            at("03-03 07:00"), ("search",), env="prod", finished_at=at("03-04 07:00"), id="F9"
        )
    )
    engine.dispose()
    materialize(NORMALIZED, scenario, instance)
    materialize(METRICS, scenario, instance, first=LAST_DAY, last="2025-03-04")

    resolved_late = [
        row
        for row in table_rows(warehouse_url, dora_time_to_restore_daily)
        if row[0] == day(2025, 3, 4)
    ]
    assert_rows(
        resolved_late,
        [
            (
                day(2025, 3, 4),
                "search",
                "discovery",
                "prod",
                1,
                86400.0,
                86400.0,
                86400.0,
                86400.0,
                86400.0,
            )
        ],
    )


@pytest.mark.parametrize(
    ("ordered", "percent", "expected"),
    [
        ([600.0], 50, 600.0),
        ([600.0, 1_200.0], 50, 900.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 90, 3.7),  # rank 2.7: 3 + 0.7 * (4 - 3)
        ([10.0, 20.0, 30.0, 40.0, 50.0], 90, 46.0),  # rank 3.6
        ([10.0, 20.0, 30.0], 100, 30.0),
    ],
)
def test_the_org_median_interpolates_between_closest_ranks_as_percentile_cont(
    ordered: list[float], percent: int, expected: float
) -> None:
    assert percentile(ordered, percent) == pytest.approx(expected)
