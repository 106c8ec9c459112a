"""Change lead time end to end on SQLite and PostgreSQL, with a real git repository made
in a temporary folder, mirrored through the `git_commits` asset.

Repository https://git.example/acme/shop (cloned from a local path via DORA_CONFIG):

  a  03-01 08:00    b  03-01 09:00    f  authored 02-27 10:00 on a branch (rebased)
  m  03-01 11:00 merges f             c  03-02 08:00    d  03-03 08:00
  e  05-10 08:00    g  05-11 08:00 (pushed after the first fetch)

checkout/prod (team payments): D1 a 03-01 08:30 first: nothing; D2 m 03-01 12:00 ships b
and f (the merge is excluded): 10,800 s and 180,000 s; D3 a 03-02 09:00 a rollback:
nothing; D4 d 03-03 10:00 ships b, f, c, d (PREV is a again): 176,400, 345,600, 93,600,
7,200 s; D7 no git 03-04; D8 e 05-10 10:00 more than 60 days after D4: nothing; D9 g
05-11 10:00 not fetched yet, then ships g (7,200 s). search/prod: D5 d 03-03 11:00, the
first of its sequence: nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from incremental_support import refresh_all

from connectors.config import DoraConfig
from connectors.events.schemas import DeploymentEvent, parse_deployment
from connectors.events.store import EventStore
from connectors.git.ingest import sync_repositories
from connectors.git.synthetic import PlannedCommit, fast_import
from connectors.warehouse.schema import (
    deployment_commit_ranges,
    dora_change_lead_time_daily,
    dora_deployment_commits,
    git_commits,
)
from dora_assets import changed_days
from dora_assets.ingest.git import git_commits_asset
from dora_assets.lead_time import evaluate
from dora_assets.lead_time.evaluate import evaluate_changed
from dora_assets.metrics.change_lead_time import (
    change_lead_time_rows,
    dora_change_lead_time_daily_asset,
    dora_change_lead_time_daily_reconciliation,
)
from dora_assets.metrics.rebuild import replace_days
from dora_assets.normalized.deployment_commits import dora_deployment_commits_asset
from dora_assets.resources import GitResource, WarehouseResource

URL = "https://git.example/acme/shop"
TEAMS = {"checkout": "payments", "search": "discovery"}
LEAD = dora_change_lead_time_daily.name


def at(month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, month, day, hour, minute)


@pytest.fixture
def upstream(tmp_path: Path) -> dict[str, str]:
    plan = [
        PlannedCommit("a", at(3, 1, 8)),
        PlannedCommit("b", at(3, 1, 9), (0,)),
        PlannedCommit("f", at(2, 27, 10), (1,), "feature", at(3, 1, 10)),
        PlannedCommit("m", at(3, 1, 11), (1, 2)),
        PlannedCommit("c", at(3, 2, 8), (3,)),
        PlannedCommit("d", at(3, 3, 8), (4,)),
        PlannedCommit("e", at(5, 10, 8), (5,)),
    ]
    shas = fast_import(tmp_path / "upstream", plan)
    return dict(zip("abfmcde", shas, strict=True))


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "dora.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "services": {service: {"team": team} for service, team in TEAMS.items()},
                "git": {"repositories": {URL: {"url": str(tmp_path / "upstream")}}},
            }
        )
    )
    monkeypatch.setenv("DORA_CONFIG", str(config))
    return tmp_path


def deploy(
    events: EventStore,
    identifier: str,
    finished: dt.datetime,
    sha: str | None,
    service: str = "checkout",
) -> None:
    events.upsert_deployment(
        DeploymentEvent(
            id=identifier,
            service=service,
            env="prod",
            started_at=finished - dt.timedelta(minutes=10),
            finished_at=finished,
            commit_sha=sha,
            repository_url=URL if sha else None,
        )
    )


def run_git_assets(
    warehouse_url: str, cache: Path, *, fetch: bool = True
) -> dg.ExecuteInProcessResult:
    assets = (
        [git_commits_asset, dora_deployment_commits_asset]
        if fetch
        else [dora_deployment_commits_asset]
    )
    result = dg.materialize(
        assets,
        resources={
            "warehouse": WarehouseResource(url=warehouse_url),
            "git": GitResource(cache=str(cache)),
        },
        selection=[asset.key for asset in assets],
    )
    assert result.success
    return result


def shipped(engine: sa.Engine) -> dict[str, dict[str, float]]:
    c = dora_deployment_commits.c
    found: dict[str, dict[str, float]] = {}
    with engine.connect() as connection:
        for deployment_id, sha, lead in connection.execute(
            sa.select(c.deployment_id, c.commit_sha, c.lead_time_seconds)
        ):
            found.setdefault(deployment_id, {})[sha] = lead
    return found


def outcomes(engine: sa.Engine) -> dict[str, str]:
    r = deployment_commit_ranges.c
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(r.deployment_id, r.outcome)).all())


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }


@pytest.mark.parametrize("history_read", ["commit by commit", "whole"])
def test_commits_lead_times_and_the_daily_metric_are_hand_computed(
    warehouse: sa.Engine,
    warehouse_url: str,
    upstream: dict[str, str],
    environment: Path,
    history_read: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if history_read == "whole":
        monkeypatch.setattr(evaluate, "READ_WHOLE_HISTORY_FROM", 0)
    events = EventStore(warehouse)
    s = upstream
    deploy(events, "D1", at(3, 1, 8, 30), s["a"])
    deploy(events, "D2", at(3, 1, 12), s["m"])
    deploy(events, "D3", at(3, 2, 9), s["a"])
    deploy(events, "D4", at(3, 3, 10), s["d"])
    deploy(events, "D5", at(3, 3, 11), s["d"], service="search")
    deploy(events, "D7", at(3, 4, 9), None)
    deploy(events, "D8", at(5, 10, 10), s["e"])
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))

    result = run_git_assets(warehouse_url, environment / "cache")

    assert shipped(warehouse) == {
        "D2": {s["b"]: 10_800.0, s["f"]: 180_000.0},
        "D4": {s["b"]: 176_400.0, s["f"]: 345_600.0, s["c"]: 93_600.0, s["d"]: 7_200.0},
    }
    assert outcomes(warehouse) == {
        "D1": "first",
        "D2": "shipped",
        "D3": "shipped",  # a rollback: its range is empty
        "D4": "shipped",
        "D5": "first",
        "D8": "gap",
    }
    # A deployment without git keeps no range row; the metadata counts it.
    (materialization,) = result.asset_materializations_for_node(dora_deployment_commits.name)
    assert "| no_git | 1 |" in materialization.metadata["outcomes"].value
    assert checks(result) == {
        "repositories_reachable": True,
        "lead_times_not_negative": True,
        "deployment_commits_found": True,
    }
    with warehouse.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(git_commits)).scalar() == 7
        recorded = changed_days.pending(connection, [LEAD], at(1, 1, 0).date(), at(12, 1, 0).date())
    assert recorded[LEAD] == {dt.date(2025, 3, 1), dt.date(2025, 3, 3)}

    replace_days(
        WarehouseResource(url=warehouse_url),
        dora_change_lead_time_daily,
        change_lead_time_rows,
        [dt.date(2025, 3, day) for day in range(1, 5)],
    )
    with warehouse.connect() as connection:
        rows = connection.execute(
            sa.select(dora_change_lead_time_daily).order_by(dora_change_lead_time_daily.c.day)
        ).all()
    checked = dg.materialize(
        [dora_change_lead_time_daily_asset, dora_change_lead_time_daily_reconciliation],
        resources={"warehouse": WarehouseResource(url=warehouse_url)},
        partition_key="2025-03-03",
    )
    assert checks(checked) == {"reconciles_with_sources": True}
    # 03-03 org-wide: D4's four commits, 7,200, 93,600, 176,400 and 345,600 s.
    (day,) = checked.asset_materializations_for_node(dora_change_lead_time_daily.name)
    assert day.metadata["commits"].value == 4
    assert day.metadata["org_median_lead_time_seconds"].value == 135_000.0
    assert [tuple(row) for row in rows] == [
        (dt.date(2025, 3, 1), "checkout", "payments", "prod", 1, 2, 190_800.0, 95_400.0,
         95_400.0, pytest.approx(163_080.0), 95_400.0),
        (dt.date(2025, 3, 3), "checkout", "payments", "prod", 1, 4, 622_800.0, 155_700.0,
         135_000.0, pytest.approx(294_840.0), 155_700.0),
    ]  # fmt: skip


def test_a_commit_pushed_later_is_found_on_the_next_fetch_and_a_rerun_rewrites_nothing(
    warehouse: sa.Engine, warehouse_url: str, upstream: dict[str, str], environment: Path
) -> None:
    events = EventStore(warehouse)
    deploy(events, "D8", at(5, 10, 10), upstream["e"])
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))
    run_git_assets(warehouse_url, environment / "cache")
    (g,) = fast_import(
        environment / "upstream", [PlannedCommit("g", at(5, 11, 8), (upstream["e"],))]
    )
    deploy(events, "D9", at(5, 11, 10), g)
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))

    not_fetched = run_git_assets(warehouse_url, environment / "cache", fetch=False)
    assert outcomes(warehouse)["D9"] == "sha_not_in_mirror"
    assert checks(not_fetched)["deployment_commits_found"] is False

    # The fetch finds g; D9 itself did not change, so only the retry can resolve it (no
    # re-read overlap here to hide behind).
    sync_repositories(warehouse, GitResource(cache=str(environment / "cache")).mirrors())
    assert evaluate_changed(warehouse, overlap=dt.timedelta(0)).deployments == 1
    assert outcomes(warehouse)["D9"] == "shipped"
    assert shipped(warehouse)["D9"] == {g: 7_200.0}

    again = run_git_assets(warehouse_url, environment / "cache")
    (materialization,) = again.asset_materializations_for_node(dora_deployment_commits.name)
    assert materialization.metadata["deployments_rewritten"].value == 0
    assert checks(again)["deployment_commits_found"] is True


def test_a_late_deployment_and_a_retraction_change_what_the_next_one_shipped(
    warehouse: sa.Engine, warehouse_url: str, upstream: dict[str, str], environment: Path
) -> None:
    events, s = EventStore(warehouse), upstream
    config = DoraConfig(service_teams=TEAMS)
    deploy(events, "D2", at(3, 1, 12), s["m"])
    deploy(events, "D4", at(3, 3, 10), s["d"])
    refresh_all(warehouse, config)
    sync_repositories(warehouse, GitResource(cache=str(environment / "cache")).mirrors())
    evaluate_changed(warehouse, overlap=dt.timedelta(0))
    assert set(shipped(warehouse)["D4"]) == {s["c"], s["d"]}

    # D3 (a rollback to a) lands late, between them: D4's previous SHA is now a.
    deploy(events, "D3", at(3, 2, 9), s["a"])
    refresh_all(warehouse, config)
    with warehouse.begin() as connection:
        changed_days.clear(connection, LEAD, [dt.date(2025, 3, day) for day in range(1, 5)])
    evaluate_changed(warehouse, overlap=dt.timedelta(0))
    assert set(shipped(warehouse)["D4"]) == {s["b"], s["f"], s["c"], s["d"]}
    with warehouse.connect() as connection:
        recorded = changed_days.pending(
            connection, [LEAD], dt.date(2025, 3, 1), dt.date(2025, 4, 1)
        )
    assert recorded[LEAD] == {dt.date(2025, 3, 3)}

    events.delete_deployment("D3")
    refresh_all(warehouse, config)
    evaluate_changed(warehouse, overlap=dt.timedelta(0))
    assert set(shipped(warehouse)["D4"]) == {s["c"], s["d"]}
    assert "D3" not in outcomes(warehouse)


def test_no_credential_reaches_a_table_a_log_or_the_metadata(
    warehouse: sa.Engine,
    warehouse_url: str,
    environment: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret_url = "https://deploy-bot:tok3n-s3cret@127.0.0.1:9/acme/private.git"
    body = {
        "data": {
            "attributes": {
                "service": "checkout",
                "env": "prod",
                "started_at": 1740819600,
                "finished_at": 1740820200,
                "git": {"commit_sha": "a" * 40, "repository_url": secret_url},
            }
        }
    }
    event = parse_deployment(json.dumps(body).encode())
    assert event.repository_url == "https://127.0.0.1:9/acme/private.git"
    # A row stored before URLs were cleaned on the way in still never leaks downstream.
    events = EventStore(warehouse)
    events.upsert_deployment(dataclasses.replace(event, id="old", repository_url=secret_url))
    events.upsert_deployment(dataclasses.replace(event, id="new", finished_at=at(3, 1, 12)))
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))

    result = run_git_assets(warehouse_url, environment / "cache")

    assert checks(result)["repositories_reachable"] is False
    texts = [repr(event.event_specific_data) + str(event.message) for event in result.all_events]
    logs = capfd.readouterr()
    texts += [logs.out, logs.err]
    assert "127.0.0.1:9/acme/private.git: unreachable" in logs.err
    with warehouse.connect() as connection:
        for table in (git_commits, deployment_commit_ranges, dora_deployment_commits):
            texts.append(repr(connection.execute(sa.select(table)).all()))
        texts.append(repr(connection.execute(sa.text("SELECT * FROM git_repositories")).all()))
    texts += (
        [path.name for path in (environment / "cache").rglob("*")]
        if (environment / "cache").exists()
        else []
    )
    assert not [text for text in texts if "tok3n" in text or "deploy-bot" in text]
    assert any("127.0.0.1:9/acme/private.git" in text for text in texts)


def test_a_previous_deployment_exactly_60_days_earlier_still_counts(
    warehouse: sa.Engine, upstream: dict[str, str], environment: Path
) -> None:
    events, s = EventStore(warehouse), upstream
    deploy(events, "D4", at(3, 3, 10), s["d"])
    deploy(events, "D8", at(3, 3, 10) + dt.timedelta(days=60), s["e"])  # 60 days: ships e
    deploy(events, "D1", at(3, 1, 8, 30), s["a"], service="search")
    deploy(events, "D2", at(3, 1, 8, 30) + dt.timedelta(days=60, seconds=1), s["c"], "search")
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))
    sync_repositories(warehouse, GitResource(cache=str(environment / "cache")).mirrors())
    evaluate_changed(warehouse)
    # e was authored on 10 May, after D8 finished (2 May): a negative lead time, kept as is.
    assert shipped(warehouse) == {"D8": {s["e"]: -684_000.0}}
    assert outcomes(warehouse)["D2"] == "gap"
