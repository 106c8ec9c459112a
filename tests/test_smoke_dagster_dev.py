"""Smoke test of the real deployment: `dagster dev` (webserver + daemon) on loopback.

It lists the assets and checks over GraphQL, launches a 7-day backfill of the two
metric assets with `launchPartitionBackfill` and waits for it to finish as exactly
one successful run, then reads the rows it wrote. The Dagster instance lives in a
temporary `DAGSTER_HOME`; when `DORA_TEST_DAGSTER_POSTGRES_URL` is set (CI sets it)
the instance itself is stored in PostgreSQL (`dagster-postgres`), as in production.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
import yaml

from connectors.events.schemas import DeploymentEvent, FailureEvent
from connectors.events.store import EventStore
from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import dora_change_failure_rate_daily, dora_time_to_restore_daily
from dora_assets.freshness import INGEST_KEYS, METRIC_KEYS, NORMALIZED_KEYS, REPORT_KEYS

REPOSITORY = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EVENT_API_KEY = dg.AssetKey("event_api_events")
DAGSTER_POSTGRES_VARIABLE = "DORA_TEST_DAGSTER_POSTGRES_URL"
DAYS = [f"2025-03-{day:02d}" for day in range(1, 8)]
STARTUP_SECONDS = 240
BACKFILL_SECONDS = 300
FINISHED_BACKFILL = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "COMPLETED"}

ASSETS_AND_CHECKS = """
{ assetNodes { assetKey { path }
  assetChecksOrError { ... on AssetChecks { checks { name } } } } }
"""
LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
BACKFILL_STATUS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status error { message } }
    ... on PythonError { message }
  }
}
"""
BACKFILL_RUNS = """
query ($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""
REPOSITORY_SELECTOR = '{repositoryLocationName: "dora", repositoryName: "__repository__"}'
AUTOMATION = f"""
{{
  schedulesOrError(repositorySelector: {REPOSITORY_SELECTOR}) {{
    ... on Schedules {{ results {{ name scheduleState {{ status }} }} }}
  }}
  sensorsOrError(repositorySelector: {REPOSITORY_SELECTOR}) {{
    ... on Sensors {{ results {{ name sensorState {{ status }} }} }}
  }}
  instance {{ daemonHealth {{ allDaemonStatuses {{ daemonType healthy }} }} }}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_instance_config(dagster_home: Path) -> None:
    config: dict = {"telemetry": {"enabled": False}}
    postgres_url = os.environ.get(DAGSTER_POSTGRES_VARIABLE)
    if postgres_url:
        config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))


def seed_warehouse(url: str) -> None:
    """Two services, three days with deployments, one incident resolved the next day."""
    engine = open_warehouse(url)
    store = EventStore(engine)
    deployments = [
        ("checkout", "2025-03-01T10:00:00"),
        ("checkout", "2025-03-01T23:59:59"),
        ("search", "2025-03-03T09:30:00"),
        ("checkout", "2025-03-07T12:00:00"),
    ]
    store.upsert_deployments(
        [
            DeploymentEvent(
                id=f"smoke-{number}",
                service=service,
                team="shop",
                env="prod",
                started_at=dt.datetime.fromisoformat(finished) - dt.timedelta(minutes=4),
                finished_at=dt.datetime.fromisoformat(finished),
            )
            for number, (service, finished) in enumerate(deployments)
        ]
    )
    store.upsert_failure(
        FailureEvent(
            id="smoke-failure",
            services=("checkout",),
            team="shop",
            env="prod",
            started_at=dt.datetime(2025, 3, 1, 22, 0),
            finished_at=dt.datetime(2025, 3, 2, 1, 30),
        )
    )
    engine.dispose()


def build_normalized_tables(environment: dict[str, str]) -> None:
    """What the 15-minute schedule would have done: take up the API events."""
    selection = ",".join(key.to_user_string() for key in (EVENT_API_KEY, *NORMALIZED_KEYS))
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "dora_assets.definitions"]
    completed = subprocess.run(
        [*command, "--select", selection],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    write_instance_config(dagster_home)
    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    seed_warehouse(warehouse_url)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DORA_", "DAGSTER_", "PAGERDUTY_"))
    }
    environment.update(DAGSTER_HOME=str(dagster_home), DORA_WAREHOUSE_URL=warehouse_url)
    return environment


