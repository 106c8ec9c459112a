import sqlalchemy as sa

from connectors.warehouse import open_warehouse
from connectors.warehouse.migrate import is_current
from connectors.warehouse.schema import metadata


def test_migrations_create_every_table_and_are_idempotent(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    open_warehouse(warehouse_url).dispose()  # a second start-up is a no-op
    tables = set(sa.inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert is_current(engine)
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_busy_timeout(sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    engine.dispose()


def test_default_sqlite_folder_is_created(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DORA_WAREHOUSE_URL", raising=False)
    engine = open_warehouse()
    assert (tmp_path / ".dora" / "warehouse.db").exists()
    engine.dispose()
