import datetime as dt

import sqlalchemy as sa
from alembic import command
from warehouse_rows import deployment_row

from connectors.warehouse import create_engine, open_warehouse, upgrade
from connectors.warehouse.migrate import alembic_config, is_current
from connectors.warehouse.schema import metadata

MOMENT = dt.datetime(2025, 3, 1, 10)


def built_by(warehouse_url: str, revision: str) -> sa.Engine:
    """A warehouse as the migrations up to `revision` left it."""
    engine = create_engine(warehouse_url)
    command.upgrade(alembic_config(engine), revision)
    return engine


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


def test_revision_0004_adds_the_summary_to_a_warehouse_built_by_0003_with_data(
    warehouse_url: str,
) -> None:
    engine = built_by(warehouse_url, "0003")
    old = sa.MetaData()
    old.reflect(engine)
    assert "dora_summary" not in old.tables
    with engine.begin() as connection:
        connection.execute(
            sa.insert(old.tables["dora_deployments"]),
            [deployment_row("d1", MOMENT, change_failure=True, change_failure_reason="manual")],
        )

    upgrade(engine)

    assert is_current(engine)
    columns = {column["name"] for column in sa.inspect(engine).get_columns("dora_summary")}
    assert columns == set(metadata.tables["dora_summary"].columns.keys())
    with engine.connect() as connection:
        kept = connection.execute(
            sa.select(metadata.tables["dora_deployments"].c.change_failure_reason)
        ).all()
    assert kept == [("manual",)]
    engine.dispose()


def test_migrations_build_every_index_the_schema_declares(warehouse_url: str) -> None:
    engine = open_warehouse(warehouse_url)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        built = {index["name"] for index in inspector.get_indexes(table.name)}
        assert {index.name for index in table.indexes} <= built, table.name
    engine.dispose()


def test_revision_0006_indexes_a_warehouse_built_by_0005_with_data(
    warehouse_url: str,
) -> None:
    engine = built_by(warehouse_url, "0005")
    assert "ix_dora_incidents_sequence" not in {
        index["name"] for index in sa.inspect(engine).get_indexes("dora_incidents")
    }
    moment = dt.datetime(2025, 3, 1, 10)
    incidents = metadata.tables["dora_incidents"]
    with engine.begin() as connection:
        connection.execute(
            sa.insert(incidents),
            [
                {
                    "incident_id": "i1",
                    "service": "checkout",
                    "team": "payments",
                    "env": "prod",
                    "status": "resolved",
                    "source": "api",
                    "started_at": moment,
                    "started_day": moment.date(),
                    "ingested_at": moment,
                }
            ],
        )

    upgrade(engine)

    assert is_current(engine)
    inspector = sa.inspect(engine)
    assert "ix_dora_incidents_sequence" in {
        index["name"] for index in inspector.get_indexes("dora_incidents")
    }
    assert "ix_dora_incident_deployments_service" in {
        index["name"] for index in inspector.get_indexes("dora_incident_deployments")
    }
    with engine.connect() as connection:
        assert connection.execute(sa.select(incidents.c.incident_id)).all() == [("i1",)]
    engine.dispose()


CHECK_INDEXES = {
    "ix_dora_deployments_recovered_before_finished",
    "ix_dora_deployments_change_failure_reason",
    "ix_dora_deployments_without_sha_or_version",
}


def test_revision_0007_indexes_a_warehouse_built_by_0006_with_data(warehouse_url: str) -> None:
    engine = built_by(warehouse_url, "0006")
    deployments = metadata.tables["dora_deployments"]
    rows = [
        deployment_row(
            name, MOMENT, change_failure=reason is not None, change_failure_reason=reason
        )
        for name, reason in (("d0", None), ("d1", "rollback"), ("d2", None))
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(deployments), rows)
    assert not CHECK_INDEXES & {i["name"] for i in sa.inspect(engine).get_indexes(deployments.name)}

    upgrade(engine)

    assert is_current(engine)
    assert {i["name"] for i in sa.inspect(engine).get_indexes(deployments.name)} >= CHECK_INDEXES
    with engine.connect() as connection:
        reasons = connection.execute(
            sa.select(deployments.c.deployment_id, deployments.c.change_failure_reason).order_by(
                deployments.c.deployment_id
            )
        ).all()
    assert reasons == [("d0", None), ("d1", "rollback"), ("d2", None)]
    engine.dispose()
