"""`executemany` and `execute_with_rows` store, and `fetch` reads, exactly what
`Connection.execute` would, on both databases."""

import datetime as dt

import sqlalchemy as sa
from warehouse_rows import deployment_row

from connectors.warehouse.bulk import execute_with_rows, executemany, fetch
from connectors.warehouse.schema import dora_deployments, dora_incident_deployments, git_commits
from connectors.warehouse.upsert import insert, upsert

MOMENT = dt.datetime(2025, 3, 1, 10, 0, 0)  # no microseconds: SQLite still stores ".000000"


def _commits(repository: str) -> list[dict[str, object]]:
    return [
        {
            "repository_url": repository,
            "commit_sha": f"{number:040x}",
            "parents": "" if number == 0 else f"{number - 1:040x}",
            "authored_at": MOMENT + dt.timedelta(seconds=number, microseconds=7 * number),
            "committed_at": MOMENT,
            "generation": number + 1,
            "fetched_at": MOMENT,
        }
        for number in range(3)
    ]


def test_inserts_store_what_sqlalchemy_stores(warehouse: sa.Engine) -> None:
    g = git_commits.c
    with warehouse.begin() as connection:
        statement = insert(git_commits, connection.dialect).on_conflict_do_nothing()
        connection.execute(statement, _commits("by-sqlalchemy"))
        executemany(connection, statement, _commits("in-bulk"))
        executemany(connection, statement, _commits("in-bulk"))  # conflicts do nothing
        executemany(connection, statement, [])

    def stored(repository: str) -> list[tuple]:
        columns = [g.commit_sha, g.parents, g.authored_at, g.committed_at, g.generation]
        with warehouse.connect() as connection:
            typed = connection.execute(
                sa.select(*columns).where(g.repository_url == repository).order_by(g.commit_sha)
            ).all()
            # As other readers of the table (BI tools, dbt) see it.
            text = connection.execute(
                sa.select(*(sa.cast(column, sa.String) for column in columns))
                .where(g.repository_url == repository)
                .order_by(g.commit_sha)
            ).all()
        return [*typed, *text]

    assert stored("in-bulk") == stored("by-sqlalchemy")
    assert stored("in-bulk")[1][2] == MOMENT + dt.timedelta(seconds=1, microseconds=7)


def test_an_update_by_its_own_parameter_keeps_constants(warehouse: sa.Engine) -> None:
    d = dora_deployments.c
    with warehouse.begin() as connection:
        connection.execute(
            sa.insert(dora_deployments),
            [deployment_row(name, MOMENT) for name in ("a", "b", "c")],
        )
        executemany(
            connection,
            sa.update(dora_deployments)
            .where(d.deployment_id == sa.bindparam("key"))
            .values(recovered_at=sa.bindparam("recovered_at"), change_failure_reason="manual"),
            [{"key": "a", "recovered_at": MOMENT}, {"key": "c", "recovered_at": None}],
        )
    with warehouse.connect() as connection:
        found = connection.execute(
            sa.select(d.deployment_id, d.recovered_at, d.change_failure_reason).order_by(
                d.deployment_id
            )
        ).all()
    assert found == [("a", MOMENT, "manual"), ("b", None, None), ("c", None, "manual")]


def test_fetch_reads_what_sqlalchemy_reads(warehouse: sa.Engine) -> None:
    d = dora_deployments.c
    later = MOMENT + dt.timedelta(days=1, microseconds=5)
    with warehouse.begin() as connection:
        # One at a time: an INSERT of several rows takes the first row's columns.
        for row in (
            deployment_row("a", MOMENT),
            deployment_row(
                "b",
                later,
                version="v2",
                change_failure=True,
                recovered_at=later,
                recovered_day=later.date(),
            ),
            deployment_row("c", later),
        ):
            connection.execute(sa.insert(dora_deployments), row)
    statement = (
        sa.select(
            d.deployment_id,
            d.finished_at,
            d.finished_day,
            d.change_failure,
            d.recovered_at,
            d.recovered_day,
            d.version,
        )
        .where(d.deployment_id != "c", d.finished_at >= sa.bindparam("since"))
        .order_by(d.deployment_id)
    )
    with warehouse.connect() as connection:
        for since in (MOMENT, later, later + dt.timedelta(microseconds=1)):
            expected = connection.execute(statement, {"since": since}).all()
            assert fetch(connection, statement, {"since": since}) == [tuple(r) for r in expected]
        assert fetch(connection, statement, {"since": later}) == [
            ("b", later, later.date(), True, later, later.date(), "v2")
        ]


