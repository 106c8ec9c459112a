"""The spool: where the event API keeps events it accepted while a job held SQLite's lock.

SQLite has one write lock per database. While a job (a refresh, a backfill) holds the
warehouse's lock for one of its short write transactions, an API request that waited
for it would wait that long too. Instead, when the lock is taken, the API appends the
batch's upserts to this spool, a small SQLite file of its own beside the warehouse
(`<warehouse file>.spool`), commits durably (`synchronous=FULL`) and answers 202. The
next write that finds the warehouse free first applies what the spool holds, in order,
in its own transaction; so does `event_api_events` at the start of every refresh.

The warehouse records, in the same transaction, the last spool entry it applied (in
`ingest_state`), so an entry is applied exactly once even when a crash comes between
that commit and the entries' removal from the spool. Entries are numbered with SQLite's
AUTOINCREMENT (never reused, even once removed), and the record names the spool it
counts in: a spool file that was deleted and created again starts a new count.

Only upserts are spooled: a retraction or a change-failure mark answers from what is
stored (404 for an unknown id), so it waits for the lock and applies the spool first.
On PostgreSQL writers do not share one lock, and there is no spool.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import orjson
import sqlalchemy as sa

from connectors.events.schemas import DeploymentEvent, FailureEvent
from connectors.warehouse.engine import create_engine, reading, unsynced
from connectors.warehouse.watermarks import lock_state, save_state

SPOOL_STATE = "event_api.spool"

_spool_schema = sa.MetaData()
spool_identity = sa.Table(
    "spool_identity", _spool_schema, sa.Column("spool_id", sa.String(36), primary_key=True)
)
spooled_events = sa.Table(
    "spooled_events",
    _spool_schema,
    sa.Column("entry", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    sqlite_autoincrement=True,
)

Event = DeploymentEvent | FailureEvent
KINDS: dict[str, type[Event]] = {"deployment": DeploymentEvent, "failure": FailureEvent}
_TIMESTAMPS = ("started_at", "finished_at")


def _encode(event: Event) -> bytes:
    return orjson.dumps(event)


def _decode(kind: str, document: bytes) -> Event:
    fields = orjson.loads(document)
    for name in _TIMESTAMPS:
        if fields.get(name) is not None:
            fields[name] = dt.datetime.fromisoformat(fields[name])
    return KINDS[kind](**fields)


def _kind_of(event: Event) -> str:
    return "deployment" if isinstance(event, DeploymentEvent) else "failure"


class Landed(NamedTuple):
    """What `Spool.apply` put in the warehouse: how many events, and the spool entries
    up to which the warehouse now holds everything (0 when the spool was empty)."""

    events: int
    through: int


def spool_path(warehouse: sa.Engine) -> Path | None:
    """`<warehouse file>.spool` for a SQLite file warehouse; None for any other."""
    database = warehouse.url.database
    if warehouse.dialect.name != "sqlite" or database in (None, "", ":memory:"):
        return None
    return Path(f"{database}.spool")


class Spool:
    """Events accepted but not yet in the warehouse, in the order they were accepted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = create_engine(f"sqlite:///{path}")
        _spool_schema.create_all(self.engine)
        with self.engine.begin() as connection:
            spool_id = connection.scalar(sa.select(spool_identity.c.spool_id))
            if spool_id is None:
                spool_id = str(uuid.uuid4())
                connection.execute(spool_identity.insert().values(spool_id=spool_id))
        self.spool_id: str = spool_id

    @classmethod
    def beside(cls, warehouse: sa.Engine, create: bool = True) -> Spool | None:
        """The spool of a SQLite file warehouse (None for any other, and, unless
        `create`, when the API never made one)."""
        path = spool_path(warehouse)
        return cls(path) if path and (create or path.exists()) else None

    def append(self, events: Sequence[Event]) -> None:
        """Keep `events`, durably, after every event appended before."""
        with self.engine.begin() as connection:
            connection.execute(
                spooled_events.insert(),
                [{"kind": _kind_of(event), "event": _encode(event)} for event in events],
            )

    def is_empty(self) -> bool:
        with reading(self.engine) as connection:
            return connection.scalar(sa.select(spooled_events.c.entry).limit(1)) is None

    def apply(
        self, warehouse: sa.Connection, upsert: Callable[[sa.Connection, list[Event]], object]
    ) -> Landed:
        """Upsert, in `warehouse`'s write transaction, every event the warehouse has not
        taken yet, and record the last. Once this commits, every entry up to the returned
        `through` is in the warehouse: `forget` them then."""
        with reading(self.engine) as connection:
            entries = connection.execute(
                sa.select(
                    spooled_events.c.entry, spooled_events.c.kind, spooled_events.c.event
                ).order_by(spooled_events.c.entry)
            ).all()
        if not entries:  # the usual case: one read of an empty table
            return Landed(events=0, through=0)
        state = lock_state(warehouse, SPOOL_STATE)
        recorded = json.loads(state) if state else {}
        through = recorded.get("through", 0) if recorded.get("spool") == self.spool_id else 0
        # Entries up to `through` were applied by a transaction that committed before
        # they could be removed.
        untaken = [entry for entry in entries if entry.entry > through]
        if untaken:
            upsert(warehouse, [_decode(kind, document) for _, kind, document in untaken])
            record = {"spool": self.spool_id, "through": untaken[-1].entry}
            save_state(warehouse, SPOOL_STATE, json.dumps(record))
        return Landed(events=len(untaken), through=entries[-1].entry)

    def forget(self, through: int) -> None:
        """Remove the entries up to `through`, which a committed `apply` landed."""
        # Not fsynced: a removal lost to a power cut leaves entries the record skips.
        with self.engine.connect() as connection, unsynced(connection), connection.begin():
            connection.execute(spooled_events.delete().where(spooled_events.c.entry <= through))

    def dispose(self) -> None:
        self.engine.dispose()
