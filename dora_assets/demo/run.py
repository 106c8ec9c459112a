"""`dora demo`: land a synthetic history through the real front doors, build every asset,
print the metric summary.

Deployments and API failures are POSTed to our event API (served on loopback for the
occasion, with a one-off key); PagerDuty incidents are served by the
PagerDuty-compatible server on loopback and pulled by the `pagerduty_incidents` asset
exactly as from api.pagerduty.com. The whole graph is then materialized in ONE run
over the history's partition range, recorded in the Dagster instance that `make dev`
opens, into the default warehouse (or `DORA_WAREHOUSE_URL`).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
import yaml

from connectors import settings
from connectors.api.app import ApiSettings, create_app
from connectors.client import DEPLOYMENTS_PATH, EventClient, event_body
from connectors.git.command import GitError
from connectors.pagerduty.compat_server import IncidentStore, ServerOptions, build_app
from connectors.report.html import DEFAULT_REPORT_FILE
from connectors.report.text import levels_table
from connectors.serving import serve_in_thread
from connectors.warehouse import open_warehouse, reading
from connectors.warehouse.schema import dora_summary
from dora_assets.demo.history import TEAM_IDS, History, generate
from dora_assets.demo.history import demo_config as build_demo_config
from dora_assets.demo.repositories import build_repositories
from dora_assets.schedules import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, daily_job

DEMO_FOLDER = Path(".dora")
DEFAULT_DAGSTER_HOME = DEMO_FOLDER / "dagster_home"
DEMO_CONFIG_FILE = DEMO_FOLDER / "demo" / "dora.yaml"
DEMO_REPOSITORIES = DEMO_FOLDER / "demo" / "repositories"
# The demo's Dagster instance: its defaults, without the telemetry notice in the output.
INSTANCE_SETTINGS = "telemetry:\n  enabled: false\n"
SCOPE_ORDER = {"org": 0, "team": 1, "service": 2}
PAGERDUTY_ACCOUNT_SINCE = dt.date(2025, 1, 1)
SENDERS = 8


def _progress(message: str) -> None:
    print(f"  {message}", flush=True)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _send_all(send: Callable[[Mapping[str, Any]], str], events: list[dict[str, Any]]) -> None:
    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send, events))


def _land_api_events(history: History, engine: sa.Engine) -> None:
    key = secrets.token_urlsafe(24)
    with (
        serve_in_thread(create_app(engine, ApiSettings(api_keys=[key]))) as api_url,
        EventClient(api_url, key) as client,
    ):
        _send_all(client.send_deployment, history.deployments)
        _send_all(client.send_failure, history.failures)
        for deployment_id, patch in history.patches:
            client.send(f"{DEPLOYMENTS_PATH}/{deployment_id}", event_body(patch), "PATCH")
    _progress(
        f"event API {api_url}: {len(history.deployments)} deployments,"
        f" {len(history.failures)} failures and {len(history.patches)} change-failure marks"
        " accepted"
    )


def _pagerduty_account(first_day: dt.date, end_day: dt.date) -> IncidentStore:
    """The PagerDuty account's incidents: the demo window's, and those before it.

    The compatible server numbers incidents in creation order, so it serves the
    account's whole history since a fixed day, not just the window: every incident
    keeps its id from one day's demo to the next, and re-running tomorrow updates
    incidents rather than duplicating them. The pull only asks for the window.
    """
    account_start = min(PAGERDUTY_ACCOUNT_SINCE, first_day)
    incidents = generate(account_start, end_day).pagerduty
    store = IncidentStore()
    for incident in sorted(incidents, key=lambda incident: incident.created_at):
        service = incident.service
        stored = store.add(
            incident.created_at,
            title=incident.title,
            service=(service.pagerduty_id, service.name),
            teams=[(TEAM_IDS[service.team], service.team)],
            urgency=incident.urgency,
            priority=(f"PPDEMO{incident.priority[-1]}", incident.priority),
        )
        if incident.resolved_at is not None:
            store.resolve(stored.id, incident.resolved_at)
    return store


def _repositories(history: History) -> dict[str, str]:
    """The services' repositories; without git on this machine, deployments carry none."""
    try:
        return build_repositories(history, DEMO_REPOSITORIES)
    except GitError as error:
        _progress(f"{error}: the demo's deployments carry no commits (no lead time)")
        for deployment in history.deployments:
            deployment.pop("git", None)
        return {}


