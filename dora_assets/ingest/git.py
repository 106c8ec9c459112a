"""`git_commits`: the commits of every repository that deployments name."""

import dagster as dg
import sqlalchemy as sa

from connectors.git.ingest import sync_repositories
from connectors.warehouse import reading
from connectors.warehouse.schema import git_commits
from dora_assets.metadata import OWNERS, WAREHOUSE_KIND, column_schema, markdown_table
from dora_assets.resources import GitResource, WarehouseResource

KEY = dg.AssetKey(git_commits.name)


@dg.asset(
    key=KEY,
    group_name="ingest",
    deps=["dora_deployments"],
    kinds={"git", WAREHOUSE_KIND},
    owners=OWNERS,
    check_specs=[
        dg.AssetCheckSpec(
            "repositories_reachable",
            asset=KEY,
            description=(
                "Warns about repositories that could not be cloned or fetched (named without"
                " credentials, with git's reason); the others still progressed."
            ),
        )
    ],
    description="""
**The commits of every repository that deployments name** (`dora_deployments.repository_url`),
read with the `git` command line from local mirrors under `DORA_GIT_CACHE` (default
`.dora/git`): cloned once (`git clone --mirror`), then fetched incrementally. Table
`git_commits`, one row per (`repository_url`, `commit_sha`): parents, author and committer
dates.

Credentials come from git's own configuration (credential helpers, `.netrc`,
`GIT_CONFIG_*`); `DORA_CONFIG` `git.repositories` can map a repository URL to another clone
URL or a local path. Every git call has a timeout. An unreachable repository is a warning,
not a failed run: the others still progress.
""",
)
def git_commits_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, git: GitResource
) -> dg.MaterializeResult:
    synced = sync_repositories(warehouse.engine, git.mirrors(), context.log.info)
    with reading(warehouse.engine) as connection:
        row_count = connection.execute(
            sa.select(sa.func.count()).select_from(git_commits)
        ).scalar_one()
    unreachable = [[url, reason] for url, reason in sorted(synced.unreachable.items())]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(row_count),
            "dagster/column_schema": column_schema(git_commits),
            "repositories": dg.MetadataValue.int(synced.repositories),
            "commits_new": dg.MetadataValue.int(synced.commits_new),
            "repositories_unreachable": dg.MetadataValue.int(len(unreachable)),
            "repositories_shallow": dg.MetadataValue.text(", ".join(synced.shallow) or "none"),
            "repositories_empty": dg.MetadataValue.text(", ".join(synced.empty) or "none"),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="repositories_reachable",
                passed=not unreachable,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "unreachable": dg.MetadataValue.md(
                        markdown_table(["repository", "reason"], unreachable)
                        if unreachable
                        else "_Every repository was cloned or fetched._"
                    )
                },
            )
        ],
    )
