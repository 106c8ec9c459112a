"""`WriteTurns` on SQLite: a long job's commits skip the WAL fsync, and no connection goes
back to the pool (where API writes take it) without it."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.warehouse import WriteTurns, create_engine

FULL, NORMAL = 2, 1


def synchronous(connection: sa.Connection) -> int:
    return connection.exec_driver_sql("PRAGMA synchronous").scalar_one()


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    # One pooled connection: the job's and the next writer's are the same one.
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}", pool_size=1, max_overflow=0)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    return engine


def test_a_job_commits_without_fsync_and_hands_back_durable_connections(
    engine: sa.Engine,
) -> None:
    turns = WriteTurns(engine)
    with turns.begin() as connection:
        assert synchronous(connection) == NORMAL
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.begin() as connection:
        assert synchronous(connection) == FULL
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
    assert turns.last_write_s > 0


def test_a_failed_write_rolls_back_and_still_hands_back_a_durable_connection(
    engine: sa.Engine,
) -> None:
    turns = WriteTurns(engine)
    with pytest.raises(RuntimeError), turns.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("mid-write")
    with engine.begin() as connection:
        assert synchronous(connection) == FULL
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 0
