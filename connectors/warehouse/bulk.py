"""Many rows through one statement without SQLAlchemy's per-row handling.

`Connection.execute(statement, rows)` builds and converts a parameter dictionary per row
(~15 µs each on SQLite): for the tens of thousands of rows of a first git sync or a first
classification that is most of the write. Here the statement is compiled once by the
connection's dialect, each value is converted by its parameter type's own bind processor
(so a SQLite timestamp is stored exactly as SQLAlchemy stores it), and the driver's
`executemany` gets plain tuples (or dictionaries, for a named paramstyle). Reading is the
mirror image: `driver_rows` returns the driver's own rows, for a caller that converts the
few columns it needs as it builds its own objects (`converter`), and `fetch` converts
each column with its type's result processor in one pass. A `Row` per row, with its
conversions, costs more than the driver's own fetch: ~2 s of reading every sequence of
1M deployments.

SQLAlchemy's SQLite timestamp processor fills a format from a dictionary (~3.5 µs a
value, most of a landed commit's cost); `datetime.isoformat` writes the same text in a
third of that, and is used only once it has been seen to agree with it.

`execute_with_rows` is the other way to write many rows: all of them as one JSON document, read
back as a table by the database itself (`json_each` on SQLite, `jsonb_array_elements`
on PostgreSQL), so an UPDATE ... FROM or INSERT ... SELECT of any number of rows is one
statement. The driver runs it without holding Python's GIL, where `executemany` takes
the GIL back for every row: a job that reads in one thread while it writes in another
(`classify_changed`) only overlaps the two when its writes are single statements.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


def executemany(
    connection: sa.Connection, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run `statement` (no expanding IN lists) once per row; every row has the keys of the
    first, and a parameter no row names keeps the value it was given in `statement`."""
    if not rows:
        return
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(rows[0]))
    names = list(compiled.positiontup or compiled.binds)
    # Column by column: one bind processor mapped over a column costs a fraction of a
    # Python call per value, and a constant of the statement is converted once.
    columns: list[Iterable[Any]] = []
    for name in names:
        bind = compiled.binds[name]
        convert = _bind_processor(bind.type, dialect)
        if bind.key in rows[0]:
            given = [row[bind.key] for row in rows]
            columns.append(list(map(convert, given)) if convert else given)
        else:
            columns.append(repeat(convert(bind.value) if convert else bind.value, len(rows)))
    parameters: list[Any] = (
        list(zip(*columns, strict=True))
        if compiled.positional
        else [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    )
    connection.exec_driver_sql(compiled.string, parameters)


def driver_rows(
    connection: sa.Connection,
    statement: sa.Select[Any],
    parameters: Mapping[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """The rows of `statement` (no expanding IN lists; its `sa.bindparam`s given in
    `parameters`) as the driver returns them: convert a column's values with `converter`
    (SQLite returns a timestamp as text). A statement run many times is compiled once."""
    return _driver_fetch(connection, statement, parameters)[0]


def _driver_fetch(
    connection: sa.Connection,
    statement: sa.Select[Any],
    parameters: Mapping[str, Any] | None,
) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """`driver_rows`, and the driver's type code of each column."""
    compiled, bind_processors = _compiled(statement, connection.dialect)
    values = compiled.construct_params(parameters)
    for name, convert in bind_processors.items():
        values[name] = convert(values[name])
    result = connection.exec_driver_sql(
        compiled.string,
        tuple(values[name] for name in compiled.positiontup)
        if compiled.positiontup is not None
        else values,
    )
    try:
        return result.cursor.fetchall(), [column[1] for column in result.cursor.description]
    finally:
        result.close()


@functools.lru_cache(maxsize=64)
def _compiled(
    statement: sa.Select[Any], dialect: sa.Dialect
) -> tuple[sa.Compiled, dict[str, Callable[[Any], Any]]]:
    """`statement` compiled, and the bind processor of each parameter that has one."""
    compiled = statement.compile(dialect=dialect)
    processors = {
        name: convert
        for bind, name in compiled.bind_names.items()
        if (convert := _bind_processor(bind.type, dialect)) is not None
    }
    return compiled, processors


def converter(
    column: sa.ColumnElement[Any], dialect: sa.Dialect, type_code: Any = None
) -> Callable[[Any], Any]:
    """What turns a driver's value of `column` into SQLAlchemy's. `type_code` is the
    driver's, from the cursor's description: psycopg's numeric processors depend on it."""
    convert = column.type.dialect_impl(dialect).result_processor(dialect, type_code)
    return convert if convert is not None else _unchanged


def _unchanged(value: Any) -> Any:
    return value


def fetch(
    connection: sa.Connection,
    statement: sa.Select[Any],
    parameters: Mapping[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """`connection.execute(statement, parameters).all()` as plain tuples."""
    rows, type_codes = _driver_fetch(connection, statement, parameters)
    converters = [
        converter(column, connection.dialect, type_code)
        for column, type_code in zip(statement.selected_columns, type_codes, strict=True)
    ]
    if not rows or all(convert is _unchanged for convert in converters):
        return rows
    # Column by column: one converter mapped over a column, not a Python call per row.
    columns = zip(*rows, strict=True)
    return list(
        zip(
            *(
                column if convert is _unchanged else map(convert, column)
                for convert, column in zip(converters, columns, strict=True)
            ),
            strict=True,
        )
    )


# Microseconds and a year under 1000: where two ways of writing a timestamp could differ.
_PROBE = dt.datetime(987, 6, 5, 4, 3, 2, 10)


def _bind_processor(type_: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> Any:
    convert = type_.dialect_impl(dialect).bind_processor(dialect)
    if convert is None or not isinstance(type_, sa.DateTime) or dialect.name != "sqlite":
        return convert

    def as_text(value: Any) -> Any:
        if value.__class__ is dt.datetime and value.tzinfo is None:
            return value.isoformat(" ", "microseconds")
        return convert(value)

    return as_text if as_text(_PROBE) == convert(_PROBE) else convert


Columns = Mapping[str, sa.types.TypeEngine[Any]]


def _json_rows(name: str, columns: Columns, dialect: sa.Dialect) -> sa.Subquery:
    """The rows of the JSON document bound as `name` (`_json_document`: arrays with
    `columns` in order), as a subquery named `name` with `columns`."""
    document = sa.bindparam(name, type_=sa.Text)
    if dialect.name == "postgresql":
        each = sa.func.jsonb_array_elements(sa.cast(document, JSONB)).table_valued("value")
        values = [
            sa.cast(each.c.value.op("->>")(sa.literal_column(str(position))), type_)
            for position, type_ in enumerate(columns.values())
        ]
    else:
        each = sa.func.json_each(document).table_valued("value")
        values = [
            sa.func.json_extract(each.c.value, sa.literal_column(f"'$[{position}]'"), type_=type_)
            for position, type_ in enumerate(columns.values())
        ]
    return sa.select(
        *(value.label(column) for value, column in zip(values, columns, strict=True))
    ).subquery(name)


def execute_with_rows(
    connection: sa.Connection,
    statement: Callable[[sa.Subquery], sa.Executable],
    columns: Columns,
    rows: Sequence[Sequence[Any]],
) -> None:
    """Run the one statement `statement` builds over `rows` (tuples of `columns`), given
    to it as `_json_rows`."""
    dialect = connection.dialect
    connection.execute(
        statement(_json_rows("rows", columns, dialect)), {"rows": _json_document(rows, dialect)}
    )


def _json_document(rows: Sequence[Sequence[Any]], dialect: sa.Dialect) -> str:
    """`rows` (tuples, a value per column) as `_json_rows` reads them. A timestamp or date
    is written as the dialect stores it (on SQLite, SQLAlchemy's text form); the rest as
    JSON has it (a boolean as `true`, which SQLite reads as 1, as it stores one)."""
    return json.dumps(list(rows), ensure_ascii=False, default=_stored_forms(dialect))


@functools.lru_cache(maxsize=4)
def _stored_forms(dialect: sa.Dialect) -> Callable[[Any], Any]:
    timestamp = _bind_processor(sa.DateTime(), dialect) or dt.datetime.isoformat
    day = _bind_processor(sa.Date(), dialect) or dt.date.isoformat

    def stored_form(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return timestamp(value)
        if isinstance(value, dt.date):
            return day(value)
        raise TypeError(f"{type(value).__name__} is not a warehouse value")

    return stored_form
