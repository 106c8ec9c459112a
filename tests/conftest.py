"""Shared fixtures: a fresh warehouse per test on SQLite and on PostgreSQL.

PostgreSQL tests use the server named by `DORA_TEST_POSTGRES_URL` (`.ci/run`
starts one). Each test gets its own database, so tests and parallel runs never
see each other's rows. Under CI (`CI=true`) a skipped test fails the run: a
PostgreSQL suite that silently did not run is a defect, not a pass.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.warehouse import engine as warehouse_engine
from connectors.warehouse import open_warehouse

POSTGRES_URL_VARIABLE = "DORA_TEST_POSTGRES_URL"


def postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set; .ci/postgres.sh starts a server")
    return url


@pytest.fixture(scope="session")
def postgres_admin_engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine(
        sa.make_url(postgres_admin_url()).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_admin_engine: sa.Engine) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    name = f"dora_t_{uuid.uuid4().hex[:12]}"
    with postgres_admin_engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = postgres_admin_engine.url.set(database=name)
    yield url.render_as_string(hide_password=False)
    with postgres_admin_engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest) -> str:
    """A fresh warehouse URL; every test using it runs once per database."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[sa.Engine]:
    """A migrated warehouse engine on each database."""
    engine = open_warehouse(warehouse_url)
    yield engine
    engine.dispose()


# --- one SQLite warehouse file, and its write lock ---------------------------------------


@pytest.fixture
def warehouse_file(tmp_path: Path) -> Path:
    """A migrated SQLite warehouse file."""
    path = tmp_path / "warehouse.db"
    open_warehouse(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture
def sqlite_warehouse(warehouse_file: Path) -> Iterator[sa.Engine]:
    """An engine on `warehouse_file`."""
    engine = open_warehouse(f"sqlite:///{warehouse_file}")
    yield engine
    engine.dispose()


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """Seconds a writer now waits for the lock before giving up."""
    monkeypatch.setattr(warehouse_engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    return 0.3


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        reporter.write_line(f"CI: {skipped} test(s) skipped; a skipped test fails CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
