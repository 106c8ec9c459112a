"""Resources of the code location: the warehouse engine, the PagerDuty API credentials and
the git mirrors."""

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr

from connectors import settings
from connectors.config import load_config
from connectors.git.command import DEFAULT_TIMEOUT_SECONDS
from connectors.git.mirror import Mirrors
from connectors.pagerduty.client import PagerDutyClient
from connectors.warehouse import is_sqlite, open_warehouse

PAGERDUTY_TOKEN_VARIABLE = "PAGERDUTY_API_TOKEN"


# The normalized refresh runs the same `... IN (<2,000 keys>)` queries many times; after
# five executions psycopg prepares them and PostgreSQL may switch to a generic plan, which
# for a list of keys is a sequential scan per execution (10-18 s at 1M deployments,
# measured by bench/steady_state.py). Custom plans keep the index lookups.
_ASSET_ENGINE_OPTIONS: dict[str, dict[str, object]] = {
    "postgresql": {"connect_args": {"options": "-c plan_cache_mode=force_custom_plan"}}
}


class WarehouseResource(dg.ConfigurableResource):
    """The SQLAlchemy warehouse (SQLite by default, PostgreSQL in production), migrated
    on first use."""

    url: str = Field(
        default_factory=settings.warehouse_url,
        description="SQLAlchemy URL of the warehouse; defaults to DORA_WAREHOUSE_URL.",
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @classmethod
    def from_environment(cls) -> "WarehouseResource":
        """Bound to DORA_WAREHOUSE_URL through dg.EnvVar when it is set, so the Dagster UI
        shows the variable's name rather than a URL that may carry a password."""
        if os.environ.get(settings.WAREHOUSE_URL_VARIABLE):
            return cls(url=dg.EnvVar(settings.WAREHOUSE_URL_VARIABLE))
        return cls()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = open_warehouse(
                self.url, **_ASSET_ENGINE_OPTIONS.get(sa.make_url(self.url).get_backend_name(), {})
            )
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def rewriting(self, *tables: sa.Table) -> Iterator[sa.Connection]:
        """One transaction that holds `tables` against other writers until it commits.

        SQLite's BEGIN IMMEDIATE (see connectors.warehouse.engine) already admits one
        writer at a time; on PostgreSQL the SHARE ROW EXCLUSIVE lock conflicts with
        itself and with every writer but not with readers, so two overlapping rebuilds
        run one after the other while readers keep seeing the last committed state.
        """
        with self.engine.begin() as connection:
            if not is_sqlite(self.engine):
                preparer = connection.dialect.identifier_preparer
                # One statement, names in a fixed order: two writers can't deadlock.
                names = ", ".join(
                    preparer.format_table(table) for table in sorted(tables, key=lambda t: t.name)
                )
                connection.exec_driver_sql(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")
            yield connection

    @contextmanager
    def replacing_days(
        self, table: sa.Table, first_day: dt.date, end_day: dt.date
    ) -> Iterator[sa.Connection]:
        """Delete the days `[first_day, end_day)` of a metric table; the caller inserts them anew.

        Both happen in one locked transaction, so a concurrent reader never sees half a
        day and two overlapping backfills can't interleave their deletes and inserts.
        """
        with self.rewriting(table) as connection:
            connection.execute(
                sa.delete(table).where(table.c.day >= first_day, table.c.day < end_day)
            )
            yield connection


class PagerDutyMissingTokenError(dg.Failure):
    pass


class PagerDutyResource(dg.ConfigurableResource):
    """PagerDuty REST API credentials; the token comes from PAGERDUTY_API_TOKEN via dg.EnvVar."""

    api_token: str | None = Field(
        default=None, description="PagerDuty REST API key (PAGERDUTY_API_TOKEN)."
    )
    api_url: str = Field(
        default_factory=settings.pagerduty_api_url,
        description="https://api.pagerduty.com or https://api.eu.pagerduty.com"
        " (PAGERDUTY_API_URL).",
    )

    @classmethod
    def from_environment(cls) -> "PagerDutyResource":
        # A dg.EnvVar naming an unset variable fails every run at launch, not just the
        # PagerDuty asset's; so the token is bound only when it is set, and its absence
        # is reported by the asset that needs it.
        token = (
            dg.EnvVar(PAGERDUTY_TOKEN_VARIABLE)
            if os.environ.get(PAGERDUTY_TOKEN_VARIABLE)
            else None
        )
        return cls(api_token=token)

    def require_token(self) -> str:
        if not self.api_token:
            raise PagerDutyMissingTokenError(
                description=(
                    f"{PAGERDUTY_TOKEN_VARIABLE} is not set: export a PagerDuty REST API key"
                    " (Integrations > API Access Keys) in the environment of the Dagster code"
                    " location and reload it. The other assets do not need it."
                )
            )
        return self.api_token

    def client(self) -> PagerDutyClient:
        return PagerDutyClient(self.require_token(), self.api_url)


class GitResource(dg.ConfigurableResource):
    """Where the repositories' mirrors live (DORA_GIT_CACHE) and how long a git call may
    take. Credentials are git's own (credential helpers, .netrc, GIT_CONFIG_* variables);
    `DORA_CONFIG` `git.repositories` may map a repository to another clone URL or path."""

    cache: str = Field(
        default_factory=lambda: str(settings.git_cache()),
        description="Folder of the mirrors; defaults to DORA_GIT_CACHE (.dora/git).",
    )
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS, description="Longest a single git call may run."
    )

    def mirrors(self) -> Mirrors:
        return Mirrors(Path(self.cache), load_config().git_clone_urls, self.timeout_seconds)
