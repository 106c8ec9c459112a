"""Classifying the sequences that changed, and writing only what the classification changes.

Entries of the changed-sequences record are taken a batch at a time. Each sequence's
deployments, incidents and attributions are read and classified (`classify`) in a
read-only transaction, which on SQLite takes no lock; then one short write transaction
writes the classification columns of `dora_deployments` and the rows of
`dora_incident_deployments` that differ, records the metric days they touch and removes
the batch's entries. An entry bumped by a change committed in between stays, so that
sequence is classified again by the next run, from what that change left. A change to
the `change_failures` rules enters every sequence once.

The next batch is read and classified in a second thread while one is written: the
writes are single statements (`bulk.execute_with_rows`), which the driver runs without the GIL, so
the database's write work (about a third of a first classification) overlaps the
reading and the rules. Batches hold disjoint sequences, so one never reads what another
writes; the one row two can share, an attribution of an incident in another env of the
service to a deployment that no longer exists, is deleted only while it still names
that deployment.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from connectors.config import ChangeFailureSettings
from connectors.gc_pause import gc_paused
from connectors.warehouse import WriteTurns, reading
from connectors.warehouse.bulk import converter, driver_rows, execute_with_rows, fetch
from connectors.warehouse.schema import (
    changed_sequences,
    dora_deployments,
    dora_incident_deployments,
    dora_incidents,
)
from connectors.warehouse.upsert import upsert
from connectors.warehouse.watermarks import lock_state, save_state
from dora_assets import changed_days
from dora_assets.change_failures import sequences
from dora_assets.change_failures.classify import (
    NOT_A_FAILURE,
    Attribution,
    Classification,
    Deployment,
    Incident,
    Patch,
    Rules,
    classify_sequence,
)

# A batch takes sequences until it has this many rows to write (or this many sequences),
# so its write transaction stays short (0.3 s, at most 0.45 s, classifying all 1M
# deployments of `bench/change_failures.py`) whatever the history.
SEQUENCES_PER_TRANSACTION = 200
WRITES_PER_TRANSACTION = 10_000
RULES_STATE = "change_failures.rules"
deployment, incident, attributed = dora_deployments.c, dora_incidents.c, dora_incident_deployments.c


@dataclass
class Classified:
    """What a run changed."""

    sequences: int = 0
    deployments_reclassified: int = 0
    attributions_written: int = 0
    attributions_deleted: int = 0
    metric_days: set[changed_days.MetricDay] = field(default_factory=set)


def rules_from(settings: ChangeFailureSettings) -> Rules:
    return Rules(
        rollforward_versions=tuple(re.compile(p) for p in settings.rollforward_versions),
        rollforward_tags=tuple(re.compile(p) for p in settings.rollforward_custom_tags),
        incidents_mark_deployments=settings.incidents_mark_deployments,
        attribution_window=dt.timedelta(hours=settings.attribution_window_hours),
    )


def _patch(document: str | None) -> Patch | None:
    if document is None:
        return None
    patch = json.loads(document)
    by_version = patch["remediation_by"] == "version"
    return Patch(
        change_failure=patch["change_failure"],
        remediation_type=patch["remediation_type"],
        remediation_id=None if by_version else patch["remediation_ref"],
        remediation_version=patch["remediation_ref"] if by_version else None,
    )


COLUMNS = (*Classification._fields, "recovered_day")
# A deployment whose stored classification is not `NOT_A_FAILURE`. Most are not: reading
# their eight columns only where they hold something saves a third of the read.
CLASSIFIED = sa.or_(
    *(deployment[name] for name in COLUMNS if isinstance(deployment[name].type, sa.Boolean)),
    *(
        deployment[name].is_not(None)
        for name in COLUMNS
        if not isinstance(deployment[name].type, sa.Boolean)
    ),
)
IN_SEQUENCE = (deployment.service == sa.bindparam("service"), deployment.env == sa.bindparam("env"))
INCIDENTS_IN_SEQUENCE = (
    incident.service == sa.bindparam("service"),
    incident.env == sa.bindparam("env"),
)
# What classification reads, then the team `days_touched` needs and whether the row holds
# a classification, as the driver returns them (thousands per sequence: a `Row` each cost
# more than classifying). In index order, which is the order they were written in: close
# to sequence order, so `classify_sequence`'s sort costs less than an ORDER BY here
# (~1.5 s at 1M).
SEQUENCE = sa.select(
    deployment.deployment_id,
    deployment.started_at,
    deployment.finished_at,
    deployment.commit_sha,
    deployment.version,
    # NULL for the usual no tags: no string to make, compare and free per deployment.
    sa.func.nullif(deployment.custom_tags, "[]"),
    deployment.change_failure_patch,
    deployment.team,
    CLASSIFIED,
).where(*IN_SEQUENCE)
STORED = sa.select(deployment.deployment_id, *(deployment[name] for name in COLUMNS)).where(
    *IN_SEQUENCE, CLASSIFIED
)
# The attributions a sequence owns: those of its incidents, to its deployments, or to
# deployments that no longer exist. NOT EXISTS, not NOT IN: PostgreSQL plans NOT IN over
# a large subquery as a scan per row.
HELD_ATTRIBUTIONS = sa.select(*(attributed[name] for name in Attribution._fields)).where(
    attributed.service == sa.bindparam("service"),
    sa.or_(
        attributed.incident_id.in_(sa.select(incident.incident_id).where(*INCIDENTS_IN_SEQUENCE)),
        attributed.deployment_id.in_(sa.select(deployment.deployment_id).where(*IN_SEQUENCE)),
        ~sa.exists().where(deployment.deployment_id == attributed.deployment_id),
    ),
)
SEQUENCE_INCIDENTS = sa.select(
    incident.incident_id,
    incident.service,
    incident.started_at,
    incident.finished_at,
    incident.commit_sha,
    incident.version,
).where(*INCIDENTS_IN_SEQUENCE)


def _values(classification: Classification) -> tuple[Any, ...]:
    """`COLUMNS` in order."""
    recovered = classification.recovered_at
    return (*classification, recovered.date() if recovered else None)


NOT_A_FAILURE_VALUES = _values(NOT_A_FAILURE)
# A reclassified deployment, before and after: what `days_touched` reads, then `COLUMNS`.
CHANGE = ("deployment_id", "service", "env", "team", "finished_day", "finished_at", *COLUMNS)
# The rows of the classification's UPDATE, of the attributions it writes, and of those
# it deletes (its key and the deployment it named when read).
RECLASSIFIED = {name: deployment[name].type for name in ("deployment_id", *COLUMNS)}
ATTRIBUTIONS = {name: attributed[name].type for name in Attribution._fields}
GONE = {name: attributed[name].type for name in ("incident_id", "service", "deployment_id")}
RECLASSIFIED_VALUES = operator.itemgetter(*RECLASSIFIED)


@dataclass
class _Plan:
    """What classifying one sequence changes: (before, after) classification columns of
    the deployments that differ, and the attributions to delete and to write."""

    reclassified: list[tuple[dict[str, Any], dict[str, Any]]]
    attributions_gone: list[tuple[str, str, str]]
    attributions_changed: list[Attribution]

    @property
    def writes(self) -> int:
        return len(self.reclassified) + len(self.attributions_gone) + len(self.attributions_changed)


def _plan(connection: sa.Connection, service: str, env: str, rules: Rules) -> _Plan:
    """Classify one sequence and compare with what is stored."""
    sequence = {"service": service, "env": env}
    rows = driver_rows(connection, SEQUENCE, sequence)
    started_at, finished_at = (
        converter(column, connection.dialect)
        for column in (deployment.started_at, deployment.finished_at)
    )
    deployments = [
        Deployment(
            identity,
            started_at(started),
            finished_at(finished),
            commit_sha,
            version,
            () if tags is None else tuple(json.loads(tags)),
            None if patch is None else _patch(patch),
        )
        for identity, started, finished, commit_sha, version, tags, patch, _, _ in rows
    ]
    # A sequence never classified (all of them, the first time) has nothing to read back.
    stored = (
        {row[0]: row[1:] for row in fetch(connection, STORED, sequence)}
        if any(row[8] for row in rows)
        else {}
    )
    incidents = [Incident(*row) for row in fetch(connection, SEQUENCE_INCIDENTS, sequence)]
    classified, attributions = classify_sequence(deployments, incidents, rules)
    reclassified = []
    for found, row in zip(deployments, rows, strict=True):
        identity = found.deployment_id
        # Most deployments were and stay `NOT_A_FAILURE`.
        if identity not in classified and identity not in stored:
            continue
        held = stored.get(identity, NOT_A_FAILURE_VALUES)
        wanted = _values(classified[identity]) if identity in classified else NOT_A_FAILURE_VALUES
        if held != wanted:
            kept = (identity, service, env, row[7], found.finished_at.date(), found.finished_at)
            reclassified.append(
                (
                    dict(zip(CHANGE, (*kept, *held), strict=True)),
                    dict(zip(CHANGE, (*kept, *wanted), strict=True)),
                )
            )
    # Both as `Attribution` fields in order, so a row and an attribution compare as tuples.
    held = {(row[0], row[1]): row for row in fetch(connection, HELD_ATTRIBUTIONS, sequence)}
    wanted = {(a.incident_id, a.service): a for a in attributions}
    return _Plan(
        reclassified,
        [row[: len(GONE)] for key, row in held.items() if key not in wanted],
        [a for key, a in wanted.items() if held.get(key) != a],
    )


def _write(connection: sa.Connection, plans: list[_Plan], report: Classified) -> None:
    """Write what `plans` change, and record the metric days it touches."""
    pairs = [pair for plan in plans for pair in plan.reclassified]
    gone = [key for plan in plans for key in plan.attributions_gone]
    changed = [row for plan in plans for row in plan.attributions_changed]
    if pairs:
        execute_with_rows(
            connection,
            lambda rows: (
                sa.update(dora_deployments)
                .where(deployment.deployment_id == rows.c.deployment_id)
                .values({name: rows.c[name] for name in COLUMNS})
            ),
            RECLASSIFIED,
            [RECLASSIFIED_VALUES(after) for _, after in pairs],
        )
    if gone:
        execute_with_rows(
            connection,
            lambda rows: sa.delete(dora_incident_deployments).where(
                sa.tuple_(*(attributed[name] for name in GONE)).in_(sa.select(rows))
            ),
            GONE,
            gone,
        )
    if changed:
        execute_with_rows(
            connection,
            lambda rows: upsert(
                dora_incident_deployments, connection.dialect, rows=sa.select(rows)
            ),
            ATTRIBUTIONS,
            changed,
        )
    touched = changed_days.days_touched(dora_deployments, pairs)
    changed_days.record(connection, touched)
    report.metric_days |= touched
    report.deployments_reclassified += len(pairs)
    report.attributions_deleted += len(gone)
    report.attributions_written += len(changed)


def _enter_all_when_rules_changed(engine: sa.Engine, settings: ChangeFailureSettings) -> None:
    document = json.dumps(asdict(settings), sort_keys=True)
    with engine.begin() as connection:
        if lock_state(connection, RULES_STATE) == document:
            return
        every = connection.execute(sa.select(deployment.service, deployment.env).distinct())
        sequences.record(connection, [tuple(row) for row in every])
        save_state(connection, RULES_STATE, document)


@gc_paused()
def classify_changed(
    engine: sa.Engine,
    settings: ChangeFailureSettings,
    on_progress: Callable[[str], None] | None = None,
) -> Classified:
    """Classify every sequence in the changed-sequences record, then empty it."""
    _enter_all_when_rules_changed(engine, settings)
    rules = rules_from(settings)
    report = Classified()
    turns = WriteTurns(engine)
    for batch, plans in _read_ahead(_planned(engine, rules)):
        with turns.begin() as connection:
            _write(connection, plans, report)
            # An entry bumped by a change committed since it was read stays for the next run.
            connection.execute(
                sa.delete(changed_sequences).where(
                    changed_sequences.c.service == sa.bindparam("entry_service"),
                    changed_sequences.c.env == sa.bindparam("entry_env"),
                    changed_sequences.c.changed_at == sa.bindparam("entry_changed_at"),
                ),
                [
                    {"entry_service": s, "entry_env": e, "entry_changed_at": at}
                    for s, e, at in batch
                ],
            )
        report.sequences += len(batch)
        if on_progress:
            on_progress(f"classified {report.sequences:,} changed (service, env) sequences")
    return report


Batch = tuple[list[sa.Row[Any]], list[_Plan]]


def _planned(engine: sa.Engine, rules: Rules) -> Iterator[Batch]:
    """The entries of the changed-sequences record, a batch at a time, each with the plans
    of its sequences."""
    after: tuple[str, str] | None = None
    while True:
        with reading(engine) as connection:
            position = sa.tuple_(changed_sequences.c.service, changed_sequences.c.env)
            entries = connection.execute(
                sa.select(changed_sequences)
                .where(position > sa.tuple_(*after) if after else sa.true())
                .order_by(changed_sequences.c.service, changed_sequences.c.env)
                .limit(SEQUENCES_PER_TRANSACTION)
            ).all()
            if not entries:
                return
            plans: list[_Plan] = []
            writes = 0
            for entry in entries:
                plans.append(_plan(connection, entry.service, entry.env, rules))
                writes += plans[-1].writes
                if writes >= WRITES_PER_TRANSACTION:
                    break
        batch = entries[: len(plans)]
        yield batch, plans
        after = (batch[-1][0], batch[-1][1])


def _read_ahead(batches: Iterator[Batch]) -> Iterator[Batch]:
    """`batches`, each produced in a second thread while the caller handles the one before."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify") as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield batch
