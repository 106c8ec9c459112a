"""`dora_summary` and `dora report`, hand-computed on SQLite and PostgreSQL.

The window is 14 days ending yesterday (Y); W = 2 weeks. Catalog: checkout and billing
belong to payments, search to discovery. Events go in through the event store and the
normalized refresh (classification and attribution included), then the asset runs.

  checkout  c1 v1 Y-20 (before)  c2 v2 Y-10 10:00  c3 v3 Y-10 14:00
            c4 v2 Y-9 09:00  rollback to c2: c3 failed, recovered 68,400 s
            c5 v4 Y-5 10:00  c6 v4-hotfix Y-5 12:00  rollforward: c5 failed, 7,200 s
            c7 v5 Y 23:00 (last day)   c8 v6 today 01:00 (after)
  billing   b1 v1 Y-13 00:00 (first day)  b2 v2 Y-3 10:00, incident i1 attributed:
            failed, recovered when i1 resolved, 7,200 s
  search    s1 Y-30 (before): no deployment in the window
  i1 billing        Y-3 11:00 .. 12:00   3,600 s
  i2 search+checkout Y-2 08:00 .. 10:00  7,200 s (one incident, two rows)
  i3 team platform  Y-1 00:00 .. 00:30   1,800 s (no service)
  i4 checkout       Y-1 12:00, open
  i5 checkout       Y-15 10:00 .. Y-12 10:00  259,200 s (started before, resolved inside)

Org: 8 deployments on 6 days (4.0 and 3.0 a week), 3 failures (c3, c5, b2), 2 reworks,
5 incident rows started inside (i1, i2 twice, i3, i4); recoveries 68,400, 7,200, 7,200
(median 7,200); restores 3,600, 7,200 (i2 once), 1,800, 259,200 (median 5,400).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from incremental_support import refresh_all

from connectors.cli import main
from connectors.config import DoraConfig
from connectors.events.schemas import DeploymentEvent, FailureEvent
from connectors.events.store import EventStore
from connectors.report.levels import benchmark
from connectors.warehouse.schema import dora_summary
from dora_assets.report.summary import dora_summary_asset
from dora_assets.resources import WarehouseResource

TEAMS = {"checkout": "payments", "billing": "payments", "search": "discovery"}
TODAY = dt.datetime.now(dt.UTC).date()
Y = TODAY - dt.timedelta(days=1)
WINDOW_START = Y - dt.timedelta(days=13)
DAY = 86400.0


def at(days_before_yesterday: int, hour: int, minute: int = 0) -> dt.datetime:
    day = Y - dt.timedelta(days=days_before_yesterday)
    return dt.datetime.combine(day, dt.time(hour, minute))


def land(events: EventStore) -> None:
    deployments = [
        ("c1", "checkout", "v1", at(20, 10)),
        ("c2", "checkout", "v2", at(10, 10)),
        ("c3", "checkout", "v3", at(10, 14)),
        ("c4", "checkout", "v2", at(9, 9)),
        ("c5", "checkout", "v4", at(5, 10)),
        ("c6", "checkout", "v4-hotfix", at(5, 12)),
        ("c7", "checkout", "v5", at(0, 23)),
        ("c8", "checkout", "v6", at(-1, 1)),
        ("b1", "billing", "v1", at(13, 0)),
        ("b2", "billing", "v2", at(3, 10)),
        ("s1", "search", "v1", at(30, 10)),
    ]
    for identifier, service, version, finished in deployments:
        events.upsert_deployment(
            DeploymentEvent(
                id=identifier,
                service=service,
                env="prod",
                version=version,
                started_at=finished - dt.timedelta(minutes=5),
                finished_at=finished,
            )
        )
    failures = [
        ("i1", ("billing",), "", at(3, 11), at(3, 12)),
        ("i2", ("search", "checkout"), "", at(2, 8), at(2, 10)),
        ("i3", (), "platform", at(1, 0), at(1, 0, 30)),
        ("i4", ("checkout",), "", at(1, 12), None),
        ("i5", ("checkout",), "", at(15, 10), at(12, 10)),
    ]
    for identifier, services, team, started, finished in failures:
        events.upsert_failure(
            FailureEvent(
                id=identifier,
                services=services,
                team=team,
                env="prod",
                started_at=started,
                finished_at=finished,
            )
        )


EXPECTED_COLUMNS = (
    "deployments",
    "deployments_per_week",
    "deployment_days_per_week",
    "change_failure_rate",
    "incident_change_failure_rate",
    "rework_rate",
    "median_recovery_seconds",
    "median_time_to_restore_seconds",
    "deployment_frequency_level",
    "change_failure_rate_level",
    "recovery_level",
    "time_to_restore_level",
)


def expected_rows() -> dict[tuple[str, str], dict[str, object]]:
    """(scope, name) -> figures and levels under dora-2023, computed by hand above."""

    def row(*values: object) -> dict[str, object]:
        # Lead time needs the git connector, and rework rate has no levels: NULL everywhere.
        return {
            **dict(zip(EXPECTED_COLUMNS, values, strict=True)),
            "median_lead_time_seconds": None,
            "lead_time_level": None,
            "rework_rate_level": None,
        }

    none = (None, None, None)
    return {
        ("org", ""): row(
            8, 4.0, 3.0, 3 / 8, 5 / 8, 2 / 8, 7200.0, 5400.0, "high", "low", "high", "high"
        ),
        ("team", "payments"): row(
            8, 4.0, 3.0, 3 / 8, 3 / 8, 2 / 8, 7200.0, 7200.0, "high", "low", "high", "high"
        ),
        ("team", "discovery"): row(0, 0.0, 0.0, *none, None, 7200.0, None, None, None, "high"),
        ("team", "platform"): row(0, 0.0, 0.0, *none, None, 1800.0, None, None, None, "elite"),
        # 2 days in 2 weeks is exactly 1 a week, and 3,600 s exactly an hour: the better level.
        ("service", "billing"): row(
            2, 1.0, 1.0, 1 / 2, 1 / 2, 0.0, 7200.0, 3600.0, "high", "low", "high", "elite"
        ),
        ("service", "checkout"): row(
            6, 3.0, 2.0, 2 / 6, 2 / 6, 2 / 6, 37800.0, 133200.0, "high", "low", "high", "medium"
        ),
        ("service", "search"): row(0, 0.0, 0.0, *none, None, 7200.0, None, None, None, "high"),
    }


def write_config(folder: Path, window_days: int = 14) -> Path:
    path = folder / "dora.yaml"
    document = {
        "services": {service: {"team": team} for service, team in TEAMS.items()},
        "summary": {"window_days": window_days, "benchmark": "dora-2023"},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def summary_rows(engine: sa.Engine) -> dict[tuple[str, str], dict[str, object]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(dora_summary)).mappings().all()
    return {(row["scope"], row["name"]): dict(row) for row in rows}


def assert_figures(actual: dict[str, object], expected: dict[str, object], where: object) -> None:
    for column, value in expected.items():
        if isinstance(value, float):
            assert actual[column] == pytest.approx(value), (where, column)
        else:
            assert actual[column] == value, (where, column)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DORA_CONFIG", str(write_config(tmp_path)))
    return tmp_path


def materialize_summary(warehouse_url: str) -> dg.MaterializeResult:
    result = dg.materialize(
        [dora_summary_asset], resources={"warehouse": WarehouseResource(url=warehouse_url)}
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("dora_summary")
    return materialization


def test_summary_figures_and_levels_are_hand_computed(
    warehouse: sa.Engine, warehouse_url: str, in_tmp: Path
) -> None:
    land(EventStore(warehouse))
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))

    materialization = materialize_summary(warehouse_url)

    rows = summary_rows(warehouse)
    expected = expected_rows()
    assert set(rows) == set(expected)
    for key, figures in expected.items():
        assert rows[key]["window_start"] == WINDOW_START
        assert rows[key]["window_end"] == Y
        assert rows[key]["benchmark"] == "dora-2023"
        assert_figures(rows[key], figures, key)
    metadata = materialization.metadata
    assert metadata["dagster/row_count"].value == len(expected)
    assert metadata["org_change_failure_rate"].value == pytest.approx(3 / 8)
    assert "| team | payments | 8 | high |" in metadata["levels"].value
    report = Path(metadata["report"].value)
    assert report == in_tmp / ".dora" / "report.html"
    html = report.read_text()
    for team in ("payments", "discovery", "platform"):
        assert f"Team {team}" in html
    assert "37.5%" in html


def test_a_second_run_replaces_the_summary_and_follows_the_configured_window(
    warehouse: sa.Engine, warehouse_url: str, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(EventStore(warehouse))
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))
    materialize_summary(warehouse_url)
    # Three days: Y-2 .. Y. Only c7 deployed; i2 (2 rows), i3 and i4 started; i2 and i3 resolved.
    monkeypatch.setenv("DORA_CONFIG", str(write_config(in_tmp, window_days=3)))
    materialize_summary(warehouse_url)
    rows = summary_rows(warehouse)
    org = rows[("org", "")]
    assert org["window_start"] == Y - dt.timedelta(days=2)
    assert_figures(
        org,
        {
            "deployments": 1,
            "deployments_per_week": 7 / 3,
            "deployment_days_per_week": 7 / 3,
            "change_failure_rate": 0.0,
            "incident_change_failure_rate": 4.0,
            "median_recovery_seconds": None,
            "median_time_to_restore_seconds": (7200.0 + 1800.0) / 2,
            "deployment_frequency_level": "high",
            "change_failure_rate_level": "elite",
        },
        "org",
    )
    assert len(rows) == len(expected_rows())


def test_an_empty_warehouse_summarizes_to_no_data_and_still_reports(
    warehouse: sa.Engine, warehouse_url: str, in_tmp: Path
) -> None:
    materialization = materialize_summary(warehouse_url)
    rows = summary_rows(warehouse)
    assert list(rows) == [("org", "")]
    org = rows[("org", "")]
    assert org["deployments"] == 0
    assert org["deployment_frequency_level"] is None
    assert all(org[column] is None for column in ("change_failure_rate", "rework_rate"))
    html = Path(materialization.metadata["report"].value).read_text()
    assert "no data: no deployments or resolved incidents in this window" in html


def test_dora_report_writes_the_file_and_prints_the_levels(
    warehouse: sa.Engine, warehouse_url: str, in_tmp: Path, monkeypatch, capsys
) -> None:
    land(EventStore(warehouse))
    refresh_all(warehouse, DoraConfig(service_teams=TEAMS))
    monkeypatch.setenv("DORA_WAREHOUSE_URL", warehouse_url)
    out = in_tmp / "reports" / "dora.html"
    assert main(["report", "--out", str(out), "--benchmark", "dora-2021"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out}" in printed
    assert "37.5% low" in printed  # org change failure rate: above 2021's 30% as well
    html = out.read_text()
    assert "dora-2021" in html
    assert "http://" not in html and "https://" not in html
    assert len(html) < 200_000


def test_a_bad_summary_section_is_named() -> None:
    from connectors.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"summary\.benchmark 'dora-2019' is not known"):
        parse_config({"summary": {"benchmark": "dora-2019"}})
    with pytest.raises(ConfigError, match=r"summary\.window_days must be"):
        parse_config({"summary": {"window_days": 0}})


@pytest.mark.parametrize(
    ("name", "metric", "value", "level"),
    [
        ("dora-2023", "deployment_days_per_week", 5.0, "elite"),
        ("dora-2023", "deployment_days_per_week", 4.99, "high"),
        ("dora-2023", "deployment_days_per_week", 1.0, "high"),
        ("dora-2023", "deployment_days_per_week", 12 / 52, "medium"),
        ("dora-2023", "deployment_days_per_week", 12 / 52 - 1e-9, "low"),
        ("dora-2021", "deployment_days_per_week", 12 / 52, "high"),
        ("dora-2021", "deployment_days_per_week", 2 / 52, "medium"),
        ("dora-2021", "deployment_days_per_week", 1 / 52, "low"),
        ("dora-2023", "lead_time_seconds", DAY, "elite"),
        ("dora-2023", "lead_time_seconds", 7 * DAY, "high"),
        ("dora-2023", "lead_time_seconds", 30 * DAY, "medium"),
        ("dora-2023", "lead_time_seconds", 30 * DAY + 1, "low"),
        ("dora-2021", "lead_time_seconds", 3600.0, "elite"),
        ("dora-2021", "lead_time_seconds", 3601.0, "high"),
        ("dora-2021", "lead_time_seconds", 180 * DAY, "medium"),
        ("dora-2021", "lead_time_seconds", 181 * DAY, "low"),
        ("dora-2023", "change_failure_rate", 0.05, "elite"),
        ("dora-2023", "change_failure_rate", 0.10, "high"),
        ("dora-2023", "change_failure_rate", 0.15, "medium"),
        ("dora-2023", "change_failure_rate", 0.1501, "low"),
        ("dora-2021", "change_failure_rate", 0.15, "elite"),
        ("dora-2021", "change_failure_rate", 0.30, "medium"),
        ("dora-2021", "change_failure_rate", 0.31, "low"),
        ("dora-2023", "recovery_seconds", 3600.0, "elite"),
        ("dora-2023", "recovery_seconds", DAY, "high"),
        ("dora-2023", "recovery_seconds", 7 * DAY, "medium"),
        ("dora-2021", "recovery_seconds", 7 * DAY + 1, "low"),
        ("dora-2023", "change_failure_rate", None, None),
    ],
)
def test_levels_follow_the_shipped_benchmarks_and_a_boundary_takes_the_better_level(
    name: str, metric: str, value: float | None, level: str | None
) -> None:
    assert benchmark(name).level(metric, value) == level
