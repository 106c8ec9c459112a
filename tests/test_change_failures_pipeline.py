"""Change failures through the warehouse: events in, classification, attribution and the two
daily tables out, hand-computed, on SQLite and PostgreSQL; then a late rollback that
reclassifies an earlier day through the changed-days record.

One sequence (checkout, prod, team payments), deployments by version:

  a v1  03-01 10:00
  b v2  03-01 12:00   failure: rolled back by d             recovered 03-02 10:00 (79,200 s)
  c v3  03-02 09:00
  d v1  03-02 10:00   rollback (to a)
  e v4  03-03 08:00   PATCH stable: not a failure though f is its hotfix
  f v4-hotfix 03-03 09:30   rollforward
  g v5  03-04 08:00   PATCH failure, remedied by version v6 (rollforward)
                      recovered 11:00 (10,800 s)
  h v6  03-04 11:00   rollforward (the PATCH's remedy); failure: incident i1 12:00-13:00
                      attributed (preceding, 3,600 s lag)                 recovered 13:00 (7,200 s)
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import sqlalchemy as sa
from incremental_support import refresh_all
from warehouse_rows import deployment_row

from connectors.config import ChangeFailureSettings, DoraConfig
from connectors.events.schemas import DeploymentEvent, FailureEvent, Remediation
from connectors.events.store import EventStore
from connectors.warehouse.schema import (
    changed_sequences,
    dora_change_failures_daily,
    dora_deployments,
    dora_failed_deployment_recovery_daily,
    dora_incident_deployments,
)
from dora_assets import changed_days
from dora_assets.change_failures import sequences
from dora_assets.change_failures.apply import (
    SEQUENCES_PER_TRANSACTION,
    Classified,
    _plan,
    _write,
    classify_changed,
    rules_from,
)
from dora_assets.change_failures.checks import attribution_checks, change_failure_checks
from dora_assets.definitions import defs
from dora_assets.metrics.change_failures import change_failures_rows
from dora_assets.metrics.failed_deployment_recovery import recovery_rows
from dora_assets.metrics.rebuild import replace_days
from dora_assets.normalized.deployments import dora_deployments_asset
from dora_assets.resources import WarehouseResource

CONFIG = DoraConfig(service_teams={"checkout": "payments"})
CHANGE_FAILURES = dora_change_failures_daily.name
RECOVERY = dora_failed_deployment_recovery_daily.name
DAYS = [dt.date(2025, 3, day) for day in range(1, 6)]
KEY = ("checkout", "payments", "prod")


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 3, day, hour, minute)


def deploy(events: EventStore, identifier: str, version: str, finished: dt.datetime) -> None:
    events.upsert_deployment(
        DeploymentEvent(
            id=identifier,
            service="checkout",
            env="prod",
            version=version,
            started_at=finished - dt.timedelta(minutes=10),
            finished_at=finished,
        )
    )


def land_the_sequence(events: EventStore) -> None:
    for identifier, version, finished in [
        ("a", "v1", at(1, 10)),
        ("b", "v2", at(1, 12)),
        ("c", "v3", at(2, 9)),
        ("d", "v1", at(2, 10)),
        ("e", "v4", at(3, 8)),
        ("f", "v4-hotfix", at(3, 9, 30)),
        ("g", "v5", at(4, 8)),
        ("h", "v6", at(4, 11)),
    ]:
        deploy(events, identifier, version, finished)
    events.mark_change_failure("e", False)
    events.mark_change_failure("g", True, Remediation("rollforward", "v6", by="version"))
    events.upsert_failure(
        FailureEvent(
            id="i1", services=("checkout",), env="prod", started_at=at(4, 12), finished_at=at(4, 13)
        )
    )


def classification(engine: sa.Engine) -> dict[str, tuple]:
    d = dora_deployments.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                d.deployment_id,
                d.change_failure,
                d.change_failure_reason,
                d.is_rollback,
                d.is_rollforward,
                d.remediation_type,
                d.remediation_deployment_id,
                d.recovered_at,
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}


def table_rows(engine: sa.Engine, table: sa.Table) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.select(table).order_by(table.c.day))]


def build(resource: WarehouseResource, days: list[dt.date]) -> None:
    replace_days(resource, dora_change_failures_daily, change_failures_rows, days)
    replace_days(resource, dora_failed_deployment_recovery_daily, recovery_rows, days)


def test_rules_and_precedence_end_in_the_tables_hand_computed(
    warehouse: sa.Engine, warehouse_url: str
) -> None:
    resource = WarehouseResource(url=warehouse_url)
    land_the_sequence(EventStore(warehouse))
    refresh_all(warehouse, CONFIG)  # normalizes, then classifies the changed sequence
    assert classify_changed(warehouse, CONFIG.change_failures).sequences == 0

    stable = (False, None, False, False, None, None, None)
    assert classification(warehouse) == {
        "a": stable,
        "b": (True, "rollback", False, False, "rollback", "d", at(2, 10)),
        "c": stable,
        "d": (False, None, True, False, None, None, None),
        "e": stable,
        "f": (False, None, False, True, None, None, None),
        "g": (True, "manual", False, False, "rollforward", "h", at(4, 11)),
        "h": (True, "incident", False, True, None, None, at(4, 13)),
    }
    with warehouse.connect() as connection:
        attributions = connection.execute(sa.select(dora_incident_deployments)).all()
    assert [tuple(row) for row in attributions] == [("i1", "checkout", "h", "preceding", 3600.0)]

    build(resource, DAYS)
    assert table_rows(warehouse, dora_change_failures_daily) == [
        (DAYS[0], *KEY, 2, 1, 0, 0, 0.5, 0.5, 0.0),
        (DAYS[1], *KEY, 2, 0, 1, 0, 0.0, 0.0, 0.5),
        (DAYS[2], *KEY, 2, 0, 0, 1, 0.0, 0.0, 0.5),
        (DAYS[3], *KEY, 2, 2, 0, 1, 1.0, 1.0, 0.5),
    ]
    assert table_rows(warehouse, dora_failed_deployment_recovery_daily) == [
        (DAYS[1], *KEY, 1, 79200.0, 79200.0, 79200.0, 79200.0, 79200.0),
        (DAYS[3], *KEY, 2, 18000.0, 9000.0, 9000.0, 10440.0, 10800.0),
    ]

    # A late rollback to v3 (c): the failure is d, the first deployment after c, on an
    # earlier day. Only the days whose figures change are recorded.
    deploy(EventStore(warehouse), "k", "v3", at(5, 9))
    refresh_all(warehouse, CONFIG)
    after = classification(warehouse)
    assert after["k"] == (False, None, True, False, None, None, None)
    assert after["d"] == (
        True,
        "rollback",
        True,
        False,
        "rollback",
        "k",
        at(5, 9),
    )
    with warehouse.connect() as connection:
        pending = changed_days.pending(connection, [CHANGE_FAILURES, RECOVERY], DAYS[0], DAYS[-1])
    assert pending == {CHANGE_FAILURES: {DAYS[1]}, RECOVERY: set()}  # 03-05 is beyond the range
    build(resource, [DAYS[1], DAYS[4]])
    assert table_rows(warehouse, dora_change_failures_daily)[1] == (
        DAYS[1],
        *KEY,
        2,
        1,
        1,
        0,
        0.5,
        1.0,
        0.5,
    )
    resource.engine.dispose()


def test_a_late_deployment_takes_over_an_incident_attribution(warehouse: sa.Engine) -> None:
    events = EventStore(warehouse)
    land_the_sequence(events)
    refresh_all(warehouse, CONFIG)
    # j finishes between h (11:00) and the incident (12:00): the incident is now j's, with
    # half the lag, and h is a rollforward only.
    deploy(events, "j", "v7", at(4, 11, 30))
    refresh_all(warehouse, CONFIG)
    with warehouse.connect() as connection:
        attributions = connection.execute(sa.select(dora_incident_deployments)).all()
    assert [tuple(row) for row in attributions] == [("i1", "checkout", "j", "preceding", 1800.0)]
    after = classification(warehouse)
    assert after["h"] == (False, None, False, True, None, None, None)
    assert after["j"] == (True, "incident", False, False, None, None, at(4, 13))


def test_an_attribution_rewritten_since_it_was_read_is_not_deleted(warehouse: sa.Engine) -> None:
    """Batches are classified while the one before is written. An attribution to a
    deployment that no longer exists is held by every sequence of its service; one
    sequence may plan its deletion while another's batch rewrites it, and the rewrite
    must survive."""
    attribution = sa.insert(dora_incident_deployments).values(
        incident_id="i1", service="checkout", method="preceding", lag_seconds=60.0
    )
    with warehouse.begin() as connection:
        connection.execute(attribution.values(deployment_id="vanished"))
    with warehouse.connect() as connection:
        plan = _plan(connection, "checkout", "staging", rules_from(ChangeFailureSettings()))
    assert plan.attributions_gone == [("i1", "checkout", "vanished")]
    with warehouse.begin() as connection:
        connection.execute(sa.delete(dora_incident_deployments))
        connection.execute(attribution.values(deployment_id="a"))
    with warehouse.begin() as connection:
        _write(connection, [plan], Classified())
    with warehouse.connect() as connection:
        attributions = connection.execute(sa.select(dora_incident_deployments)).all()
    assert [tuple(row) for row in attributions] == [("i1", "checkout", "a", "preceding", 60.0)]


def test_a_classification_of_many_batches_classifies_every_sequence(
    warehouse: sa.Engine,
) -> None:
    """More sequences than one batch holds, so batches are read ahead while others are
    written: each of them v1, v2, v1, whose second deployment failed."""
    count = 2 * SEQUENCES_PER_TRANSACTION + 50
    services = [f"service-{n:03d}" for n in range(count)]
    with warehouse.begin() as connection:
        connection.execute(
            sa.insert(dora_deployments),
            [
                deployment_row(f"{service}-{n}", at(1, 10 + n), service=service, version=version)
                for service in services
                for n, version in enumerate(["v1", "v2", "v1"])
            ],
        )
        sequences.record(connection, [(service, "prod") for service in services])
    report = classify_changed(warehouse, CONFIG.change_failures)
    assert (report.sequences, report.deployments_reclassified) == (count, 2 * count)
    found = classification(warehouse)
    for service in services:
        assert found[f"{service}-0"] == NOT_A_FAILURE_COLUMNS
        assert found[f"{service}-1"] == (
            True,
            "rollback",
            False,
            False,
            "rollback",
            f"{service}-2",
            at(1, 12),
        )
        assert found[f"{service}-2"] == (False, None, True, False, None, None, None)
    with warehouse.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(changed_sequences)).scalar()
            == 0
        )


NOT_A_FAILURE_COLUMNS = (False, None, False, False, None, None, None)


def test_the_asset_graph_builds_the_new_tables_with_figures_to_plot(
    warehouse: sa.Engine, warehouse_url: str, monkeypatch
) -> None:
    monkeypatch.delenv("PAGERDUTY_API_TOKEN", raising=False)
    land_the_sequence(EventStore(warehouse))
    definitions = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        schedules=defs.schedules,
        resources={**defs.resources, "warehouse": WarehouseResource(url=warehouse_url)},
    )
    job = definitions.resolve_job_def("daily_metrics")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[
                dg.AssetKey(key)
                for key in (
                    "event_api_events",
                    "dora_incidents",
                    "dora_deployments",
                    "dora_incident_deployments",
                    CHANGE_FAILURES,
                    RECOVERY,
                )
            ],
            tags={
                "dagster/asset_partition_range_start": "2025-03-01",
                "dagster/asset_partition_range_end": "2025-03-04",
            },
        )
    assert result.success
    by_partition = {
        (event.asset_key.to_user_string(), event.partition): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    assert (
        by_partition[(CHANGE_FAILURES, "2025-03-04")]["org_deployment_change_failure_rate"].value
        == 1.0
    )
    assert by_partition[(RECOVERY, "2025-03-04")]["org_median_recovery_seconds"].value == 9000.0
    assert by_partition[("dora_incident_deployments", None)]["dagster/row_count"].value == 1
    # Freshness looks at today's calendar, not 2025's; every other check passes.
    checks = {
        (check.asset_key.to_user_string(), check.check_name): check.passed
        for check in result.get_asset_check_evaluations()
        if check.check_name != "yesterday_built_by_deadline"
    }
    assert checks[(CHANGE_FAILURES, "reconciles_with_sources")]
    assert checks[(RECOVERY, "reconciles_with_sources")]
    assert all(checks.values())


def test_checks_name_what_detection_cannot_see_and_patches_that_name_no_valid_remedy(
    warehouse: sa.Engine, warehouse_url: str
) -> None:
    events = EventStore(warehouse)
    land_the_sequence(events)
    events.upsert_deployment(
        DeploymentEvent(id="legacy-1", service="legacy", started_at=at(1, 8), finished_at=at(1, 9))
    )
    # A remedy that finished before the failed deployment is not valid.
    events.mark_change_failure("c", True, Remediation("rollback", "a"))
    result = dg.materialize(
        [dora_deployments_asset, change_failure_checks, attribution_checks],
        resources={"warehouse": WarehouseResource(url=warehouse_url)},
    )
    verdicts = {
        check.check_name: (check.passed, check.metadata["offending_rows"].value)
        for check in result.get_asset_check_evaluations()
    }
    assert verdicts == {
        "recovered_not_before_finished": (True, 0),
        "rollback_failures_name_their_rollback": (True, 0),
        "patched_remediations_found": (False, 1),
        "deployments_carry_sha_or_version": (False, 1),
        "attribution_lag_within_window": (True, 0),
    }


def test_checks_name_a_recovery_before_its_failure_and_a_rollback_failure_without_rollback(
    warehouse: sa.Engine, warehouse_url: str
) -> None:
    land_the_sequence(EventStore(warehouse))
    resources = {"warehouse": WarehouseResource(url=warehouse_url)}
    dg.materialize([dora_deployments_asset], resources=resources)
    d = dora_deployments.c
    with warehouse.begin() as connection:
        # b failed (d rolled back to a's v1); what a bug in detection could leave behind:
        connection.execute(
            sa.update(dora_deployments).where(d.deployment_id == "d").values(is_rollback=False)
        )
        connection.execute(
            sa.update(dora_deployments)
            .where(d.deployment_id == "b")
            .values(recovered_at=at(1, 11))  # before b finished
        )
    result = dg.materialize(
        [dora_deployments_asset, change_failure_checks],
        resources=resources,
        selection=dg.AssetSelection.checks(change_failure_checks),
        raise_on_error=False,  # both are blocking checks: the run fails, as it should
    )
    assert not result.success
    verdicts = {
        check.check_name: (check.passed, check.metadata["offending_rows"].value)
        for check in result.get_asset_check_evaluations()
    }
    assert verdicts["recovered_not_before_finished"] == (False, 1)
    assert verdicts["rollback_failures_name_their_rollback"] == (False, 1)
