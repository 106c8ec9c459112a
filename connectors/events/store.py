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

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
import sqlalchemy as sa

from connectors.events.identity import deployment_id, failure_id
from connectors.events.schemas import (
    ChangeFailure,
    DeploymentEvent,
    DeploymentMatch,
    FailureEvent,
    Remediation,
)
from connectors.events.spool import Event, Spool
from connectors.timestamps import utcnow
from connectors.warehouse import reading
from connectors.warehouse.engine import LockHeld, begin_if_free
from connectors.warehouse.schema import api_deployments, api_failure_services, api_failures
from connectors.warehouse.upsert import upsert


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


_Event = TypeVar("_Event", DeploymentEvent, FailureEvent)


@dataclass(frozen=True)
class _Kind(Generic[_Event]):
    """How one kind of event lands in its table; deployments and failures differ only here."""

    table: sa.Table
    event_type: type[_Event]
    identify: Callable[[_Event], str]
    # Event fields stored as they are, in columns of the same name.
    fields: tuple[str, ...]
    # Columns only a first receipt sets: a re-POST leaves them (and `received_at`) alone.
    first_receipt: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> sa.Column[Any]:
        (key,) = self.table.primary_key.columns
        return key

    @property
    def attributes(self) -> tuple[str, ...]:
        """The columns a re-POST replaces: everything the event itself sets."""
        return (*self.fields, "custom_tags", "deleted_at", "updated_at")

    def live(self, identifier: str) -> sa.ColumnElement[bool]:
        """The row of `identifier`, unless retracted."""
        return sa.and_(self.key == identifier, self.table.c.deleted_at.is_(None))

    def row(self, identifier: str, event: _Event, now: datetime) -> dict[str, Any]:
        return {
            self.key.name: identifier,
            **{name: getattr(event, name) for name in self.fields},
            "custom_tags": _json_list(event.custom_tags),
            **self.first_receipt,
            "deleted_at": None,
            "received_at": now,
            "updated_at": now,
        }

    def event(self, row: sa.Row[Any], **stored_elsewhere: Any) -> _Event:
        return self.event_type(
            id=getattr(row, self.key.name),
            **{name: getattr(row, name) for name in self.fields},
            custom_tags=tuple(orjson.loads(row.custom_tags)),
            **stored_elsewhere,
        )


_DEPLOYMENTS = _Kind(
    api_deployments,
    DeploymentEvent,
    deployment_id,
    fields=(
        "service",
        "team",
        "env",
        "version",
        "commit_sha",
        "repository_url",
        "started_at",
        "finished_at",
    ),
    first_receipt={
        "change_failure": False,
        "remediation_type": None,
        "remediation_ref": None,
        "remediation_by": None,
        "patched_at": None,
    },
)
_FAILURES = _Kind(
    api_failures,
    FailureEvent,
    failure_id,
    fields=(
        "team",
        "env",
        "name",
        "severity",
        "version",
        "commit_sha",
        "repository_url",
        "started_at",
        "finished_at",
    ),
)


