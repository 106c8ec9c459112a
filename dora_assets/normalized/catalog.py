"""The service catalog of DORA_CONFIG, mirrored into the warehouse so team fill-in is a join."""

import sqlalchemy as sa

from connectors.config import DoraConfig
from connectors.warehouse.schema import dora_service_catalog


def refresh_service_catalog(connection: sa.Connection, config: DoraConfig) -> None:
    """Replace the catalog rows; the caller's transaction must hold `dora_service_catalog`."""
    connection.execute(sa.delete(dora_service_catalog))
    if config.service_teams:
        connection.execute(
            sa.insert(dora_service_catalog),
            [{"service": service, "team": team} for service, team in config.service_teams.items()],
        )


def team_or_catalog_team(event_team: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The event's own team, else the catalog team of its service (joined as
    `dora_service_catalog`), else ''."""
    return sa.func.coalesce(sa.func.nullif(event_team, ""), dora_service_catalog.c.team, "")
