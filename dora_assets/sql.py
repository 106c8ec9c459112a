"""Two portable SQL expressions the normalized and metric queries need.

Timestamps are stored as naive UTC (`TIMESTAMP` on PostgreSQL, text on SQLite), so
the UTC day is the timestamp's date part in both databases.
"""

from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement


class utc_date(FunctionElement):
    """The UTC calendar day of a naive-UTC timestamp column."""

    type = sa.Date()
    inherit_cache = True


@compiles(utc_date)
def _utc_date_default(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


@compiles(utc_date, "sqlite")
def _utc_date_sqlite(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


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


def insert_from_select(connection: sa.Connection, table: sa.Table, rows: sa.Select) -> int:
    """`INSERT INTO table SELECT ...` (`rows` in the table's column order); rows inserted."""
    statement = sa.insert(table).from_select([column.name for column in table.columns], rows)
    # psycopg reports -1 for INSERT ... SELECT unless SQLAlchemy is asked to keep the count.
    return connection.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def insert_frame(connection: sa.Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    """Insert a frame's rows in the caller's transaction.

    psycopg's executemany sends one INSERT per row (seconds for 60,000 rows), so on
    PostgreSQL the rows are streamed with COPY instead.
    """
    if rows.empty:
        return
    records = rows.astype(object).itertuples(index=False, name=None)
    if connection.dialect.name != "postgresql":
        connection.execute(
            sa.insert(table), [dict(zip(rows.columns, r, strict=True)) for r in records]
        )
        return
    preparer = connection.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(name) for name in rows.columns)
    cursor = connection.connection.dbapi_connection.cursor()
    with cursor.copy(f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN") as copy:
        for record in records:
            copy.write_row(record)
