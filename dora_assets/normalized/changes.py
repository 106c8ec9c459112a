"""Applying landing changes to a normalized table, a bounded chunk per transaction.

A normalized table is maintained, not rebuilt: each run reads the landing rows written
since its watermark (a change feed), computes what the normalized table should hold
for those landing keys, compares it with what it holds, and writes only the
difference: new and changed rows upserted, rows no longer wanted deleted. Every
difference records the metric days it touches (old row and new row) in the
changed-days record. The watermark moves in the same transaction, so a crash
re-applies a chunk rather than skipping it; re-applying is harmless because it writes
only differences.

Each chunk is compared in a read-only transaction, which on SQLite takes no lock, and
written in one short transaction; so a first build over a long history never holds the
warehouse's write lock for long and API writes interleave. A write that takes longer
than its budget halves the next chunk, and quick ones let it grow back (`Pacing`); after
each write the job pauses so that waiting writers get the lock (`WriteTurns`). A change
feed's chunks start at 500 keys and aim at writes of at most 50 ms (a 15-minute batch
is one or two of them). A catalog edit rewrites every row of its chunks and is never
urgent, so its chunks start at 64 keys and aim at 25 ms. On a 2-core machine under
200 API writes a second, a refresh re-teaming 8,000 rows (20,000 deployments) then wrote
for at most 22 ms at a time, where 2,000-key chunks held the lock up to 0.24 s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa

from connectors.warehouse import WriteTurns, reading
from connectors.warehouse.bulk import executemany
from connectors.warehouse.upsert import upsert
from connectors.warehouse.watermarks import lock_watermark, read_watermark, save_watermark
from dora_assets import changed_days
from dora_assets.change_failures import sequences


class Pacing(NamedTuple):
    """Chunk sizes of one kind of work: the first, the smallest and largest (halving from
    the largest down to the smallest keeps every chunk a multiple of the smallest), and
    the write time past which the next chunk is halved."""

    first_keys: int
    min_keys: int
    max_keys: int
    write_budget_s: float

    def next_keys(self, keys: int, written_in: float) -> int:
        """The next chunk's keys: half after a write over budget, double after a quick one."""
        if written_in > self.write_budget_s:
            return max(self.min_keys, keys // 2)
        if written_in < self.write_budget_s / 4:
            return min(self.max_keys, keys * 2)
        return keys


CHUNK_KEYS = 2_000
MIN_CHUNK_KEYS = CHUNK_KEYS // 16
FEED_PACING = Pacing(4 * MIN_CHUNK_KEYS, MIN_CHUNK_KEYS, CHUNK_KEYS, write_budget_s=0.05)
RE_APPLY_PACING = Pacing(64, 16, 512, write_budget_s=0.025)
# A landing write can commit after a reader has passed its `updated_at` (PostgreSQL
# commits concurrent transactions in any order; clocks of API replicas differ a little),
# so each run re-reads this far behind its watermark. Re-reading costs a comparison,
# never a write.
REREAD_OVERLAP = dt.timedelta(minutes=5)
# Set by the landing write, not part of what a row says: changes of it alone are not
# changes of the row.
BOOKKEEPING_COLUMNS = frozenset({"ingested_at"})

Row = dict[str, Any]


class Normalization(Protocol):
    """How the rows of one landing source become rows of a normalized table."""

    table: sa.Table

    def held(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        """The rows the normalized table holds now for these landing keys."""
        ...

    def wanted(self, connection: sa.Connection, keys: Sequence[str]) -> list[Row]:
        """The rows the landing tables say it should hold for these keys."""
        ...


@dataclass(frozen=True)
class ChangeFeed:
    """A landing table whose every write sets `changed_at`, read from a named watermark."""

    watermark: str
    key: sa.Column[str]
    changed_at: sa.Column[dt.datetime]


@dataclass
class Applied:
    """What a run changed; `preview` holds a few of the rows it wrote."""

    keys_read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    metric_days: set[changed_days.MetricDay] = field(default_factory=set)
    preview: list[Row] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return self.inserted + self.updated + self.deleted


def as_dicts(result: sa.Result[Any]) -> list[Row]:
    """Every row of `result` as a dict (`.mappings()` looks each key up again per row)."""
    names = list(result.keys())
    return [dict(zip(names, row, strict=True)) for row in result]


def _primary_key(table: sa.Table) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    names = [column.name for column in table.primary_key.columns]
    return lambda row: tuple(row[name] for name in names)


def _blank(column: sa.Column[Any]) -> Any:
    """A new row's value of a column it was not given (its server default)."""
    return False if isinstance(column.type, sa.Boolean) else None


def _differs(held: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return any(
        held[name] != value for name, value in wanted.items() if name not in BOOKKEEPING_COLUMNS
    )


@dataclass(frozen=True)
class _Plan:
    """What the normalized table holds and should hold for a chunk of landing keys."""

    keys: Sequence[str]
    held: dict[tuple[Any, ...], Row]
    wanted: dict[tuple[Any, ...], Row]


def _held(
    connection: sa.Connection, normalization: Normalization, keys: Sequence[str]
) -> dict[tuple[Any, ...], Row]:
    key_of = _primary_key(normalization.table)
    return {key_of(row): row for row in normalization.held(connection, keys)}


def _plan(connection: sa.Connection, normalization: Normalization, keys: Sequence[str]) -> _Plan:
    key_of = _primary_key(normalization.table)
    wanted = {key_of(row): row for row in normalization.wanted(connection, keys)}
    return _Plan(keys, _held(connection, normalization, keys), wanted)


def _write(
    connection: sa.Connection, normalization: Normalization, plan: _Plan, applied: Applied
) -> None:
    """Write the difference `plan` found, and record what it touches."""
    table = normalization.table
    key_of = _primary_key(table)
    held, wanted = plan.held, plan.wanted
    gone = [row for key, row in held.items() if key not in wanted]
    changed = [row for key, row in wanted.items() if key not in held or _differs(held[key], row)]
    before = [held.get(key_of(row)) for row in changed]
    replaced = [row for row in before if row is not None]
    if gone:
        pk = list(table.primary_key.columns)
        connection.execute(
            sa.delete(table).where(*(column == sa.bindparam(f"pk_{column.name}") for column in pk)),
            [{f"pk_{column.name}": row[column.name] for column in pk} for row in gone],
        )
    if changed:
        # Only the columns the normalization owns: classification columns keep their values.
        owned = [name for name in changed[0] if name not in {c.name for c in table.primary_key}]
        executemany(connection, upsert(table, connection.dialect, owned), changed)
    # Columns a normalization does not own (the classification's) keep their values.
    blank = {column.name: _blank(column) for column in table.columns}
    after = [{**(held_row or blank), **row} for held_row, row in zip(before, changed, strict=True)]
    pairs = [*((row, None) for row in gone), *zip(before, after, strict=True)]
    touched = changed_days.days_touched(table, pairs)
    changed_days.record(connection, touched)
    sequences.record(connection, sequences.sequences_touched(table, pairs))
    applied.keys_read += len(plan.keys)
    applied.deleted += len(gone)
    applied.updated += len(replaced)
    applied.inserted += len(changed) - len(replaced)
    applied.metric_days |= touched
    applied.preview = [*changed, *applied.preview][:10]


def _apply_chunk(
    turns: WriteTurns,
    normalization: Normalization,
    keys: Sequence[str],
    applied: Applied,
    watermark: tuple[str, dt.datetime] | None = None,
) -> None:
    """Compare outside the write lock, then write in a short transaction (which also moves
    the watermark `(name, newest)`, when given); if another writer changed these rows in
    between, compare again inside it."""
    with reading(turns.engine) as connection:
        plan = _plan(connection, normalization, keys)
    with turns.begin() as connection:
        saved = lock_watermark(connection, watermark[0]) if watermark else None
        if _held(connection, normalization, keys) != plan.held:
            plan = _plan(connection, normalization, keys)
        _write(connection, normalization, plan, applied)
        if watermark:
            name, newest = watermark
            save_watermark(connection, name, max(newest, saved or newest))


def apply_feed(
    engine: sa.Engine,
    feed: ChangeFeed,
    normalization: Normalization,
    applied: Applied,
    on_progress: Callable[[str], None] | None = None,
    overlap: dt.timedelta = REREAD_OVERLAP,
) -> None:
    """Apply every landing row of `feed` written since its watermark (less `overlap`),
    chunk by chunk."""
    with reading(engine) as connection:
        watermark = read_watermark(connection, feed.watermark)
    after = (watermark - overlap, "") if watermark is not None else None
    position = sa.tuple_(feed.changed_at, feed.key)
    size, read = FEED_PACING.first_keys, 0
    turns = WriteTurns(engine)
    while True:
        with reading(engine) as connection:
            batch = connection.execute(
                sa.select(feed.changed_at, feed.key)
                .where(position > sa.tuple_(*after) if after else sa.true())
                .order_by(feed.changed_at, feed.key)
                .limit(size)
            ).all()
        if not batch:
            return
        newest = batch[-1][0]
        _apply_chunk(
            turns, normalization, [key for _, key in batch], applied, (feed.watermark, newest)
        )
        after = (newest, batch[-1][1])
        read += len(batch)
        if (size := _next_chunk(FEED_PACING, size, len(batch), turns)) is None:
            return
        if on_progress:
            on_progress(f"{feed.watermark}: {read:,} landing rows read so far")


def apply_all(
    engine: sa.Engine,
    keys: sa.Select,
    normalization: Normalization,
    applied: Applied,
    on_progress: Callable[[str], None] | None = None,
) -> None:
    """Re-apply every landing key that `keys` (one column) selects, in key order."""
    listed = keys.subquery()
    (key,) = listed.columns
    after, size = None, RE_APPLY_PACING.first_keys
    turns = WriteTurns(engine)
    while True:
        with reading(engine) as connection:
            batch = list(
                connection.scalars(
                    sa.select(key)
                    .where(key > after if after is not None else sa.true())
                    .order_by(key)
                    .limit(size)
                )
            )
        if not batch:
            return
        _apply_chunk(turns, normalization, batch, applied)
        after = batch[-1]
        if (size := _next_chunk(RE_APPLY_PACING, size, len(batch), turns)) is None:
            return
        if on_progress:
            on_progress(f"{normalization.table.name}: re-applied up to key {after!r}")


def _next_chunk(pacing: Pacing, size: int, listed: int, turns: WriteTurns) -> int | None:
    """After a chunk of `size` keys asked, `listed` found: None when it was the last; else
    the next chunk's size."""
    if listed < size:
        return None
    return pacing.next_keys(size, turns.last_write_s)


def distinct_keys(selects: Iterable[sa.Select]) -> sa.Select:
    """One key column from several selects, each key once."""
    return sa.union(*selects) if len(selects := list(selects)) > 1 else selects[0].distinct()
