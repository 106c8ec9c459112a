"""Incremental refresh: normalized tables maintained by change, the changed-days record,
and metric tables that always equal a full recomputation.

Every test runs on SQLite and PostgreSQL. A hand-computed sequence pins down which
metric days each kind of change marks; a property-based test applies random sequences
of changes interleaved with refresh, sensor/rebuild and audit, and checks the end state
against a recomputation from scratch.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from incremental_support import (
    METRICS,
    audit_all,
    build_days,
    classification_snapshot,
    classify_from_scratch,
    clear_warehouse,
    deliver_webhook,
    metric_rows,
    normalized_rows,
    pull_incident,
    rebuild_changed,
    recomputed_metric_rows,
    recomputed_normalized,
    refresh_all,
)

from connectors.config import DoraConfig
from connectors.events.schemas import DeploymentEvent, FailureEvent, Remediation
from connectors.events.store import EventStore
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_change_failures_daily,
    dora_deployments,
    dora_incidents,
    dora_time_to_restore_daily,
)
from dora_assets.resources import WarehouseResource

CFR, TTR = dora_change_failure_rate_daily.name, dora_time_to_restore_daily.name
CHANGE_FAILURES = dora_change_failures_daily.name


def deployed_on(*days: dt.date) -> set[tuple[str, dt.date]]:
    """The metric days a deployment counts under: both change failure rates'."""
    return {(metric, day) for day in days for metric in (CFR, CHANGE_FAILURES)}


