"""`dora_deployment_commits`: the commits each deployment shipped, with their lead time."""

import dagster as dg
import sqlalchemy as sa

from connectors.warehouse import reading
from connectors.warehouse.schema import (
    deployment_commit_ranges,
    dora_deployment_commits,
    dora_deployments,
)
from dora_assets.lead_time.evaluate import OUTCOMES, RETRIED, evaluate_changed
from dora_assets.metadata import (
    OWNERS,
    WAREHOUSE_KIND,
    markdown_table,
    table_definition_metadata,
    table_metadata,
)
from dora_assets.normalized.checks import offenders_result
from dora_assets.resources import WarehouseResource

KEY = dg.AssetKey(dora_deployment_commits.name)
c, r, d = dora_deployment_commits.c, deployment_commit_ranges.c, dora_deployments.c
WARN = dg.AssetCheckSeverity.WARN


@dg.asset(
    key=KEY,
    group_name="normalized",
    deps=["dora_deployments", "git_commits"],
    kinds={"sql", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata=table_definition_metadata(dora_deployment_commits),
    check_specs=[
        dg.AssetCheckSpec(
            "lead_times_not_negative",
            asset=KEY,
            description=(
                "Warns about commits authored after the deployment that shipped them finished"
                " (clock skew on a laptop or a CI runner): reported, not hidden or clamped."
            ),
        ),
        dg.AssetCheckSpec(
            "deployment_commits_found",
            asset=KEY,
            description=(
                "Warns about deployments whose SHA or whose previous deployment's SHA is not"
                " in the fetched mirror (force-pushed away, never pushed), or whose repository"
                " could not be reached: they ship nothing until a later fetch finds them."
            ),
        ),
    ],
    description="""
**The commits each deployment shipped**, one row per (`deployment_id`, `commit_sha`):
`repository_url`, `authored_at` (the author date, which survives rebases) and
`lead_time_seconds` = the deployment's `finished_at` - `authored_at`.

A deployment ships `git log --no-merges PREV..SHA`, PREV being the SHA of the previous
deployment of its (`service`, `env`) sequence from the same repository. It ships nothing
when it is the first of its sequence from that repository, when PREV finished more than
60 days earlier, when it is a rollback (its SHA is an ancestor of PREV), or when a SHA is
not in the mirror (a warning check names those); at most the newest 5,000 commits.

Incremental: each run takes the deployments that changed since the last one and those
after them in their sequences, and retries the unresolved ones; it records the
`dora_change_lead_time_daily` days it changed for the late-data sensor.
""",
)
def dora_deployment_commits_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    evaluated = evaluate_changed(warehouse.engine)
    context.log.info(
        f"evaluated {evaluated.deployments} deployment(s), rewrote {evaluated.rewritten},"
        f" removed {evaluated.retracted} retracted; {len(evaluated.metric_days)} metric day(s)"
        " recorded"
    )
    with reading(warehouse.engine) as connection:
        row_count = connection.execute(
            sa.select(sa.func.count()).select_from(dora_deployment_commits)
        ).scalar_one()
        outcomes = dict(
            connection.execute(sa.select(r.outcome, sa.func.count()).group_by(r.outcome)).all()
        )
        outcomes["no_git"] = connection.execute(
            sa.select(sa.func.count()).where(
                sa.or_(d.commit_sha.is_(None), d.repository_url.is_(None))
            )
        ).scalar_one()
        metadata = table_metadata(
            connection,
            dora_deployment_commits,
            row_count,
            sa.select(c.deployment_id, c.commit_sha, c.authored_at, c.lead_time_seconds)
            .join(dora_deployments, d.deployment_id == c.deployment_id)
            .order_by(d.finished_at.desc(), c.authored_at.desc()),
        )
        checks = [
            offenders_result(
                "lead_times_not_negative",
                KEY,
                connection,
                sa.select(c.deployment_id, c.commit_sha, c.authored_at, c.lead_time_seconds).where(
                    c.lead_time_seconds < 0
                ),
                WARN,
            ),
            offenders_result(
                "deployment_commits_found",
                KEY,
                connection,
                sa.select(r.deployment_id, r.service, r.env, r.outcome).where(
                    r.outcome.in_(RETRIED)
                ),
                WARN,
            ),
        ]
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "deployments_evaluated": dg.MetadataValue.int(evaluated.deployments),
            "deployments_rewritten": dg.MetadataValue.int(evaluated.rewritten),
            "deployments_retracted": dg.MetadataValue.int(evaluated.retracted),
            "metric_days_recorded": dg.MetadataValue.int(len(evaluated.metric_days)),
            "outcomes": dg.MetadataValue.md(
                markdown_table(
                    ["outcome", "deployments"], [[name, outcomes.get(name, 0)] for name in OUTCOMES]
                )
            ),
        },
        check_results=checks,
    )
