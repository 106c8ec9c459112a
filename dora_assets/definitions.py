"""The `dora` code location (loaded by workspace.yaml)."""

import dagster as dg

from dora_assets import freshness, schedules, sensors
from dora_assets.audit import audit_job, audit_schedule
from dora_assets.change_failures.checks import attribution_checks, change_failure_checks
from dora_assets.ingest.event_api import event_api_events_asset
from dora_assets.ingest.git import git_commits_asset
from dora_assets.ingest.pagerduty import pagerduty_incidents_asset
from dora_assets.metrics.change_failure_rate import (
    dora_change_failure_rate_daily_asset,
    dora_change_failure_rate_daily_reconciliation,
)
from dora_assets.metrics.change_failures import (
    dora_change_failures_daily_asset,
    dora_change_failures_daily_reconciliation,
)
from dora_assets.metrics.change_lead_time import (
    dora_change_lead_time_daily_asset,
    dora_change_lead_time_daily_reconciliation,
)
from dora_assets.metrics.failed_deployment_recovery import (
    dora_failed_deployment_recovery_daily_asset,
    dora_failed_deployment_recovery_daily_reconciliation,
)
from dora_assets.metrics.time_to_restore import (
    dora_time_to_restore_daily_asset,
    dora_time_to_restore_daily_reconciliation,
)
from dora_assets.normalized.deployment_commits import dora_deployment_commits_asset
from dora_assets.normalized.deployments import dora_deployments_asset, dora_deployments_checks
from dora_assets.normalized.incidents import dora_incidents_asset, dora_incidents_checks
from dora_assets.report.summary import dora_summary_asset
from dora_assets.resources import GitResource, PagerDutyResource, WarehouseResource

defs = dg.Definitions(
    assets=dg.map_asset_specs(
        freshness.attach_freshness_policy,
        [
            pagerduty_incidents_asset,
            event_api_events_asset,
            git_commits_asset,
            dora_deployments_asset,
            dora_deployment_commits_asset,
            dora_incidents_asset,
            dora_change_failure_rate_daily_asset,
            dora_time_to_restore_daily_asset,
            dora_change_failures_daily_asset,
            dora_failed_deployment_recovery_daily_asset,
            dora_change_lead_time_daily_asset,
            dora_summary_asset,
        ],
    ),
    asset_checks=[
        dora_deployments_checks,
        change_failure_checks,
        attribution_checks,
        dora_incidents_checks,
        dora_change_failure_rate_daily_reconciliation,
        dora_time_to_restore_daily_reconciliation,
        dora_change_failures_daily_reconciliation,
        dora_failed_deployment_recovery_daily_reconciliation,
        dora_change_lead_time_daily_reconciliation,
        *freshness.freshness_checks,
    ],
    jobs=[audit_job],
    schedules=[*schedules.schedules, audit_schedule],
    sensors=sensors.sensors,
    resources={
        "warehouse": WarehouseResource.from_environment(),
        "pagerduty": PagerDutyResource.from_environment(),
        "git": GitResource(),
    },
)