FIRST_DAY = dt.date(2025, 3, 1)
DAYS = {FIRST_DAY + dt.timedelta(days=n) for n in range(6)}
CATALOGS = (
    DoraConfig(service_teams={"checkout": "payments", "search": "discovery"}),
    DoraConfig(service_teams={"checkout": "growth", "billing": "payments"}),
)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A moment on 2025-03-`day` (UTC, naive as stored)."""
    return dt.datetime(2025, 3, day, hour, minute)


def day(number: int) -> dt.date:
    return dt.date(2025, 3, number)


@pytest.fixture
def warehouse_resource(warehouse: sa.Engine, warehouse_url: str) -> Iterator[WarehouseResource]:
    resource = WarehouseResource(url=warehouse_url)
    yield resource
    resource.engine.dispose()


def deployment(identifier: str, finished: dt.datetime, **attributes: str) -> DeploymentEvent:
    return DeploymentEvent(
        id=identifier,
        service=attributes.pop("service", "checkout"),
        env=attributes.pop("env", "prod"),
        started_at=finished - dt.timedelta(minutes=10),
        finished_at=finished,
        **attributes,
    )


# --- each kind of change marks exactly its days ---------------------------------------


def test_each_change_marks_the_metric_days_it_touches_before_and_after(
    warehouse: sa.Engine, warehouse_resource: WarehouseResource
) -> None:
    events = EventStore(warehouse)
    catalog = CATALOGS[0]

    def changes() -> tuple[set, tuple[int, int, int]]:
        deployments, incidents = refresh_all(warehouse, catalog)
        counts = [
            deployments.inserted + incidents.inserted,
            deployments.updated + incidents.updated,
            deployments.deleted + incidents.deleted,
        ]
        return deployments.metric_days | incidents.metric_days, tuple(counts)

    events.upsert_deployment(deployment("d1", at(1, 10)))
    assert changes() == (deployed_on(day(1)), (1, 0, 0))
    # Re-sent unchanged (a retry): landing is rewritten, the normalized row is not.
    events.upsert_deployment(deployment("d1", at(1, 10)))
    assert changes() == (set(), (0, 0, 0))
    # Moved to another day: both days.
    events.upsert_deployment(deployment("d1", at(3, 0)))
    assert changes() == (deployed_on(day(1), day(3)), (0, 1, 0))
    # A failure naming two services, open: its start day, one row per service.
    failure = FailureEvent(id="f1", services=("checkout", "search"), started_at=at(2, 9))
    events.upsert_failure(failure)
    assert changes() == ({(CFR, day(2))}, (2, 0, 0))
    # Resolved days later: the resolution day only (its start day's counts are unchanged).
    resolved = FailureEvent(
        id="f1", services=("checkout", "search"), started_at=at(2, 9), finished_at=at(4, 1)
    )
    events.upsert_failure(resolved)
    assert changes() == ({(TTR, day(4))}, (0, 2, 0))
    # Reopened: the resolution day again.
    events.upsert_failure(failure)
    assert changes() == ({(TTR, day(4))}, (0, 2, 0))
    # Retracted: the day it counted under.
    events.delete_deployment("d1")
    assert changes() == (deployed_on(day(3)), (0, 0, 1))
    # A catalog edit re-teams only the rows that took their team from it.
    events.upsert_failure(
        FailureEvent(id="f2", services=("search",), team="own", started_at=at(5, 1))
    )
    assert changes() == ({(CFR, day(5))}, (1, 0, 0))
    catalog = CATALOGS[1]
    assert changes() == (
        {(CFR, day(2))},
        (0, 2, 0),
    )  # f1 checkout: payments -> growth; search: discovery -> ''
    # A PagerDuty incident pulled open, then resolved late; then the same via a webhook.
    pull_incident(warehouse, "P1", at(2, 12), None)
    assert changes() == ({(CFR, day(2))}, (1, 0, 0))
    pull_incident(warehouse, "P1", at(2, 12), at(5, 3))
    assert changes() == ({(TTR, day(5))}, (0, 1, 0))
    deliver_webhook(warehouse, "w1", "P2", "incident.triggered", at(3, 8), at(3, 8))
    assert changes() == ({(CFR, day(3))}, (1, 0, 0))
    deliver_webhook(warehouse, "w2", "P2", "incident.resolved", at(3, 8), at(3, 9))
    assert changes() == ({(TTR, day(3))}, (0, 1, 0))
    # Nothing new: nothing read from the feeds is written, nothing is marked.
    assert changes() == (set(), (0, 0, 0))


def test_sensor_rebuild_clears_the_record_and_the_audit_repairs_what_it_missed(
    warehouse: sa.Engine, warehouse_resource: WarehouseResource
) -> None:
    build_days(warehouse_resource, DAYS)
    events = EventStore(warehouse)
    events.upsert_deployment(deployment("d1", at(2, 10), team="payments"))
    refresh_all(warehouse, DoraConfig())
    assert rebuild_changed(warehouse_resource, DAYS)[CFR] == {day(2)}
    assert rebuild_changed(warehouse_resource, DAYS)[CFR] == set()  # cleared by the rebuild
    assert metric_rows(warehouse, dora_change_failure_rate_daily) == [
        (day(2), "checkout", "payments", "prod", 1, 0, 0.0)
    ]
    # A change the record never heard of (written behind the refresh's back): the sensor
    # cannot see it; the audit finds and rebuilds exactly that day.
    with warehouse.begin() as connection:
        connection.execute(sa.update(dora_deployments).values(env="staging"))
    assert rebuild_changed(warehouse_resource, DAYS)[CFR] == set()
    # Both change failure rates count deployments by env; the durations do not move.
    assert audit_all(warehouse_resource, DAYS) == {
        table.name: [day(2)] if table.name in (CFR, CHANGE_FAILURES) else [] for table in METRICS
    }
    assert metric_rows(warehouse, dora_change_failure_rate_daily) == [
        (day(2), "checkout", "payments", "staging", 1, 0, 0.0)
    ]
    assert audit_all(warehouse_resource, DAYS) == {table.name: [] for table in METRICS}


# --- property: any sequence of changes ends equal to a full recomputation ---------------

DEPLOYMENT_IDS = ("d1", "d2", "d3", "d4")
FAILURE_IDS = ("f1", "f2", "f3")
SERVICES = ("checkout", "search", "billing")
moment = st.builds(at, st.integers(1, 6), st.integers(0, 23), st.sampled_from([0, 59]))

deploy = st.tuples(
    st.just("deploy"),
    st.sampled_from(DEPLOYMENT_IDS),
    st.sampled_from(SERVICES),
    st.sampled_from(["", "own"]),
    st.sampled_from(["prod", "staging"]),
    moment,
    st.sampled_from(["v1", "v2", "v2-hotfix", None]),
)
fail = st.tuples(
    st.just("fail"),
    st.sampled_from(FAILURE_IDS),
    st.lists(st.sampled_from(SERVICES), min_size=1, max_size=3, unique=True),
    st.sampled_from(["", "own"]),
    st.sampled_from(["prod", ""]),
    moment,
    st.one_of(st.none(), st.integers(1, 3_000)),  # open, or resolved after N minutes
)
patch = st.tuples(
    st.just("patch"),
    st.sampled_from(DEPLOYMENT_IDS),
    st.booleans(),
    st.one_of(st.none(), st.sampled_from(DEPLOYMENT_IDS)),
)
retract = st.tuples(st.just("retract"), st.sampled_from(DEPLOYMENT_IDS + FAILURE_IDS))
pull = st.tuples(
    st.just("pull"),
    st.sampled_from(["P1", "P2"]),
    moment,
    st.one_of(st.none(), st.integers(1, 3_000)),
)
webhook = st.tuples(
    st.just("webhook"),
    st.sampled_from(["P2", "P3"]),
    st.sampled_from(["incident.triggered", "incident.resolved", "incident.reopened"]),
    st.integers(0, 3_000),
)
control = st.tuples(st.sampled_from(["catalog", "refresh", "rebuild", "audit"]))
step = st.one_of(deploy, fail, retract, pull, webhook, patch, control)


def percentile(values: list[float], percent: int) -> float:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * percent / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Reference:
    """What the metric tables must hold, computed in plain Python from the events sent:
    a reference independent of the product's normalization and SQL."""

    def __init__(self) -> None:
        self.deployments: dict[str, tuple[str, str, str, dt.datetime]] = {}
        self.failures: dict[str, tuple[tuple[str, ...], str, str, dt.datetime, dt.datetime | None]]
        self.failures = {}
        self.pulled: dict[str, tuple[dt.datetime, dt.datetime | None]] = {}
        self.webhooks: dict[str, list[tuple[dt.datetime, str, str]]] = {}

    def webhook_state(self, events: list[tuple[dt.datetime, str, str]]):
        status, resolved_at = "open", None
        for occurred, _, event_type in sorted(events):
            status = "resolved" if event_type == "incident.resolved" else "open"
            resolved_at = occurred if status == "resolved" else resolved_at
        return at(2, 6), resolved_at if status == "resolved" else None

    def incidents(self, catalog: dict[str, str]):
        """(started, finished, service, team, env) per incident row (PagerDuty's default
        env is prod)."""
        for services, team, env, started, finished in self.failures.values():
            for service in services:
                yield started, finished, service, team or catalog.get(service, ""), env
        for started, finished in self.pulled.values():
            yield started, finished, "Checkout API", catalog.get("Checkout API", "SRE"), "prod"
        for identifier, events in self.webhooks.items():
            if identifier not in self.pulled:
                started, finished = self.webhook_state(events)
                yield started, finished, "search", catalog.get("search", "Discovery"), "prod"

    def metric_rows(self, catalog: dict[str, str]) -> dict[str, list[tuple]]:
        counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        restores: dict[tuple, list[float]] = defaultdict(list)
        for service, team, env, finished in self.deployments.values():
            key = (finished.date(), service, team or catalog.get(service, ""), env)
            counts[key][0] += 1
        for started, finished, service, team, env in self.incidents(catalog):
            counts[(started.date(), service, team, env)][1] += 1
            if finished is not None:
                seconds = (finished - started).total_seconds()
                restores[(finished.date(), service, team, env)].append(seconds)
        change_failure = [
            (*key, deployments, failures, failures / deployments if deployments else None)
            for key, (deployments, failures) in counts.items()
        ]
        restore = [
            (
                *key,
                len(values),
                sum(values),
                sum(values) / len(values),
                percentile(values, 50),
                percentile(values, 90),
                max(values),
            )
            for key, values in restores.items()
        ]
        return {
            CFR: sorted((row for row in change_failure if row[0] in DAYS), key=repr),
            TTR: sorted(
                (
                    tuple(round(v, 3) if isinstance(v, float) else v for v in row)
                    for row in restore
                    if row[0] in DAYS
                ),
                key=repr,
            ),
        }


