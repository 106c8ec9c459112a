"""`dora demo` end to end, as a user runs it: a fresh directory, the embedded defaults.

The demo's history is generated deterministically, so the test recomputes what the
metric tables must hold straight from that history (deployments per finished day,
failures per started day, per service) and compares; a second run must leave every
table exactly as the first did.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from connectors.warehouse import create_engine
from connectors.warehouse.schema import (
    dora_change_failure_rate_daily,
    dora_change_failures_daily,
    dora_change_lead_time_daily,
    dora_deployment_commits,
    dora_deployments,
    dora_failed_deployment_recovery_daily,
    dora_incident_deployments,
    dora_incidents,
    dora_summary,
    dora_time_to_restore_daily,
)
from dora_assets.demo.history import generate

DAYS = 5
DORA = Path(sys.executable).with_name("dora")


def run_demo(directory: Path) -> str:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DORA_", "DAGSTER_", "PAGERDUTY_"))
    }
    completed = subprocess.run(
        [str(DORA), "demo", "--days", str(DAYS)],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    tables = (
        dora_deployments,
        dora_incidents,
        dora_incident_deployments,
        dora_change_failure_rate_daily,
        dora_time_to_restore_daily,
        dora_change_failures_daily,
        dora_failed_deployment_recovery_daily,
        dora_summary,
        dora_deployment_commits,
        dora_change_lead_time_daily,
    )
    ignored = {"ingested_at"}  # when a row was (re)built, not what it says
    with engine.connect() as connection:
        return {
            table.name: sorted(
                connection.execute(
                    sa.select(*(column for column in table.c if column.name not in ignored))
                ).all(),
                key=repr,
            )
            for table in tables
        }


def expected_counts(first_day: dt.date, end_day: dt.date) -> dict[tuple[str, str], tuple[int, int]]:
    """(service, day) -> (deployments, failures), straight from the generated history."""
    history = generate(first_day, end_day)
    deployments = collections.Counter(
        (event["service"], event["finished_at"][:10]) for event in history.deployments
    )
    failures = collections.Counter(
        (incident.service.name, incident.created_at.date().isoformat())
        for incident in history.pagerduty
    )
    for failure in history.failures:
        for service in failure["services"] or [""]:
            failures[(service, failure["started_at"][:10])] += 1
    return {key: (deployments[key], failures[key]) for key in deployments | failures}


def test_demo_lands_the_history_builds_the_metrics_and_is_idempotent(tmp_path: Path) -> None:
    output = run_demo(tmp_path)
    today = dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=DAYS)

    assert "dora demo: 5 days of synthetic history into sqlite:///.dora/warehouse.db" in output
    assert "dora_change_failure_rate_daily: 5 partitions" in output
    assert "dora_time_to_restore_daily: 5 partitions" in output
    header = r"deployment CFR +incident CFR +rework rate +median recovery +median TTR"
    assert re.search(header, output)
    assert re.search(r"^org +all +\d+ ", output, re.MULTILINE)
    assert "Report: " in output and "Telemetry" not in output
    assert "dora_change_failures_daily: 5 partitions" in output
    assert "make dev" in output
    assert "checks not passing" not in output

    engine = create_engine(f"sqlite:///{tmp_path / '.dora' / 'warehouse.db'}")
    c = dora_change_failure_rate_daily.c
    with engine.connect() as connection:
        stored = {
            (service, str(day)): (deployments, failures)
            for service, day, deployments, failures in connection.execute(
                sa.select(
                    c.service, c.day, sa.func.sum(c.deployments), sa.func.sum(c.failures)
                ).group_by(c.service, c.day)
            )
        }
    assert stored == expected_counts(first_day, today)
    assert (tmp_path / ".dora" / "dagster_home").is_dir()
    assert "pagerduty:" in (tmp_path / ".dora" / "demo" / "dora.yaml").read_text()
    assert "Team payments" in (tmp_path / ".dora" / "report.html").read_text()

    first = snapshot(engine)
    assert first["dora_time_to_restore_daily"], "some incident resolved within the history"
    assert first["dora_incident_deployments"], "incidents are attributed to deployments"
    assert first["dora_deployment_commits"], "deployments ship commits of the demo repositories"
    assert first["dora_change_lead_time_daily"]
    assert all(row.lead_time_seconds > 0 for row in first["dora_deployment_commits"])
    assert "checks not passing" not in output
    # Every PATCHed deployment is a manual change failure, and every hotfix and every
    # PATCH-named remedy (the next deployment, a rollforward) is flagged a rollforward.
    history = generate(first_day, today)
    deployments = first["dora_deployments"]
    patched = {deployment_id for deployment_id, _ in history.patches}
    hotfixes = [d for d in history.deployments if d["version"].endswith("-hotfix")]
    assert {d.deployment_id for d in deployments if d.change_failure_reason == "manual"} == patched
    assert sum(d.is_rollforward for d in deployments) == len(hotfixes) + len(patched)
    second_output = run_demo(tmp_path)
    assert snapshot(engine) == first
    assert (
        second_output.split("DORA levels over ")[1].split("Done in")[0]
        == output.split("DORA levels over ")[1].split("Done in")[0]
    )
    engine.dispose()
