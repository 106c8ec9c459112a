"""`dora_summary`: where each scope stands over the trailing window, and the HTML report."""

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from connectors.config import load_config
from connectors.report.html import DEFAULT_REPORT_FILE, write_report
from connectors.report.levels import benchmark
from connectors.report.summary import LEVEL_COLUMNS, Window, build_report
from connectors.warehouse import reading
from connectors.warehouse.schema import dora_summary
from dora_assets.freshness import METRIC_KEYS, NORMALIZED_KEYS
from dora_assets.metadata import (
    OWNERS,
    WAREHOUSE_KIND,
    column_schema,
    markdown_table,
    table_definition_metadata,
)
from dora_assets.resources import WarehouseResource

# Org-wide figures each materialization records, so the asset page plots them over time.
PLOTTED = (
    "deployments_per_week",
    "change_failure_rate",
    "incident_change_failure_rate",
    "rework_rate",
    "median_recovery_seconds",
    "median_time_to_restore_seconds",
    "median_lead_time_seconds",
)


def _levels_markdown(summary: pd.DataFrame) -> str:
    shown = summary[summary["scope"] != "service"]
    columns = ["scope", "name", "deployments", *LEVEL_COLUMNS[:-1]]
    rows = [[row[name] for name in columns] for row in shown.to_dict("records")]
    return markdown_table(columns, rows)


def _org_figures(summary: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    org = summary[summary["scope"] == "org"].iloc[0]
    return {
        f"org_{name}": dg.MetadataValue.float(float(org[name]))
        for name in PLOTTED
        if org[name] is not None
    }


@dg.asset(
    key="dora_summary",
    group_name="report",
    deps=[*NORMALIZED_KEYS, *METRIC_KEYS],
    kinds={"sql", WAREHOUSE_KIND, "html"},
    owners=OWNERS,
    metadata=table_definition_metadata(dora_summary),
    description="""
**Where the org, each team and each service stand over the trailing window** (default 90
UTC days ending yesterday; `DORA_CONFIG` `summary: {window_days, benchmark}`), one row per
(`scope`, `name`).

- Deployment frequency (`deployments_per_week`, `deployment_days_per_week`), median lead
  time, both change failure rates (deployment-based and incidents per deployment), rework
  rate, median failed deployment recovery time and median time to restore;
- a level per metric (`elite`/`high`/`medium`/`low`, NULL without data) under the DORA
  benchmark named in `benchmark` (`dora-2023` by default, `dora-2021`).

Rates are sums over the window; medians are over the window's individual items, not
medians of daily medians. Each run also writes the HTML report (summary, weekly trends
per team, definitions) to `.dora/report.html`; `dora report` writes the same on demand.
""",
)
def dora_summary_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    settings = load_config().summary
    window = Window.ending_yesterday(settings.window_days)
    with reading(warehouse.engine) as connection:
        report = build_report(connection, window, benchmark(settings.benchmark))
    rows = report.summary.to_dict("records")
    with warehouse.rewriting(dora_summary) as connection:
        connection.execute(sa.delete(dora_summary))
        if rows:
            connection.execute(sa.insert(dora_summary), rows)
    path = write_report(report, DEFAULT_REPORT_FILE)
    context.log.info(f"dora_summary: {len(rows)} scopes over {window.start}..{window.end}; {path}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(rows)),
            "dagster/column_schema": column_schema(dora_summary),
            "window": dg.MetadataValue.text(f"{window.start} .. {window.end}"),
            "benchmark": dg.MetadataValue.text(report.benchmark.name),
            "levels": dg.MetadataValue.md(_levels_markdown(report.summary)),
            "report": dg.MetadataValue.path(str(path)),
            **_org_figures(report.summary),
        }
    )