class Scenario:
    """Applies generated steps to a warehouse through the product's own write paths, and
    to the reference."""

    def __init__(self, warehouse: sa.Engine, resource: WarehouseResource) -> None:
        self.warehouse, self.resource = warehouse, resource
        self.events = EventStore(warehouse)
        self.reference = Reference()
        self.catalog_index = 0
        self.deliveries = 0

    @property
    def config(self) -> DoraConfig:
        return CATALOGS[self.catalog_index]

    def apply(self, step: tuple) -> None:
        kind, *arguments = step
        getattr(self, kind)(*arguments)

    def deploy(self, identifier, service, team, env, finished, version) -> None:
        self.events.upsert_deployment(
            deployment(identifier, finished, service=service, team=team, env=env, version=version)
        )
        self.reference.deployments[identifier] = (service, team, env, finished)

    def fail(self, identifier, services, team, env, started, minutes) -> None:
        finished = started + dt.timedelta(minutes=minutes) if minutes else None
        event = FailureEvent(
            id=identifier,
            services=tuple(services),
            team=team,
            env=env,
            started_at=started,
            finished_at=finished,
        )
        self.events.upsert_failure(event)
        self.reference.failures[identifier] = (event.services, team, env, started, finished)

    def patch(self, identifier: str, failed: bool, remedy: str | None) -> None:
        remediation = Remediation("rollback", remedy) if failed and remedy else None
        self.events.mark_change_failure(identifier, failed, remediation)

    def retract(self, identifier: str) -> None:
        if identifier in DEPLOYMENT_IDS:
            self.events.delete_deployment(identifier)
            self.reference.deployments.pop(identifier, None)
        else:
            self.events.delete_failure(identifier)
            self.reference.failures.pop(identifier, None)

    def pull(self, identifier: str, created: dt.datetime, minutes: int | None) -> None:
        resolved = created + dt.timedelta(minutes=minutes) if minutes else None
        pull_incident(self.warehouse, identifier, created, resolved)
        self.reference.pulled[identifier] = (created, resolved)

    def webhook(self, identifier: str, event_type: str, minutes: int) -> None:
        self.deliveries += 1
        created = at(2, 6)
        occurred = created + dt.timedelta(minutes=minutes)
        webhook_id = f"w{self.deliveries:03d}"
        deliver_webhook(self.warehouse, webhook_id, identifier, event_type, created, occurred)
        self.reference.webhooks.setdefault(identifier, []).append(
            (occurred, webhook_id, event_type)
        )

    def catalog(self) -> None:
        self.catalog_index = 1 - self.catalog_index

    def refresh(self) -> None:
        refresh_all(self.warehouse, self.config)

    def rebuild(self) -> None:
        rebuild_changed(self.resource, DAYS)

    def audit(self) -> None:
        audit_all(self.resource, DAYS)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, max_size=30))
