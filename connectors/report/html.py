"""The DORA report: one self-contained HTML file (inline CSS and SVG, no script, no fetch).

Charts are drawn here as inline SVG small multiples: a row per scope (the org, each
team), a column per metric, one shared scale per column so teams compare at a glance.
That keeps the file small and readable offline, in print and in a mail attachment,
with no JavaScript library to ship or trust. Levels are written out in words beside
their colour (Okabe-Ito palette, safe for colour-blind readers), and every chart has a
text alternative and a data table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import pandas as pd

from connectors.report.summary import Report

NO_DATA = "no data"
DEFAULT_REPORT_FILE = Path(".dora") / "report.html"
CHART_WIDTH, CHART_HEIGHT, PAD = 132, 56, 6


def _duration(seconds: float) -> str:
    if seconds < 3570:  # under what rounds to 60 min
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _rate(rate: float) -> str:
    return f"{rate:.1%}"


def _per_week(value: float) -> str:
    return f"{value:.1f}/wk"


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    short: str  # for terminals
    show: Callable[[float], str]
    level: str | None = None


SUMMARY_METRICS = (
    Metric(
        "deployment_days_per_week",
        "Deployment days",
        "deploy days",
        _per_week,
        "deployment_frequency_level",
    ),
    Metric(
        "median_lead_time_seconds", "Median lead time", "lead time", _duration, "lead_time_level"
    ),
    Metric(
        "change_failure_rate",
        "Change failure rate",
        "deployment CFR",
        _rate,
        "change_failure_rate_level",
    ),
    Metric("incident_change_failure_rate", "Incidents per deployment", "incident CFR", _rate),
    Metric("rework_rate", "Rework rate", "rework rate", _rate),
    Metric(
        "median_recovery_seconds", "Median recovery", "median recovery", _duration, "recovery_level"
    ),
    Metric(
        "median_time_to_restore_seconds",
        "Median time to restore",
        "median TTR",
        _duration,
        "time_to_restore_level",
    ),
)
TREND_METRICS = (
    Metric("deployments_per_week", "Deployments", "deployments", lambda value: f"{value:.0f}"),
    *(metric for metric in SUMMARY_METRICS if metric.column != "deployment_days_per_week"),
)
DEFINITIONS = (
    (
        "Deployment frequency",
        "Deployments finished in the window per week (days / 7); the level rates distinct UTC"
        " days with a deployment per week.",
    ),
    (
        "Change lead time",
        "Median over the commits shipped by the window's deployments of deployment finish -"
        " commit author date (git log --no-merges from the previous deployment's commit)."
        " No data where deployments carry no git commit.",
    ),
    (
        "Change failure rate",
        "Deployments classified as change failures (manual mark, rollback, rollforward,"
        " attributed incident) / deployments (DORA's definition).",
    ),
    (
        "Incidents per deployment",
        "Incidents started / deployments finished (the incident-based rate Datadog's"
        " incident guide uses); it can exceed 100% and has no level.",
    ),
    (
        "Rework rate",
        "Deployments that were a rollback or a rollforward / deployments (DORA 2024);"
        " no published levels.",
    ),
    (
        "Failed deployment recovery",
        "Median over failed deployments recovered in the window of recovered_at - finished_at.",
    ),
    (
        "Time to restore",
        "Median over incidents resolved in the window of resolved - started; an incident"
        " naming several services counts once for its team and the org.",
    ),
)

STYLE = """
:root { color-scheme: light; --ink: #1a1a1a; --muted: #5a5a5a; --line: #0072B2;
  --rule: #d9d9d9; --elite: #009E73; --high: #56B4E9; --medium: #E69F00; --low: #D55E00; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 2rem auto; max-width: 1280px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta, .note { color: var(--muted); } table { border-collapse: collapse; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid var(--rule); text-align: right;
  vertical-align: top; white-space: nowrap; }
th:first-child, td:first-child, th.name, td.name { text-align: left; }
thead th { font-weight: 600; border-bottom: 2px solid var(--ink); white-space: normal;
  vertical-align: bottom; } .scroll { overflow-x: auto; }