def test_fetch_reads_numbers_as_sqlalchemy_does(warehouse: sa.Engine) -> None:
    # psycopg's numeric result processors depend on the column's type code.
    a = dora_incident_deployments.c
    with warehouse.begin() as connection:
        connection.execute(
            sa.insert(dora_incident_deployments),
            [
                {"incident_id": i, "service": "api", "deployment_id": "d", "method": "preceding",
                 "lag_seconds": lag}
                for i, lag in (("i1", 0.5), ("i2", 3600.25))
            ],
        )  # fmt: skip
    statement = (
        sa.select(a.deployment_id, sa.func.count(), sa.func.sum(a.lag_seconds), a.lag_seconds)
        .group_by(a.deployment_id, a.lag_seconds)
        .order_by(a.lag_seconds)
    )
    with warehouse.connect() as connection:
        expected = [tuple(row) for row in connection.execute(statement).all()]
        assert (
            fetch(connection, statement)
            == expected
            == [
                ("d", 1, 0.5, 0.5),
                ("d", 1, 3600.25, 3600.25),
            ]
        )


def test_rows_written_through_json_are_what_sqlalchemy_stores(warehouse: sa.Engine) -> None:
    d = dora_deployments.c
    # Every kind of value the classification writes: a boolean, a string, a timestamp
    # with and without microseconds, a date, NULL.
    classification = {
        "change_failure": True,
        "change_failure_reason": "rollback",
        "is_rollback": False,
        "recovered_at": MOMENT + dt.timedelta(hours=30, microseconds=5),
        "recovered_day": (MOMENT + dt.timedelta(hours=30)).date(),
        "remediation_deployment_id": None,
        "ingested_at": MOMENT,
    }
    columns = {"deployment_id": d.deployment_id.type} | {
        name: d[name].type for name in classification
    }
    with warehouse.begin() as connection:
        connection.execute(
            sa.insert(dora_deployments),
            [deployment_row(name, MOMENT, remediation_deployment_id="x") for name in "abc"],
        )
        connection.execute(
            sa.update(dora_deployments).where(d.deployment_id == "a").values(classification)
        )
        execute_with_rows(
            connection,
            lambda rows: (
                sa.update(dora_deployments)
                .where(d.deployment_id == rows.c.deployment_id)
                .values({name: rows.c[name] for name in classification})
            ),
            columns,
            [("b", *classification.values())],
        )
        attributions = [
            ("i1", "checkout", "b", "version", 1800.0),
            ("i2", "checkout", "c", "preceding", 0.5),
        ]

        def write_attributions(rows: list[tuple]) -> None:
            execute_with_rows(
                connection,
                lambda written: upsert(
                    dora_incident_deployments, connection.dialect, rows=sa.select(written)
                ),
                {name: dora_incident_deployments.c[name].type for name in ATTRIBUTION_COLUMNS},
                rows,
            )

        write_attributions(attributions)
        # A key written again is updated.
        write_attributions([("i1", "checkout", "c", "commit", 60.0)])
    with warehouse.connect() as connection:
        stored = [
            connection.execute(
                sa.select(*(d[name] for name in classification)).where(d.deployment_id == key)
            ).one()
            for key in "ab"
        ]
        as_text = [
            connection.execute(
                sa.select(*(sa.cast(d[name], sa.String) for name in classification)).where(
                    d.deployment_id == key
                )
            ).one()
            for key in "ab"
        ]
        written = connection.execute(
            sa.select(dora_incident_deployments).order_by(dora_incident_deployments.c.incident_id)
        ).all()
    assert stored[1] == stored[0] == tuple(classification.values())
    assert as_text[1] == as_text[0]
    assert written == [("i1", "checkout", "c", "commit", 60.0), attributions[1]]


ATTRIBUTION_COLUMNS = ("incident_id", "service", "deployment_id", "method", "lag_seconds")
