"""Freshness: the policies on every asset, the checks at frozen times, and their sensor.

Dagster's clock is frozen with `dagster._core.test_utils.freeze_time`; materializations
recorded under it carry the frozen time, so each check can be shown passing and then
failing as the clock moves on.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from dora_assets import freshness
from dora_assets.definitions import defs
from dora_assets.resources import WarehouseResource

UTC = dt.UTC
CHANGE_FAILURE_RATE, TIME_TO_RESTORE, *_ = freshness.METRIC_KEYS
# Everything but PagerDuty, which needs a token and a server.
SOURCES = [dg.AssetKey("event_api_events"), *freshness.NORMALIZED_KEYS]


def at(day: str, clock: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=UTC)


@pytest.fixture
def resources(sqlite_url: str) -> dict[str, object]:
    return {**defs.resources, "warehouse": WarehouseResource(url=sqlite_url)}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def materialize(instance, resources, when: dt.datetime, keys, partition: str | None = None) -> None:
    with freeze_time(when):
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=dg.AssetSelection.assets(*keys),
            partition_key=partition,
            instance=instance,
            resources=resources,
        )
    assert result.success


def evaluate(instance, resources, when: dt.datetime, checks) -> dict[tuple[str, str], bool]:
    """Run `checks` at `when`; (asset, check name) -> passed."""
    with freeze_time(when):
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=dg.AssetSelection.checks(*checks),
            instance=instance,
            resources=resources,
        )
    return {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }


def test_every_asset_has_the_freshness_policy_of_its_group() -> None:
    policies = {spec.key: spec.freshness_policy for spec in defs.resolve_all_asset_specs()}
    assert set(policies) == {
        *freshness.INGEST_KEYS,
        *freshness.NORMALIZED_KEYS,
        *freshness.METRIC_KEYS,
        *freshness.REPORT_KEYS,
    }
    for key in [*freshness.INGEST_KEYS, *freshness.NORMALIZED_KEYS]:
        assert policies[key] == dg.FreshnessPolicy.time_window(
            fail_window=dt.timedelta(hours=1), warn_window=dt.timedelta(minutes=30)
        )
    for key in [*freshness.METRIC_KEYS, *freshness.REPORT_KEYS]:
        assert policies[key] == dg.FreshnessPolicy.cron(
            deadline_cron="0 2 * * *", lower_bound_delta=dt.timedelta(hours=2), timezone="UTC"
        )


def test_an_asset_outside_the_known_groups_is_refused() -> None:
    with pytest.raises(ValueError, match=r"group 'scratch'.*POLICY_BY_GROUP"):
        freshness.attach_freshness_policy(dg.AssetSpec("stray", group_name="scratch"))


@pytest.mark.parametrize(
    ("now", "deadline", "partition"),
    [
        (at("2025-03-10", "02:00:00"), at("2025-03-10", "02:00:00"), "2025-03-09"),
        (at("2025-03-10", "01:59:59"), at("2025-03-09", "02:00:00"), "2025-03-08"),
        (at("2025-03-10", "23:59:59"), at("2025-03-10", "02:00:00"), "2025-03-09"),
        (at("2025-01-01", "00:00:00"), at("2024-12-31", "02:00:00"), "2024-12-30"),
    ],
)
def test_the_partition_due_is_the_day_before_the_last_deadline(now, deadline, partition) -> None:
    assert freshness.metrics_deadline_passed_at(now) == deadline
    assert freshness.partition_due_by(deadline) == partition


def test_yesterday_partition_check_passes_when_built_after_the_day_then_fails_next_day(
    instance, resources
) -> None:
    checks = [freshness.yesterday_built_by_deadline]
    name = "yesterday_built_by_deadline"
    # The 01:00 run of 10 March builds 9 March.
    materialize(
        instance, resources, at("2025-03-10", "01:05:00"), freshness.METRIC_KEYS, "2025-03-09"
    )

    # Before 02:00 the due partition is still 8 March, never built: overdue.
    assert evaluate(instance, resources, at("2025-03-10", "01:30:00"), checks) == {
        ("dora_change_failure_rate_daily", name): False,
        ("dora_time_to_restore_daily", name): False,
        ("dora_change_failures_daily", name): False,
        ("dora_failed_deployment_recovery_daily", name): False,
        ("dora_change_lead_time_daily", name): False,
    }
    assert evaluate(instance, resources, at("2025-03-10", "02:30:00"), checks) == {
        ("dora_change_failure_rate_daily", name): True,
        ("dora_time_to_restore_daily", name): True,
        ("dora_change_failures_daily", name): True,
        ("dora_failed_deployment_recovery_daily", name): True,
        ("dora_change_lead_time_daily", name): True,
    }
    # 10 March was only built mid-day, from partial data; by 02:00 on 11 March that is late.
    materialize(
        instance, resources, at("2025-03-10", "15:00:00"), [CHANGE_FAILURE_RATE], "2025-03-10"
    )
    assert evaluate(instance, resources, at("2025-03-11", "02:00:01"), checks) == {
        ("dora_change_failure_rate_daily", name): False,
        ("dora_time_to_restore_daily", name): False,
        ("dora_change_failures_daily", name): False,
        ("dora_failed_deployment_recovery_daily", name): False,
        ("dora_change_lead_time_daily", name): False,
    }
    # Rebuilt after midnight (late, at 03:00): fresh again.
    materialize(
        instance, resources, at("2025-03-11", "03:00:00"), [CHANGE_FAILURE_RATE], "2025-03-10"
    )
    assert evaluate(instance, resources, at("2025-03-11", "03:01:00"), checks) == {
        ("dora_change_failure_rate_daily", name): True,
        ("dora_time_to_restore_daily", name): False,
        ("dora_change_failures_daily", name): False,
        ("dora_failed_deployment_recovery_daily", name): False,
        ("dora_change_lead_time_daily", name): False,
    }


def test_last_update_checks_pass_within_the_hour_and_fail_after(instance, resources) -> None:
    checks = freshness.recently_updated_checks
    materialize(instance, resources, at("2025-03-10", "09:00:00"), SOURCES)

    within = evaluate(instance, resources, at("2025-03-10", "09:59:00"), checks)
    assert within == {
        ("pagerduty_incidents", "freshness_check"): False,  # never materialized
        ("event_api_events", "freshness_check"): True,
        ("dora_deployments", "freshness_check"): True,
        ("dora_incidents", "freshness_check"): True,
        ("dora_incident_deployments", "freshness_check"): True,
        ("git_commits", "freshness_check"): False,  # never materialized
        ("dora_deployment_commits", "freshness_check"): True,
    }
    after = evaluate(instance, resources, at("2025-03-10", "10:00:01"), checks)
    assert after == {key: False for key in within}


def test_sensor_runs_checks_that_never_ran_then_only_those_that_can_be_overdue_again(
    instance, resources
) -> None:
    sensor = defs.resolve_sensor_def("freshness_checks_sensor")
    all_checks = {spec.key for checks in freshness.freshness_checks for spec in checks.check_specs}

    def requested(when: dt.datetime) -> set[dg.AssetCheckKey]:
        with freeze_time(when):
            context = dg.build_sensor_context(instance=instance, definitions=defs)
            result = sensor.evaluate_tick(context)
        return {key for request in result.run_requests for key in request.asset_check_keys}

    assert requested(at("2025-03-10", "09:00:00")) == all_checks

    materialize(
        instance, resources, at("2025-03-10", "01:05:00"), freshness.METRIC_KEYS, "2025-03-09"
    )
    materialize(instance, resources, at("2025-03-10", "09:00:00"), SOURCES)
    evaluate(instance, resources, at("2025-03-10", "09:10:00"), freshness.freshness_checks)

    # The passing ones stay fresh until 10:00 (sources) and 02:00 tomorrow (metrics); the
    # failing one (PagerDuty never materialized) waits for a materialization.
    assert requested(at("2025-03-10", "09:30:00")) == set()
    sources_checks = {dg.AssetCheckKey(key, "freshness_check") for key in SOURCES}
    assert requested(at("2025-03-10", "10:00:01")) == sources_checks
    metric_checks = {
        dg.AssetCheckKey(key, "yesterday_built_by_deadline") for key in freshness.METRIC_KEYS
    }
    assert requested(at("2025-03-11", "02:00:01")) == sources_checks | metric_checks
