"""Change lead time from git: the cold and incremental cost of `git_commits` +
`dora_deployment_commits`, against one `git log` process per deployment.

Builds (not timed) a repository of 50,000 commits with `git fast-import` (a main line
with feature branches merged back, some commits authored days before they were
committed) and 5,000 deployments along its history (one service deploying every tenth
main-line commit, so each commit ships once; a monorepo whose N services deploy the same
history ships each commit N times, N times the rows), landed through the event store and
the normalized refresh into a SQLite warehouse.
Then, in one process:

- cold: mirror the repository (clone), land its commits, and resolve every deployment's
  commits (`sync_repositories` + `evaluate_changed`, what the two assets do);
- incremental: 100 new commits and 10 new deployments, then the same two steps (without
  the 5-minute re-read overlap a scheduled run has: the whole history landed seconds ago);
- baseline: the straightforward way, one `git log --no-merges PREV..SHA` process per
  deployment on the same mirror, with the same PREV rule.

The commits each deployment shipped must be the same both ways. Peak RSS is the
kernel's high-water mark for this process. Ends with one JSON line; `--quick` runs a
small version (CI smoke test).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from connectors.config import DoraConfig
from connectors.events.schemas import DeploymentEvent
from connectors.events.store import EventStore
from connectors.git.command import run_git
from connectors.git.ingest import sync_repositories
from connectors.git.mirror import Mirrors
from connectors.git.synthetic import PlannedCommit, fast_import
from connectors.warehouse import open_warehouse
from connectors.warehouse.schema import deployment_commit_ranges, dora_deployment_commits
from dora_assets.lead_time.evaluate import LONGEST_GAP, evaluate_changed
from dora_assets.normalized.deployments import deployment_sources
from dora_assets.normalized.refresh import refresh

URL = "https://git.example/acme/monorepo"
START = dt.datetime(2025, 1, 1)
SERVICES = 1


def history(size: int, rng: random.Random, first_index: int = 0, tip: int | str | None = None):
    """`size` commits a few minutes apart: a main line, and a feature branch now and then
    merged back; the plan and the indexes of the main-line commits."""
    plan: list[PlannedCommit] = []
    main: list[int] = []
    branch: int | None = None
    main_tip: int | str | None = tip
    for offset in range(size):
        moment = START + dt.timedelta(minutes=10 * (first_index + offset))
        authored = moment - dt.timedelta(days=rng.choice((0, 0, 0, 0, 2)))
        parents: tuple[int | str, ...] = () if main_tip is None else (main_tip,)
        roll = rng.random()
        if roll < 0.1 and main_tip is not None and branch is None:
            plan.append(PlannedCommit(f"feature {offset}", authored, parents, "feature", moment))
            branch = len(plan) - 1
            continue
        if roll < 0.2 and branch is not None:
            plan.append(
                PlannedCommit(f"merge {offset}", moment, (*parents, branch), "main", moment)
            )
            branch = None
        else:
            plan.append(PlannedCommit(f"change {offset}", authored, parents, "main", moment))
        main_tip = len(plan) - 1
        main.append(main_tip)
    return plan, main


def land(engine: sa.Engine, deployments: list[tuple[str, str, dt.datetime, str]]) -> None:
    events = EventStore(engine)
    events.upsert_deployments(
        [
            DeploymentEvent(
                id=identifier,
                service=service,
                env="prod",
                started_at=finished - dt.timedelta(minutes=5),
                finished_at=finished,
                commit_sha=sha,
                repository_url=URL,
            )
            for identifier, service, finished, sha in deployments
        ]
    )
    config = DoraConfig()
    refresh(engine, "dora_deployments", deployment_sources(config), config, None)


def deployments_along(
    shas: list[str], main: list[int], count: int, prefix: str, first_minute: int
) -> list[tuple[str, str, dt.datetime, str]]:
    """`count` deployments of main-line commits in order, round-robin over the services,
    each finished a minute after its commit (plan index i is committed at minute 10 i)."""
    step = max(len(main) // count, 1)
    chosen = main[step - 1 :: step][:count]
    return [
        (
            f"{prefix}{number}",
            f"service-{number % SERVICES}",
            START + dt.timedelta(minutes=10 * (first_minute + index) + 1),
            shas[index],
        )
        for number, index in enumerate(chosen)
    ]


def baseline(mirror: Path, deployments: list[tuple[str, str, dt.datetime, str]]) -> set[tuple]:
    """One `git log` per deployment, PREV = the previous deployment of its service."""
    shipped: set[tuple[str, str]] = set()
    previous: dict[str, tuple[dt.datetime, str]] = {}
    for identifier, service, finished, sha in sorted(deployments, key=lambda row: row[2]):
        before = previous.get(service)
        previous[service] = (finished, sha)
        if before is None or finished - before[0] > LONGEST_GAP:
            continue
        listed = run_git(
            ["log", "--no-merges", "--format=%H", f"{before[1]}..{sha}"], directory=mirror
        )
        shipped |= {(identifier, commit) for commit in listed.split()}
    return shipped


def stored(engine: sa.Engine) -> set[tuple]:
    c = dora_deployment_commits.c
    with engine.connect() as connection:
        return set(connection.execute(sa.select(c.deployment_id, c.commit_sha)).all())


def run(commits: int, deployments: int, folder: Path) -> dict[str, object]:
    rng = random.Random(42)
    plan, main = history(commits, rng)
    started = time.perf_counter()
    shas = fast_import(folder / "upstream", plan, bare=True)
    print(f"repository: {len(shas):,} commits in {time.perf_counter() - started:.1f} s", flush=True)
    engine = open_warehouse(f"sqlite:///{folder / 'warehouse.db'}")
    first = deployments_along(shas, main, deployments, "d", 0)
    land(engine, first)
    mirrors = Mirrors(folder / "cache", {URL: str(folder / "upstream")})

    started = time.perf_counter()
    sync_repositories(engine, mirrors)
    evaluated = evaluate_changed(engine)
    cold_s = time.perf_counter() - started
    print(f"cold: {evaluated.deployments:,} deployments resolved in {cold_s:.2f} s", flush=True)

    more, more_main = history(100, rng, first_index=commits, tip=shas[main[-1]])
    new_shas = fast_import(folder / "upstream", more, bare=True)
    late = deployments_along(new_shas, more_main, 10, "n", commits)
    land(engine, late)
    started = time.perf_counter()
    sync_repositories(engine, mirrors)
    # Without the 5-minute re-read overlap: here the whole history landed seconds ago.
    incremental = evaluate_changed(engine, overlap=dt.timedelta(0))
    incremental_s = time.perf_counter() - started
    print(
        f"incremental: {incremental.deployments} deployments in {incremental_s:.2f} s", flush=True
    )

    mirror = mirrors.path(URL)
    started = time.perf_counter()
    expected = baseline(mirror, first + late)
    baseline_s = time.perf_counter() - started
    print(
        f"baseline: {len(first) + len(late):,} git log processes in {baseline_s:.1f} s", flush=True
    )
    with engine.connect() as connection:
        outcomes = dict(
            connection.execute(
                sa.select(deployment_commit_ranges.c.outcome, sa.func.count()).group_by(
                    deployment_commit_ranges.c.outcome
                )
            ).all()
        )
    agree = stored(engine) == expected
    engine.dispose()
    return {
        "commits": len(shas) + len(new_shas),
        "deployments": len(first) + len(late),
        "shipped_rows": len(expected),
        "outcomes": outcomes,
        "cold_s": round(cold_s, 3),
        "incremental_s": round(incremental_s, 3),
        "baseline_s": round(baseline_s, 3),
        "baseline_over_cold": round(baseline_s / cold_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "values_agree": agree,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 commits, 500 deployments")
    arguments = parser.parse_args()
    commits, deployments = (5_000, 500) if arguments.quick else (50_000, 5_000)
    with tempfile.TemporaryDirectory(prefix="dora-lead-time-") as folder:
        figures = run(commits, deployments, Path(folder))
    print(
        f"cold {figures['cold_s']} s vs baseline {figures['baseline_s']} s:"
        f" {figures['baseline_over_cold']}x faster (target >= 5x); incremental"
        f" {figures['incremental_s']} s (target <= 2 s); peak {figures['peak_rss_mb']} MB"
    )
    print(json.dumps(figures))
    return 0 if figures["values_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