class DagsterDev:
    def __init__(self, base_url: str, process: subprocess.Popen, log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self.log = log
        self.http = httpx.Client(base_url=base_url, timeout=60)

    def graphql(self, query: str, **variables: object) -> dict:
        response = self.http.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_loaded(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dagster dev exited:\n{self.tail()}"
            try:
                nodes = self.graphql(ASSETS_AND_CHECKS)["assetNodes"]
                if nodes:
                    return
            except (httpx.HTTPError, AssertionError):
                pass
            time.sleep(1)
        raise AssertionError(f"dagster dev did not load the code location:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


@pytest.fixture
def dagster_dev(environment: dict[str, str], tmp_path: Path) -> Iterator[DagsterDev]:
    build_normalized_tables(environment)
    port = free_port()
    command = [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1"]
    log = tmp_path / "dagster_dev.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [*command, "-p", str(port)],
            cwd=REPOSITORY,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", process, log)
    try:
        server.wait_until_loaded()
        yield server
    finally:
        server.http.close()
        # dagster dev's children (webserver, daemon, code server, runs) share its group.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_definitions_validate(tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPOSITORY,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "All code locations passed validation" in completed.stdout + completed.stderr


def test_dagster_dev_lists_assets_and_backfills_seven_days_in_one_run(
    dagster_dev: DagsterDev, environment: dict[str, str]
) -> None:
    nodes = dagster_dev.graphql(ASSETS_AND_CHECKS)["assetNodes"]
    checks = {
        "/".join(node["assetKey"]["path"]): {
            check["name"] for check in node["assetChecksOrError"].get("checks", [])
        }
        for node in nodes
    }
    assert set(checks) == {
        key.to_user_string() for key in (*INGEST_KEYS, *NORMALIZED_KEYS, *METRIC_KEYS, *REPORT_KEYS)
    }
    for metric in METRIC_KEYS:
        assert {"reconciles_with_sources", "yesterday_built_by_deadline"} <= checks[
            metric.to_user_string()
        ]
    for source in (*INGEST_KEYS, *NORMALIZED_KEYS):
        assert "freshness_check" in checks[source.to_user_string()]

    launched = dagster_dev.graphql(
        LAUNCH_BACKFILL,
        params={
            "partitionNames": DAYS,
            "assetSelection": [{"path": key.path} for key in METRIC_KEYS],
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    deadline = time.monotonic() + BACKFILL_SECONDS
    status = None
    while time.monotonic() < deadline:
        backfill = dagster_dev.graphql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        status = backfill.get("status")
        if status in FINISHED_BACKFILL:
            break
        time.sleep(2)
    assert status == "COMPLETED_SUCCESS", f"{backfill}\n{dagster_dev.tail()}"

    runs = dagster_dev.graphql(BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]
    assert [run["status"] for run in runs] == ["SUCCESS"]
    tags = {tag["key"]: tag["value"] for tag in runs[0]["tags"]}
    assert tags["dagster/asset_partition_range_start"] == DAYS[0]
    assert tags["dagster/asset_partition_range_end"] == DAYS[-1]

    # The daemon that ran the backfill also runs the schedules and sensors, on by default.
    automation = dagster_dev.graphql(AUTOMATION)
    assert {
        schedule["name"]: schedule["scheduleState"]["status"]
        for schedule in automation["schedulesOrError"]["results"]
    } == {
        "refresh_sources_every_15_minutes": "RUNNING",
        "daily_metrics_at_0100_utc": "RUNNING",
        "audit_metrics_daily_at_0300_utc": "RUNNING",
    }
    assert {
        sensor["name"]: sensor["sensorState"]["status"]
        for sensor in automation["sensorsOrError"]["results"]
    } == {"late_data_sensor": "RUNNING", "freshness_checks_sensor": "RUNNING"}
    daemons = {
        daemon["daemonType"]: daemon["healthy"]
        for daemon in automation["instance"]["daemonHealth"]["allDaemonStatuses"]
    }
    assert daemons["SCHEDULER"] and daemons["SENSOR"] and daemons["BACKFILL"], daemons

    instance_home = Path(environment["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        for key in METRIC_KEYS:
            assert instance.get_materialized_partitions(key) >= set(DAYS)

    engine = open_warehouse(environment["DORA_WAREHOUSE_URL"])
    with engine.connect() as connection:
        rates = connection.execute(
            sa.select(
                dora_change_failure_rate_daily.c.day,
                dora_change_failure_rate_daily.c.service,
                dora_change_failure_rate_daily.c.deployments,
                dora_change_failure_rate_daily.c.failures,
                dora_change_failure_rate_daily.c.change_failure_rate,
            ).order_by(
                dora_change_failure_rate_daily.c.day, dora_change_failure_rate_daily.c.service
            )
        ).all()
        restores = connection.execute(
            sa.select(
                dora_time_to_restore_daily.c.day,
                dora_time_to_restore_daily.c.service,
                dora_time_to_restore_daily.c.resolved_incidents,
                dora_time_to_restore_daily.c.median_seconds,
            )
        ).all()
    engine.dispose()
    assert [(str(day), *rest) for day, *rest in rates] == [
        ("2025-03-01", "checkout", 2, 1, 0.5),
        ("2025-03-03", "search", 1, 0, 0.0),
        ("2025-03-07", "checkout", 1, 0, 0.0),
    ]
    # Started 22:00 on 1 March, resolved 01:30 on 2 March: 3.5 hours, counted on the 2nd.
    assert [(str(day), *rest) for day, *rest in restores] == [
        ("2025-03-02", "checkout", 1, 3.5 * 3600)
    ]