class _DriverStatement:
    """A statement compiled once for a dialect and run with the driver's `executemany`.

    The group-commit thread applies every accepted event and shares the GIL with the
    event loop; SQLAlchemy's per-statement compilation and per-row processing cost it
    more than the durable commit the rows share. Values still go through each column
    type's bind processor, so they are stored exactly as `connection.execute` would.
    """

    def __init__(self, statement: sa.Executable, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._processors = [
            (name, processor)
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]

    def execute_many(self, connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if rows:
            connection.exec_driver_sql(self.sql, [self._parameters(row) for row in rows])

    def _parameters(self, row: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = dict(row)
        for name, process in self._processors:
            values[name] = process(values[name])
        return values if self._names is None else tuple(values[name] for name in self._names)


class _WriteStatements:
    """The statements of the ingest hot path for one dialect (kept per dialect object, weakly,
    so they go with their engine)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        services = api_failure_services
        self.upserts = {
            kind.table: _DriverStatement(upsert(kind.table, dialect, kind.attributes), dialect)
            for kind in (_DEPLOYMENTS, _FAILURES)
        }
        self.delete_failure_services = _DriverStatement(
            sa.delete(services).where(services.c.failure_id == sa.bindparam("failure_id")),
            dialect,
        )
        self.insert_failure_services = _DriverStatement(sa.insert(services), dialect)


_STATEMENTS: weakref.WeakKeyDictionary[sa.Dialect, _WriteStatements] = weakref.WeakKeyDictionary()


def _statements(connection: sa.Connection) -> _WriteStatements:
    dialect = connection.dialect
    statements = _STATEMENTS.get(dialect)
    if statements is None:
        statements = _STATEMENTS[dialect] = _WriteStatements(dialect)
    return statements


def _json_list(values: tuple[str, ...]) -> str:
    return orjson.dumps(values).decode()


def _storable_id(identifier: str) -> bool:
    # Ids from URL paths are unvalidated: anything that cannot be stored cannot be found.
    return 0 < len(identifier) <= 255 and "\x00" not in identifier


# --- writes: each applies a run of arguments on a connection ---------------------------


def _upsert(connection: sa.Connection, kind: _Kind[_Event], events: list[_Event]) -> list[str]:
    now = utcnow()
    identifiers = [kind.identify(event) for event in events]
    rows = [
        kind.row(identifier, event, now)
        for identifier, event in zip(identifiers, events, strict=True)
    ]
    _statements(connection).upserts[kind.table].execute_many(connection, rows)
    return identifiers


def upsert_deployments(connection: sa.Connection, events: list[DeploymentEvent]) -> list[str]:
    """Insert each deployment or replace its attributes (reviving it if retracted); the ids."""
    return _upsert(connection, _DEPLOYMENTS, events)


def upsert_failures(connection: sa.Connection, events: list[FailureEvent]) -> list[str]:
    """Insert each failure or replace its attributes and services; the ids."""
    identifiers = _upsert(connection, _FAILURES, events)
    statements = _statements(connection)
    latest = dict(zip(identifiers, events, strict=True))
    statements.delete_failure_services.execute_many(
        connection, [{"failure_id": identifier} for identifier in latest]
    )
    statements.insert_failure_services.execute_many(
        connection,
        [
            {"failure_id": identifier, "service": service}
            for identifier, event in latest.items()
            for service in event.services or ("",)  # a team-only failure: one row, service ''
        ],
    )
    return identifiers


def _live_row(connection: sa.Connection, kind: _Kind[Any], identifier: str) -> sa.Row[Any] | None:
    if not _storable_id(identifier):
        return None
    return connection.execute(sa.select(kind.table).where(kind.live(identifier))).one_or_none()


def _retract(connection: sa.Connection, kind: _Kind[Any], identifier: str) -> bool:
    if not _storable_id(identifier):
        return False
    now = utcnow()
    result = connection.execute(
        sa.update(kind.table).where(kind.live(identifier)).values(deleted_at=now, updated_at=now)
    )
    return result.rowcount == 1


def delete_deployments(connection: sa.Connection, identifiers: list[str]) -> list[bool]:
    """Retract deployments; False for one unknown or already retracted."""
    return [_retract(connection, _DEPLOYMENTS, identifier) for identifier in identifiers]


def delete_failures(connection: sa.Connection, identifiers: list[str]) -> list[bool]:
    """Retract failures; False for one unknown or already retracted."""
    return [_retract(connection, _FAILURES, identifier) for identifier in identifiers]


def _mark(connection: sa.Connection, identifier: str, change: ChangeFailure) -> bool:
    if not _storable_id(identifier):
        return False
    remediation = change.remediation
    now = utcnow()
    result = connection.execute(
        sa.update(api_deployments)
        .where(_DEPLOYMENTS.live(identifier))
        .values(
            change_failure=change.change_failure,
            remediation_type=remediation.type if remediation else None,
            remediation_ref=remediation.ref if remediation else None,
            remediation_by=remediation.by if remediation else None,
            patched_at=now,
            updated_at=now,
        )
    )
    return result.rowcount == 1


def mark_change_failures(
    connection: sa.Connection, changes: list[tuple[str, ChangeFailure]]
) -> list[bool]:
    """Set (or clear) deployments' change-failure marks; False for an unknown deployment."""
    return [_mark(connection, identifier, change) for identifier, change in changes]


def _latest_matching(connection: sa.Connection, match: DeploymentMatch) -> str | None:
    landed = api_deployments.c
    return connection.execute(
        sa.select(landed.deployment_id)
        .where(
            landed.service == match.service,
            landed.env == match.env,
            landed.version == match.version,
            landed.deleted_at.is_(None),
        )
        .order_by(landed.finished_at.desc(), landed.started_at.desc(), landed.deployment_id.desc())
        .limit(1)
    ).scalar_one_or_none()


def mark_latest_change_failures(
    connection: sa.Connection, changes: list[tuple[DeploymentMatch, ChangeFailure]]
) -> list[str | None]:
    """Mark the most recently finished deployment matching each; its id, None if none."""
    marked = []
    for match, change in changes:
        identifier = _latest_matching(connection, match)
        marked.append(identifier if identifier and _mark(connection, identifier, change) else None)
    return marked


def mark_latest_change_failure(match: DeploymentMatch, change: ChangeFailure) -> Write:
    return Write(mark_latest_change_failures, (match, change))


def upsert_deployment(event: DeploymentEvent) -> Write:
    return Write(upsert_deployments, event)


def upsert_failure(event: FailureEvent) -> Write:
    return Write(upsert_failures, event)


def _settled(_connection: sa.Connection, arguments: list[None]) -> list[None]:
    return [None for _ in arguments]


def settle() -> Write:
    """Nothing but the spool applied: what a read waits for to see every accepted event."""
    return Write(_settled, None)


def upsert_events(connection: sa.Connection, events: list[Event]) -> None:
    """Upsert deployments and failures, in order."""
    upserts = [
        upsert_deployment(event) if isinstance(event, DeploymentEvent) else upsert_failure(event)
        for event in events
    ]
    _apply(connection, upserts)


# Writes whose result needs nothing stored: the spool can take them (`connectors.events.spool`).
_SPOOLABLE: dict[Callable[..., Any], _Kind[Any]] = {
    upsert_deployments: _DEPLOYMENTS,
    upsert_failures: _FAILURES,
}


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
    """All landing reads and writes of API deployments and failures.

    With a `spool` (the event API on a SQLite warehouse), upserts that find the
    warehouse's write lock taken are kept there instead of waiting, and every write
    transaction first applies what the spool holds."""

    def __init__(self, engine: sa.Engine, spool: Spool | None = None) -> None:
        self.engine = engine
        self.spool = spool
        # Whether this process spooled events that no write transaction has applied yet.
        self.spooling = False

    def write_batch(self, writes: Sequence[Write]) -> list[Any]:
        """Apply writes in order in ONE transaction (one durable commit for all of them).

        Returns each write's result, or the exception it raised. Should the shared
        transaction fail, every write is retried alone, so one failing write never
        takes its neighbours down with it.
        """
        spoolable = self.spool is not None and all(w.apply in _SPOOLABLE for w in writes)
        try:
            return self._transaction(writes, wait=not spoolable)
        except LockHeld:
            return self._spool(writes)
        except Exception as error:
            if len(writes) == 1:
                return [error]
        results: list[Any] = []
        for write in writes:
            try:
                results.append(self._transaction([write], wait=True)[0])
            except Exception as error:
                results.append(error)
        return results

    def take_up_spool(self) -> None:
        """Apply what the spool holds if the warehouse is free now; else leave it."""
        if self.spool is not None:
            with contextlib.suppress(LockHeld):
                self._transaction([], wait=False)

    def _transaction(self, writes: Sequence[Write], wait: bool) -> list[Any]:
        """`writes` in one transaction, after what the spool holds. Without `wait`, raises
        `LockHeld` at once when the warehouse's write lock is taken."""
        begin = self.engine.begin if wait else functools.partial(begin_if_free, self.engine)
        with begin() as connection:
            landed = self.spool.apply(connection, upsert_events) if self.spool else None
            results = _apply(connection, writes)
        self.spooling = False
        if self.spool is not None and landed is not None and landed.through:
            self.spool.forget(landed.through)
        return results

    def _spool(self, writes: Sequence[Write]) -> list[Any]:
        """Keep upserts in the spool; the ids they will have."""
        assert self.spool is not None
        try:
            self.spool.append([write.argument for write in writes])
        except Exception as error:
            return [error for _ in writes]
        self.spooling = True
        return [_SPOOLABLE[write.apply].identify(write.argument) for write in writes]

    def _write(self, write: Write) -> Any:
        return self._transaction([write], wait=True)[0]

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
        with reading(self.engine) as connection:
            row = _live_row(connection, _DEPLOYMENTS, identifier)
        if row is None:
            return None
        remediation = (
            Remediation(row.remediation_type, row.remediation_ref, row.remediation_by or "id")
            if row.remediation_type is not None
            else None
        )
        return StoredDeployment(
            row.deployment_id,
            _DEPLOYMENTS.event(row),
            bool(row.change_failure),
            remediation,
            row.received_at,
            row.updated_at,
        )

    def get_failure(self, identifier: str) -> StoredFailure | None:
        """The failure with its services, or None when it is unknown or retracted."""
        with reading(self.engine) as connection:
            row = _live_row(connection, _FAILURES, identifier)
            if row is None:
                return None
            services = connection.scalars(
                sa.select(api_failure_services.c.service).where(
                    api_failure_services.c.failure_id == identifier,
                    api_failure_services.c.service != "",
                )
            ).all()
        event = _FAILURES.event(row, services=tuple(services))
        return StoredFailure(row.failure_id, event, row.received_at, row.updated_at)
