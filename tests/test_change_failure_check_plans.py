"""The change-failure checks run after every refresh: on SQLite none of them reads
`dora_deployments` whole (each finds its offenders through a partial index of revision
0007). PostgreSQL's planner picks by cost, and scans a table this small whatever the
indexes, so the plans are asserted on SQLite only; the migration test covers both."""

import sqlalchemy as sa

from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import dora_deployments
from dora_assets.change_failures.checks import DEPLOYMENT_OFFENDERS

# Indexes that hold only what a check can name: scanning one whole is fine.
PARTIAL = {
    index.name
    for index in dora_deployments.indexes
    if index.dialect_options["sqlite"]["where"] is not None
}


def test_no_deployment_check_scans_the_deployments_table(sqlite_url: str) -> None:
    engine = open_warehouse(sqlite_url)
    with engine.connect() as connection:
        for name, (offenders, _) in DEPLOYMENT_OFFENDERS.items():
            counted = sa.select(sa.func.count()).select_from(offenders.subquery())
            sql = str(counted.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            scans = [step for step in plan if step.startswith("SCAN dora_deployments")]
            assert all(any(index in step for index in PARTIAL) for step in scans), (name, plan)
            assert any("INDEX" in step for step in plan), (name, plan)
    engine.dispose()
