"""Checks on the change-failure classification and the incident attribution."""

from collections.abc import Iterable

import dagster as dg
import sqlalchemy as sa

from connectors.config import load_config
from connectors.warehouse import reading
from connectors.warehouse.schema import dora_deployments, dora_incident_deployments
from dora_assets.normalized.checks import offenders_result
from dora_assets.resources import WarehouseResource

DEPLOYMENTS = dg.AssetKey(dora_deployments.name)
ATTRIBUTIONS = dg.AssetKey(dora_incident_deployments.name)
d, a = dora_deployments.c, dora_incident_deployments.c

SPECS = [
    dg.AssetCheckSpec(
        "recovered_not_before_finished",
        asset=DEPLOYMENTS,
        blocking=True,
        description="`recovered_at >= finished_at` on every recovered change failure.",
    ),
    dg.AssetCheckSpec(
        "rollback_failures_name_their_rollback",
        asset=DEPLOYMENTS,
        blocking=True,
        description=(
            "Every failure detected by a rollback names, as `remediation_deployment_id`, a"
            " deployment flagged `is_rollback`."
        ),
    ),
    dg.AssetCheckSpec(
        "patched_remediations_found",
        asset=DEPLOYMENTS,
        description=(
            "Warns about PATCHed change failures whose remediation was not found, or names"
            " a deployment of another service or env, or one that finished before the"
            " failed one: they have no `recovered_at` until a valid one arrives."
        ),
    ),
    dg.AssetCheckSpec(
        "deployments_carry_sha_or_version",
        asset=DEPLOYMENTS,
        description=(
            "Warns about services with deployments that carry neither a commit SHA nor a"
            " version: rollback detection cannot see them."
        ),
    ),
    dg.AssetCheckSpec(
        "attribution_lag_within_window",
        asset=ATTRIBUTIONS,
        blocking=True,
        description=(
            "Every attribution's lag is >= 0, and a `preceding` one's is at most"
            " `attribution_window_hours`."
        ),
    ),
]


_rollback = dora_deployments.alias("rollback")
# The offenders each deployment check names. Each reads one partial index of revision
# 0007, so a check costs what its offenders (or the change failures) are, not the history.
DEPLOYMENT_OFFENDERS: dict[str, tuple[sa.Select, dg.AssetCheckSeverity]] = {
    "recovered_not_before_finished": (
        sa.select(d.deployment_id, d.finished_at, d.recovered_at).where(
            d.recovered_at < d.finished_at
        ),
        dg.AssetCheckSeverity.ERROR,
    ),
    "rollback_failures_name_their_rollback": (
        sa.select(d.deployment_id, d.remediation_deployment_id)
        .select_from(
            dora_deployments.outerjoin(
                _rollback, _rollback.c.deployment_id == d.remediation_deployment_id
            )
        )
        .where(
            d.change_failure_reason == "rollback",
            sa.or_(_rollback.c.deployment_id.is_(None), _rollback.c.is_rollback.is_(False)),
        ),
        dg.AssetCheckSeverity.ERROR,
    ),
    "patched_remediations_found": (
        sa.select(d.deployment_id, d.service, d.env, d.remediation_type).where(
            d.change_failure_reason == "manual",
            d.remediation_deployment_id.is_(None),
            d.remediation_type.is_not(None),
        ),
        dg.AssetCheckSeverity.WARN,
    ),
    "deployments_carry_sha_or_version": (
        sa.select(d.service, sa.func.count().label("deployments"))
        .where(d.commit_sha.is_(None), d.version.is_(None))
        .group_by(d.service),
        dg.AssetCheckSeverity.WARN,
    ),
}


# One checks definition per asset, so either asset can be materialized on its own.
@dg.multi_asset_check(specs=SPECS[:-1], name="change_failure_checks")
def change_failure_checks(warehouse: WarehouseResource) -> Iterable[dg.AssetCheckResult]:
    with reading(warehouse.engine) as connection:
        for name, (offenders, severity) in DEPLOYMENT_OFFENDERS.items():
            yield offenders_result(name, DEPLOYMENTS, connection, offenders, severity=severity)


@dg.multi_asset_check(specs=SPECS[-1:], name="attribution_checks")
def attribution_checks(warehouse: WarehouseResource) -> Iterable[dg.AssetCheckResult]:
    window_seconds = load_config().change_failures.attribution_window_hours * 3600
    with reading(warehouse.engine) as connection:
        yield offenders_result(
            "attribution_lag_within_window",
            ATTRIBUTIONS,
            connection,
            sa.select(a.incident_id, a.service, a.deployment_id, a.method, a.lag_seconds).where(
                sa.or_(
                    a.lag_seconds < 0,
                    sa.and_(a.method == "preceding", a.lag_seconds > window_seconds),
                )
            ),
        )
