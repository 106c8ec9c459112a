"""The changed-sequences record: (service, env) sequences to classify again.

Written in the transaction of every normalized change that alters what classification
reads (a deployment's order, what it deployed, its tags or PATCH; an incident's times,
commit or version; a row moving to another service or env marks both), and consumed by
the classification, which deletes an entry only if no change bumped it meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from connectors.timestamps import utcnow
from connectors.warehouse.schema import changed_sequences, dora_deployments, dora_incidents
from connectors.warehouse.upsert import upsert

Sequence = tuple[str, str]
Row = Mapping[str, Any]

INPUTS: dict[str, tuple[str, ...]] = {
    dora_deployments.name: (
        "service",
        "env",
        "started_at",
        "finished_at",
        "commit_sha",
        "version",
        "custom_tags",
        "change_failure_patch",
    ),
    dora_incidents.name: ("service", "env", "started_at", "finished_at", "commit_sha", "version"),
}


def sequences_touched(
    table: sa.Table, changes: Iterable[tuple[Row | None, Row | None]]
) -> set[Sequence]:
    """The sequences whose classification the `(before, after)` row changes can alter."""
    inputs = INPUTS[table.name]
    touched: set[Sequence] = set()
    for before, after in changes:
        seen = [tuple(row[name] for name in inputs) if row else None for row in (before, after)]
        if seen[0] != seen[1]:
            touched.update((row["service"], row["env"]) for row in (before, after) if row)
    # An incident without a service is attributed to nothing.
    touched.discard(("", ""))
    return {sequence for sequence in touched if sequence[0]}


def record(connection: sa.Connection, sequences: Iterable[Sequence]) -> None:
    """Enter `sequences`; an entry already there gets a new `changed_at`, so a
    classification that read it before will not delete it."""
    now = utcnow()
    entries = [{"service": service, "env": env, "changed_at": now} for service, env in sequences]
    if entries:
        connection.execute(upsert(changed_sequences, connection.dialect), entries)
