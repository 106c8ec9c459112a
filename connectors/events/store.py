"""The landing store of API events: `api_deployments`, `api_failures`, `api_failure_services`.

Every change (insert, upsert, retraction, change-failure mark) sets `updated_at`,
which incremental readers downstream use as their watermark. A retraction is a
soft delete (`deleted_at`), so readers see it; reads treat a deleted event as
absent, and posting the same id again revives it.

Writes are values (`Write`), so the group-commit writer can apply many of them, in
arrival order, in one transaction (`write_batch`); neighbouring writes of the same
kind share their statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from connectors.events.identity import deployment_id, failure_id
from connectors.events.schemas import ChangeFailure, DeploymentEvent, FailureEvent, Remediation
from connectors.timestamps import utcnow
from connectors.warehouse.schema import api_deployments, api_failure_services, api_failures

_KEY_CHUNK = 500  # ids per IN (...) list, far below every database's parameter limit

# Set by the event itself; the change-failure mark and first receipt survive a re-POST.
_DEPLOYMENT_ATTRIBUTES = (
    "service",
    "team",
    "env",
    "version",
    "commit_sha",
    "repository_url",
    "started_at",
    "finished_at",
    "custom_tags",
    "deleted_at",
    "updated_at",
)
_FAILURE_ATTRIBUTES = (
    "team",
    "env",
    "name",
    "severity",
    "version",
    "commit_sha",
    "repository_url",
    "started_at",
    "finished_at",
    "custom_tags",
    "deleted_at",
    "updated_at",
)


@dataclass(frozen=True)
class Write:
    """One write. `apply` takes a connection and the arguments of a run of writes with the
    same `apply` (so they can share statements) and returns one result per argument."""

    apply: Callable[[sa.Connection, list[Any]], list[Any]]
    argument: Any


@dataclass(frozen=True)
class StoredDeployment:
    id: str
    event: DeploymentEvent
    change_failure: bool
    remediation: Remediation | None
    received_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredFailure:
    id: str
    event: FailureEvent
    received_at: datetime
    updated_at: datetime


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _KEY_CHUNK):
        yield items[start : start + _KEY_CHUNK]


def _upsert_rows(
    connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], update: tuple[str, ...]
) -> None:
    """Upsert rows by primary key, the last row of an id winning (as if applied one by one).

    One SELECT of the ids that exist, then one executemany UPDATE and one INSERT: per-row
    statements (and the dialects' ON CONFLICT forms, which SQLAlchemy cannot cache)
    cost far more than the durable commit they share. Inside the single writer this
    cannot race; should a second API process insert the same new id first, this batch
    fails and `EventStore.write_batch` retries its writes one by one, as updates.
    """
    (key,) = table.primary_key.columns
    latest = {row[key.name]: row for row in rows}
    existing: set[str] = set()
    for chunk in _chunks(list(latest)):
        existing.update(connection.scalars(sa.select(key).where(key.in_(chunk))))
    updates = [row for identifier, row in latest.items() if identifier in existing]
    inserts = [row for identifier, row in latest.items() if identifier not in existing]
    if updates:
        statement = (
            sa.update(table)
            .where(key == sa.bindparam("match_key"))
            .values({name: sa.bindparam(f"new_{name}") for name in update})
        )
        connection.execute(
            statement,
            [
                {"match_key": row[key.name], **{f"new_{name}": row[name] for name in update}}
                for row in updates
            ],
        )
    if inserts:
        _insert_many(connection, table, inserts)


def _insert_many(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    # RETURNING makes SQLAlchemy send the rows as multi-VALUES statements from a cached
    # template ("insertmanyvalues") instead of one driver call per row.
    (key, *_) = table.primary_key.columns
    connection.execute(sa.insert(table).returning(key), rows).all()


def _json_list(values: tuple[str, ...]) -> str:
    return orjson.dumps(values).decode()


def _storable_id(identifier: str) -> bool:
    # Ids from URL paths are unvalidated: anything that cannot be stored cannot be found.
    return 0 < len(identifier) <= 255 and "\x00" not in identifier


# --- writes: each applies a run of arguments on a connection ---------------------------


def upsert_deployments(connection: sa.Connection, events: list[DeploymentEvent]) -> list[str]:
    """Insert each deployment or replace its attributes (reviving it if retracted); the ids."""
    now = utcnow()
    rows = [
        {
            "deployment_id": deployment_id(event),
            "service": event.service,
            "team": event.team,
            "env": event.env,
            "version": event.version,
            "commit_sha": event.commit_sha,
            "repository_url": event.repository_url,
            "started_at": event.started_at,
            "finished_at": event.finished_at,
            "custom_tags": _json_list(event.custom_tags),
            "change_failure": False,
            "remediation_type": None,
            "remediation_ref": None,
            "deleted_at": None,
            "received_at": now,
            "updated_at": now,
        }
        for event in events
    ]
    _upsert_rows(connection, api_deployments, rows, _DEPLOYMENT_ATTRIBUTES)
    return [row["deployment_id"] for row in rows]


def upsert_failures(connection: sa.Connection, events: list[FailureEvent]) -> list[str]:
    """Insert each failure or replace its attributes and services; the ids."""
    now = utcnow()
    identifiers = [failure_id(event) for event in events]
    rows = [
        {
            "failure_id": identifier,
            "team": event.team,
            "env": event.env,
            "name": event.name,
            "severity": event.severity,
            "version": event.version,
            "commit_sha": event.commit_sha,
            "repository_url": event.repository_url,
            "started_at": event.started_at,
            "finished_at": event.finished_at,
            "custom_tags": _json_list(event.custom_tags),
            "deleted_at": None,
            "received_at": now,
            "updated_at": now,
        }
        for identifier, event in zip(identifiers, events, strict=True)
    ]
    _upsert_rows(connection, api_failures, rows, _FAILURE_ATTRIBUTES)
    latest = dict(zip(identifiers, events, strict=True))
    key = api_failure_services.c.failure_id
    for chunk in _chunks(list(latest)):
        connection.execute(sa.delete(api_failure_services).where(key.in_(chunk)))
    service_rows = [
        {"failure_id": identifier, "service": service}
        for identifier, event in latest.items()
        for service in event.services or ("",)  # a team-only failure: one row, service ''
    ]
    _insert_many(connection, api_failure_services, service_rows)
    return identifiers


def _retract(connection: sa.Connection, table: sa.Table, identifier: str) -> bool:
    if not _storable_id(identifier):
        return False
    (key,) = table.primary_key.columns
    now = utcnow()
    result = connection.execute(
        sa.update(table)
        .where(key == identifier, table.c.deleted_at.is_(None))
        .values(deleted_at=now, updated_at=now)
    )
    return result.rowcount == 1


def delete_deployments(connection: sa.Connection, identifiers: list[str]) -> list[bool]:
    """Retract deployments; False for one unknown or already retracted."""
    return [_retract(connection, api_deployments, identifier) for identifier in identifiers]


def delete_failures(connection: sa.Connection, identifiers: list[str]) -> list[bool]:
    """Retract failures; False for one unknown or already retracted."""
    return [_retract(connection, api_failures, identifier) for identifier in identifiers]


def _mark(connection: sa.Connection, identifier: str, change: ChangeFailure) -> bool:
    if not _storable_id(identifier):
        return False
    remediation = change.remediation
    table = api_deployments
    result = connection.execute(
        sa.update(table)
        .where(table.c.deployment_id == identifier, table.c.deleted_at.is_(None))
        .values(
            change_failure=change.change_failure,
            remediation_type=remediation.type if remediation else None,
            remediation_ref=remediation.ref if remediation else None,
            updated_at=utcnow(),
        )
    )
    return result.rowcount == 1


def mark_change_failures(
    connection: sa.Connection, changes: list[tuple[str, ChangeFailure]]
) -> list[bool]:
    """Set (or clear) deployments' change-failure marks; False for an unknown deployment."""
    return [_mark(connection, identifier, change) for identifier, change in changes]


def upsert_deployment(event: DeploymentEvent) -> Write:
    return Write(upsert_deployments, event)


def upsert_failure(event: FailureEvent) -> Write:
    return Write(upsert_failures, event)


def delete_deployment(identifier: str) -> Write:
    return Write(delete_deployments, identifier)


def delete_failure(identifier: str) -> Write:
    return Write(delete_failures, identifier)


def mark_change_failure(identifier: str, change: ChangeFailure) -> Write:
    return Write(mark_change_failures, (identifier, change))


# --- the store ------------------------------------------------------------------------


def _runs(writes: Sequence[Write]) -> Iterator[list[Write]]:
    """Consecutive writes with the same `apply`, in order."""
    run: list[Write] = []
    for write in writes:
        if run and write.apply is not run[0].apply:
            yield run
            run = []
        run.append(write)
    if run:
        yield run


def _apply(connection: sa.Connection, writes: Sequence[Write]) -> list[Any]:
    results: list[Any] = []
    for run in _runs(writes):
        results.extend(run[0].apply(connection, [write.argument for write in run]))
    return results


class EventStore:
    """All landing reads and writes of API deployments and failures."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def write_batch(self, writes: Sequence[Write]) -> list[Any]:
        """Apply writes in order in ONE transaction (one durable commit for all of them).

        Returns each write's result, or the exception it raised. Should the shared
        transaction fail, every write is retried alone, so one failing write never
        takes its neighbours down with it.
        """
        try:
            with self.engine.begin() as connection:
                return _apply(connection, writes)
        except Exception as error:
            if len(writes) == 1:
                return [error]
        results: list[Any] = []
        for write in writes:
            try:
                results.append(self._write(write))
            except Exception as error:
                results.append(error)
        return results

    def _write(self, write: Write) -> Any:
        with self.engine.begin() as connection:
            return _apply(connection, [write])[0]

    def upsert_deployment(self, event: DeploymentEvent) -> str:
        return self._write(upsert_deployment(event))

    def upsert_deployments(self, events: Sequence[DeploymentEvent]) -> list[str]:
        """Many deployments in one transaction (e.g. a bulk load); their ids."""
        with self.engine.begin() as connection:
            return upsert_deployments(connection, list(events))

    def upsert_failure(self, event: FailureEvent) -> str:
        return self._write(upsert_failure(event))

    def upsert_failures(self, events: Sequence[FailureEvent]) -> list[str]:
        """Many failures in one transaction; their ids."""
        with self.engine.begin() as connection:
            return upsert_failures(connection, list(events))

    def delete_deployment(self, identifier: str) -> bool:
        return self._write(delete_deployment(identifier))

    def delete_failure(self, identifier: str) -> bool:
        return self._write(delete_failure(identifier))

    def mark_change_failure(
        self, identifier: str, change_failure: bool = True, remediation: Remediation | None = None
    ) -> bool:
        change = ChangeFailure(change_failure, remediation)
        return self._write(mark_change_failure(identifier, change))

    def get_deployment(self, identifier: str) -> StoredDeployment | None:
        """The deployment, or None when it is unknown or retracted."""
        if not _storable_id(identifier):
            return None
        table = api_deployments
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(table).where(
                    table.c.deployment_id == identifier, table.c.deleted_at.is_(None)
                )
            ).one_or_none()
        if row is None:
            return None
        event = DeploymentEvent(
            id=row.deployment_id,
            service=row.service,
            team=row.team,
            env=row.env,
            version=row.version,
            commit_sha=row.commit_sha,
            repository_url=row.repository_url,
            started_at=row.started_at,
            finished_at=row.finished_at,
            custom_tags=tuple(orjson.loads(row.custom_tags)),
        )
        remediation = (
            Remediation(row.remediation_type, row.remediation_ref)
            if row.remediation_type is not None
            else None
        )
        return StoredDeployment(
            row.deployment_id,
            event,
            bool(row.change_failure),
            remediation,
            row.received_at,
            row.updated_at,
        )

    def get_failure(self, identifier: str) -> StoredFailure | None:
        """The failure with its services, or None when it is unknown or retracted."""
        if not _storable_id(identifier):
            return None
        table = api_failures
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(table).where(
                    table.c.failure_id == identifier, table.c.deleted_at.is_(None)
                )
            ).one_or_none()
            if row is None:
                return None
            services = connection.scalars(
                sa.select(api_failure_services.c.service).where(
                    api_failure_services.c.failure_id == identifier,
                    api_failure_services.c.service != "",
                )
            ).all()
        event = FailureEvent(
            id=row.failure_id,
            services=tuple(services),
            team=row.team,
            env=row.env,
            name=row.name,
            severity=row.severity,
            version=row.version,
            commit_sha=row.commit_sha,
            repository_url=row.repository_url,
            started_at=row.started_at,
            finished_at=row.finished_at,
            custom_tags=tuple(orjson.loads(row.custom_tags)),
        )
        return StoredFailure(row.failure_id, event, row.received_at, row.updated_at)
