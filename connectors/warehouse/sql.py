"""Portable SQL the normalized and metric queries need.

Timestamps are stored as naive UTC (`TIMESTAMP` on PostgreSQL, text on SQLite), so
the UTC day is the timestamp's date part in both databases.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement


class seconds_between(FunctionElement):
    """`end - start` in seconds, rounded to the millisecond in every database.

    SQLite's date functions resolve milliseconds and `julianday` differences carry
    float noise below that, so both dialects round to 1 ms to agree exactly.
    """

    type = sa.Float()
    inherit_cache = True


@compiles(seconds_between)
def _seconds_between_default(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST(ROUND(EXTRACT(EPOCH FROM ({end} - {start})) * 1000) / 1000.0 AS DOUBLE PRECISION)"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    end, start = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"ROUND((julianday({end}) - julianday({start})) * 86400000.0) / 1000.0"


def ranked(rows: sa.Select, value: str, partition_by: Sequence[str]) -> sa.Subquery:
    """`rows` plus each row's 0-based `position` by `value` within its partition and the
    partition's `size`, for `percentile_cont` to aggregate."""
    inner = rows.subquery()
    partition = [inner.c[name] for name in partition_by]
    return sa.select(
        inner,
        (sa.func.row_number().over(partition_by=partition, order_by=inner.c[value]) - 1).label(
            "position"
        ),
        sa.func.count().over(partition_by=partition).label("size"),
    ).subquery()


def percentile_cont(rows: sa.Subquery, value: str, percent: int) -> sa.ColumnElement[float]:
    """The aggregate of a group of `ranked` rows that interpolates their `percent`-th
    percentile linearly, as PostgreSQL's `percentile_cont` does (SQLite has none).

    The rank sought is `(size - 1) * percent / 100`; computing its whole part and
    fraction in integer arithmetic keeps the two databases from rounding it differently.
    """
    scaled_rank = (rows.c.size - 1) * percent
    lower = scaled_rank // 100
    # The same on every row of the group; an aggregate only to be legal in its SELECT.
    fraction = sa.func.max(sa.cast(scaled_rank % 100, sa.Float)) / 100.0
    # Sorted ascending, the lower neighbour is the smaller of the two (the only one at
    # the top rank, where the fraction is 0).
    neighbours = sa.case((rows.c.position.between(lower, lower + 1), rows.c[value]))
    low, high = sa.func.min(neighbours), sa.func.max(neighbours)
    return low + (high - low) * fraction


def insert_from_select(connection: sa.Connection, table: sa.Table, rows: sa.Select) -> int:
    """`INSERT INTO table SELECT ...` (`rows` in the table's column order); rows inserted."""
    statement = sa.insert(table).from_select([column.name for column in table.columns], rows)
    # psycopg reports -1 for INSERT ... SELECT unless SQLAlchemy is asked to keep the count.
    return connection.execute(statement.execution_options(preserve_rowcount=True)).rowcount