def test_any_sequence_of_changes_ends_equal_to_a_full_recomputation(
    warehouse: sa.Engine, warehouse_resource: WarehouseResource, steps: list[tuple]
) -> None:
    clear_warehouse(warehouse)
    build_days(warehouse_resource, DAYS)
    scenario = Scenario(warehouse, warehouse_resource)
    for generated in steps:
        scenario.apply(generated)
    scenario.refresh()
    scenario.rebuild()

    reference = scenario.reference.metric_rows(scenario.config.service_teams)
    assert metric_rows(warehouse, dora_change_failure_rate_daily) == reference[CFR]
    assert metric_rows(warehouse, dora_time_to_restore_daily) == reference[TTR]
    expected = recomputed_normalized(warehouse, scenario.config)
    for table in (dora_deployments, dora_incidents):
        assert normalized_rows(warehouse, table) == expected[table.name]
    for table in METRICS:
        assert metric_rows(warehouse, table) == recomputed_metric_rows(warehouse, table, DAYS)
    # Everything rebuilt: the record is empty, and the audit finds nothing to repair.
    assert rebuild_changed(warehouse_resource, DAYS) == {table.name: set() for table in METRICS}
    assert audit_all(warehouse_resource, DAYS) == {table.name: [] for table in METRICS}
    # Classifying only the sequences that changed gave what classifying all of them gives.
    incremental = classification_snapshot(warehouse)
    classify_from_scratch(warehouse, scenario.config)
    assert classification_snapshot(warehouse) == incremental
