"""Many rows through one statement without SQLAlchemy's per-row parameter handling.

`Connection.execute(statement, rows)` builds and converts a parameter dictionary per row
(~15 µs each on SQLite): for the tens of thousands of rows of a first git sync or a first
classification that is most of the write. Here the statement is compiled once by the
connection's dialect, each value is converted by its parameter type's own bind processor
(so a SQLite timestamp is stored exactly as SQLAlchemy stores it), and the driver's
`executemany` gets plain tuples (or dictionaries, for a named paramstyle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa


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
    binds = [compiled.binds[name] for name in names]
    converted = [
        (index, convert)
        for index, bind in enumerate(binds)
        if (convert := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]

    def values(row: Mapping[str, Any]) -> list[Any]:
        found = [row.get(bind.key, bind.value) for bind in binds]
        for index, convert in converted:
            found[index] = convert(found[index])
        return found

    parameters: list[Any] = [
        tuple(values(row)) if compiled.positional else dict(zip(names, values(row), strict=True))
        for row in rows
    ]
    connection.exec_driver_sql(compiled.string, parameters)