tr.org td { font-weight: 600; } .none { color: var(--muted); font-style: italic; }
.level { display: inline-block; min-width: 3.8em; margin-left: .35em; padding: 0 .4em;
  border-radius: .6em; font-size: .8em; text-align: center; color: #000; }
.elite { background: var(--elite); } .high { background: var(--high); }
.medium { background: var(--medium); } .low { background: var(--low); }
.trends td { padding: .2rem .3rem; } .trends th { white-space: normal; max-width: 10rem; }
svg text { font: 10px system-ui, sans-serif; fill: var(--muted); }
svg .series { fill: none; stroke: var(--line); stroke-width: 1.6; }
svg .point { fill: var(--line); } svg .axis { stroke: var(--rule); }
dl dt { font-weight: 600; } dl dd { margin: 0 0 .6rem 0; }
details { margin-top: .8rem; }
"""


def _cell(value: object, metric: Metric) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f'<span class="none">{NO_DATA}</span>'
    return escape(metric.show(float(value)))


def _level(value: object) -> str:
    if value is None:
        return ""
    return f'<span class="level {escape(str(value))}">{escape(str(value))}</span>'


def _scope_label(scope: str, name: str) -> str:
    return "Organization" if scope == "org" else f"{scope.capitalize()} {name}"


def _summary_table(summary: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(metric.title)}</th>" for metric in SUMMARY_METRICS)
    rows = []
    for row in summary.to_dict("records"):
        cells = "".join(
            f"<td>{_cell(row[metric.column], metric)}"
            f"{_level(row[metric.level]) if metric.level else ''}</td>"
            for metric in SUMMARY_METRICS
        )
        rows.append(
            f'<tr class="{escape(row["scope"])}"><td>{escape(row["scope"])}</td>'
            f'<td class="name">{escape(row["name"] or "all")}</td>'
            f"<td>{row['deployments']}</td>{cells}</tr>"
        )
    return (
        '<div class="scroll"><table class="summary"><thead><tr><th>Scope</th>'
        '<th class="name">Name</th>'
        f"<th>Deployments</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _sparkline(values: Sequence[float | None], low: float, high: float, label: str) -> str:
    """A line over the weeks, broken where a week has no data, on the scale low..high."""
    if all(value is None for value in values):
        return f'<span class="none">{NO_DATA}</span>'
    span = (high - low) or 1.0
    step = (CHART_WIDTH - 2 * PAD) / max(len(values) - 1, 1)

    def point(index: int, value: float) -> tuple[float, float]:
        y = CHART_HEIGHT - PAD - (value - low) / span * (CHART_HEIGHT - 2 * PAD)
        return PAD + index * step, y

    segments: list[list[tuple[float, float]]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            segments.append([])
        else:
            segments[-1].append(point(index, value))
    lines = "".join(
        '<polyline class="series" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
        + '"/>'
        for segment in segments
        if len(segment) > 1
    )
    dots = "".join(
        f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2"/>'
        for segment in segments
        for x, y in segment
    )
    baseline = CHART_HEIGHT - PAD
    return (
        f'<svg role="img" width="{CHART_WIDTH}" height="{CHART_HEIGHT}"'
        f' viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}"><title>{escape(label)}</title>'
        f'<line class="axis" x1="{PAD}" y1="{baseline}" x2="{CHART_WIDTH - PAD}"'
        f' y2="{baseline}"/>{lines}{dots}</svg>'
    )


def _weekly_values(trends: pd.DataFrame, scope: str, name: str, column: str) -> list[float | None]:
    rows = trends[(trends["scope"] == scope) & (trends["name"] == name)]
    return [None if pd.isna(value) else float(value) for value in rows[column]]


def _scale(column: pd.Series) -> tuple[float, float]:
    """One scale for a metric's column of charts: from 0 (or below) to its largest value."""
    known = column.dropna()
    if not len(known):
        return 0.0, 1.0
    return min(0.0, float(known.min())), float(known.max())


def _trend_table(trends: pd.DataFrame) -> str:
    scopes = list(dict.fromkeys(zip(trends["scope"], trends["name"], strict=True)))
    weeks = sorted(set(trends["window_start"]))
    head = "".join(f"<th>{escape(metric.title)}</th>" for metric in TREND_METRICS)
    scales = {metric.column: _scale(trends[metric.column]) for metric in TREND_METRICS}
    rows = []
    for scope, name in scopes:
        cells = []
        for metric in TREND_METRICS:
            low, high = scales[metric.column]
            values = _weekly_values(trends, scope, name, metric.column)
            latest = next((value for value in reversed(values) if value is not None), None)
            label = (
                f"{metric.title}, {_scope_label(scope, name)}, weekly from {weeks[0]}:"
                f" {', '.join(NO_DATA if v is None else metric.show(v) for v in values)}"
            )
            caption = "" if latest is None else f"<br>latest {escape(metric.show(latest))}"
            cells.append(f"<td>{_sparkline(values, low, high, label)}{caption}</td>")
        rows.append(
            f'<tr><th class="name" scope="row">{escape(_scope_label(scope, name))}</th>'
            f"{''.join(cells)}</tr>"
        )
    return (
        '<div class="scroll"><table class="trends"><thead><tr>'
        '<th class="name">Weekly, oldest to newest</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _trend_data(trends: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(metric.title)}</th>" for metric in TREND_METRICS)
    rows = "".join(
        f"<tr><td>{escape(_scope_label(row['scope'], row['name']))}</td>"
        f"<td>{row['window_start']}</td>"
        + "".join(f"<td>{_cell(row[metric.column], metric)}</td>" for metric in TREND_METRICS)
        + "</tr>"
        for row in trends.to_dict("records")
    )
    return (
        "<details><summary>The weekly figures as a table</summary><table><thead><tr>"
        f"<th>Scope</th><th>Week from</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        "</details>"
    )


def _levels_legend(report: Report) -> str:
    items = " ".join(_level(name) for name in ("elite", "high", "medium", "low"))
    return (
        f'<p class="note">Levels {items} follow the {escape(report.benchmark.name)} benchmark'
        f" ({escape(report.benchmark.source)}); a value on a boundary takes the better level."
        " No level is given without data.</p>"
    )


def render_report(report: Report, generated_at: dt.datetime) -> str:
    window = report.window
    has_data = bool(report.summary["deployments"].sum()) or bool(
        report.summary["median_time_to_restore_seconds"].notna().any()
    )
    empty = (
        ""
        if has_data
        else f'<p class="none">{NO_DATA}: no deployments or resolved incidents in this window.</p>'
    )
    definitions = "".join(
        f"<dt>{escape(term)}</dt><dd>{escape(text)}</dd>" for term, text in DEFINITIONS
    )
    title = f"DORA metrics, {window.start} to {window.end}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>DORA metrics</h1>
<p class="meta">{window.days} days, {window.start} to {window.end} (UTC days, both included).
Generated {generated_at:%Y-%m-%d %H:%M} UTC.</p>
{empty}
<h2>Where we stand</h2>
{_levels_legend(report)}
{_summary_table(report.summary)}
<h2>Weekly trends</h2>
<p class="note">Seven-day weeks ending {window.end}; each column shares one scale.
A gap is a week with no data.</p>
{_trend_table(report.trends)}
{_trend_data(report.trends)}
<h2>How each figure is defined</h2>
<dl>{definitions}</dl>
<p class="note">Rates are sums over the window; medians are over the window's individual
items, not medians of daily medians. Tables: <code>dora_summary</code> and the
<code>dora_*_daily</code> tables of the warehouse.</p>
</body></html>
"""


def write_report(report: Report, path: Path, generated_at: dt.datetime | None = None) -> Path:
    """Write the report to `path` (its folder is created) and return the absolute path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(report, generated_at or dt.datetime.now(dt.UTC)))
    return path.resolve()