def _write_demo_config(days: int, clone_urls: Mapping[str, str]) -> Path:
    DEMO_CONFIG_FILE.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **build_demo_config(),
        "git": {"repositories": {url: {"url": path} for url, path in clone_urls.items()}},
        "summary": {"window_days": days},
    }
    DEMO_CONFIG_FILE.write_text(
        "# Written by `dora demo`: the demo's service catalog, PagerDuty mapping and summary.\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    return DEMO_CONFIG_FILE.resolve()


def _materialize_everything(first_day: dt.date, last_day: dt.date) -> bool:
    """One run of the whole graph over `[first_day, last_day]`; True when it succeeded."""
    # Imported here: the code location reads its environment (PagerDuty URL and token,
    # warehouse URL) when it loads. Its beta/preview notices are for developers, not here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        from dora_assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(daily_job.name).execute_in_process(
            instance=instance,
            tags={
                PARTITION_RANGE_START_TAG: first_day.isoformat(),
                PARTITION_RANGE_END_TAG: last_day.isoformat(),
                "dora/trigger": "demo",
            },
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        materialized: dict[str, int] = {}
        for event in result.get_asset_materialization_events():
            name = event.asset_key.to_user_string()
            materialized[name] = materialized.get(name, 0) + 1
        for name, count in materialized.items():
            unit = "partitions" if count > 1 else "materialization"
            _progress(f"  {name}: {count} {unit}")
        failed_checks = [
            f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            for evaluation in result.get_asset_check_evaluations()
            if not evaluation.passed
        ]
        if failed_checks:
            _progress(f"  checks not passing: {', '.join(sorted(failed_checks))}")
        if not result.success:
            _progress(f"run {result.run_id} failed; open `make dev` to read its logs")
        return result.success


def _scope_order(column: pd.Series) -> pd.Series:
    return column.map(SCOPE_ORDER) if column.name == "scope" else column


def run_demo(days: int = 90) -> int:
    started = time.monotonic()
    today = dt.datetime.now(dt.UTC).date()
    first_day, end_day = today - dt.timedelta(days=days), today
    partitions_start = dt.date.fromisoformat(settings.start_date())
    if first_day < partitions_start:
        print(
            f"dora demo: the history starts on {first_day}, before DORA_START_DATE"
            f" ({partitions_start}); unset DORA_START_DATE or set it to {first_day} or earlier"
        )
        return 2
    os.environ.setdefault("DAGSTER_HOME", str(DEFAULT_DAGSTER_HOME.resolve()))
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_settings = dagster_home / "dagster.yaml"
    # Dagster's defaults (SQLite under DAGSTER_HOME), telemetry off; a user's own file stays.
    if not instance_settings.exists() or not instance_settings.read_text().strip():
        instance_settings.write_text(INSTANCE_SETTINGS)
    warehouse_url = settings.warehouse_url()
    engine = open_warehouse(warehouse_url)
    shown_url = engine.url.render_as_string(hide_password=True)
    print(f"dora demo: {days} days of synthetic history into {shown_url}", flush=True)

    history = generate(first_day, end_day)
    clone_urls = _repositories(history)
    _progress(
        f"history {first_day} .. {end_day - dt.timedelta(days=1)}: {len(history.deployments)}"
        f" deployments, {len(history.pagerduty)} PagerDuty incidents,"
        f" {len(history.failures)} failures for the event API"
    )
    if clone_urls:
        _progress(f"git repositories of {len(clone_urls)} services: {DEMO_REPOSITORIES.resolve()}")
    _land_api_events(history, engine)
    config_path = _write_demo_config(days, clone_urls)
    _progress(f"service catalog, PagerDuty mapping and git repositories: {config_path}")

    token = secrets.token_urlsafe(24)
    store = _pagerduty_account(first_day, end_day)
    with serve_in_thread(build_app(store, ServerOptions(api_token=token))) as pagerduty_url:
        _progress(
            f"PagerDuty-compatible API {pagerduty_url}: {len(history.pagerduty)} incidents in the"
            f" window, {len(store)} in the account since {min(PAGERDUTY_ACCOUNT_SINCE, first_day)}"
        )
        _progress(
            f"materializing every asset for {first_day} .. {end_day - dt.timedelta(days=1)}"
            " in one run (Dagster instance "
            f"{os.environ['DAGSTER_HOME']})"
        )
        environment = {
            "PAGERDUTY_API_URL": pagerduty_url,
            "PAGERDUTY_API_TOKEN": token,
            "DORA_CONFIG": str(config_path),
            "DORA_WAREHOUSE_URL": warehouse_url,
        }
        with _environment(environment):
            succeeded = _materialize_everything(first_day, end_day - dt.timedelta(days=1))
    if not succeeded:
        return 1

    with reading(engine) as connection:
        summary = pd.read_sql(sa.select(dora_summary), connection)
    engine.dispose()
    summary = summary.sort_values(["scope", "name"], key=_scope_order).astype(object)
    summary = summary.where(summary.notna(), None)
    print()
    window = summary.iloc[0]
    print(
        f"DORA levels over {days} days ({window['window_start']} .. {window['window_end']},"
        f" benchmark {window['benchmark']}):"
    )
    print(levels_table(summary))
    print()
    print(f"Report: {DEFAULT_REPORT_FILE.resolve()} (open it in a browser)")
    print(f"Done in {time.monotonic() - started:.0f} s. Explore the assets, partitions, checks and")
    print("schedules in the Dagster UI: run `make dev` and open http://127.0.0.1:3000")
    return 0
