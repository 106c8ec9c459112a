"""One normalized table's refresh: configuration changes first, then the change feeds.

The part of `DORA_CONFIG` a table's rows depend on (the service catalog; for
incidents also the PagerDuty mapping and filters) is saved with the table's state once
applied. When it differs at the next run, only the landing keys whose rows it can
change are re-applied (for a catalog edit: rows of the services whose team changed and
whose event named no team of its own), then each change feed is read from its
watermark.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from connectors.config import DoraConfig
from connectors.warehouse import reading
from connectors.warehouse.watermarks import lock_state, read_state, save_state
from dora_assets.normalized.changes import (
    REREAD_OVERLAP,
    Applied,
    ChangeFeed,
    Normalization,
    apply_all,
    apply_feed,
)

ConfigDocument = dict[str, Any]
# (configuration as last applied, configuration now) -> the landing keys to re-apply, if any
AffectedKeys = Callable[[ConfigDocument, ConfigDocument], sa.Select | None]


@dataclass(frozen=True)
class Source:
    """One landing source of a normalized table."""

    normalization: Normalization
    feeds: Sequence[ChangeFeed]
    affected_by_config: AffectedKeys


def config_document(config: DoraConfig) -> ConfigDocument:
    """The settings normalized rows depend on, as plain JSON-able values."""
    filters = config.pagerduty_filters
    return {
        "services": dict(sorted(config.service_teams.items())),
        "pagerduty_services": {
            key: [mapping.service, mapping.team, mapping.env]
            for key, mapping in sorted(config.pagerduty_services.items())
        },
        "pagerduty_filters": [
            sorted(filters.urgencies),
            sorted(filters.priorities),
            sorted(filters.services),
        ],
    }


def services_with_new_team(before: ConfigDocument, after: ConfigDocument) -> set[str]:
    """Services the catalog now assigns another team (or starts or stops listing)."""
    old, new = before["services"], after["services"]
    return {service for service in old.keys() | new.keys() if old.get(service) != new.get(service)}


def refresh(
    engine: sa.Engine,
    table_name: str,
    sources: Sequence[Source],
    config: DoraConfig,
    on_progress: Callable[[str], None] | None = None,
    overlap: dt.timedelta = REREAD_OVERLAP,
) -> Applied:
    """Apply configuration changes and every change feed of `sources`; what changed."""
    applied = Applied()
    state = f"{table_name}.config"
    document = config_document(config)
    with reading(engine) as connection:
        saved = read_state(connection, state)
    before = json.loads(saved) if saved else None
    if before is not None and before != document:
        for source in sources:
            keys = source.affected_by_config(before, document)
            if keys is not None:
                if on_progress:
                    on_progress(f"{table_name}: DORA_CONFIG changed; re-applying affected rows")
                apply_all(engine, keys, source.normalization, applied, on_progress)
    # On the first run nothing is saved yet: the feeds, without watermarks, read everything.
    for source in sources:
        for feed in source.feeds:
            apply_feed(engine, feed, source.normalization, applied, on_progress, overlap)
    if before != document:
        with engine.begin() as connection:
            lock_state(connection, state)
            save_state(connection, state, json.dumps(document, sort_keys=True))
    return applied
