"""The demo's git repositories: one per service, whose commits its deployments ship.

Before each deployment that is not a rollback, one to four commits land on `main`,
authored between the previous deployment and this one (now and then one authored days
earlier, as a rebased branch would be); the deployment ships the newest. A rollback
redeploys the commit of the deployment it returns to. Everything is seeded by the
deployment ids, so the same history makes the same commits (the same SHAs).
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
from pathlib import Path
from typing import Any

from connectors.git.synthetic import PlannedCommit, fast_import
from dora_assets.demo.history import SEED, SERVICES, History

FIRST_COMMITS_BEFORE = dt.timedelta(days=2)
REBASED_CHANCE = 0.1


def _parse(moment: str) -> dt.datetime:
    return dt.datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ")


def _plan(deployments: list[dict[str, Any]]) -> tuple[list[PlannedCommit], dict[str, int]]:
    """The commits of one service and, per deployment id, the index of the commit it ships."""
    plan: list[PlannedCommit] = []
    ships: dict[str, int] = {}
    shipped_by_git: dict[int, int] = {}  # id() of an event's git object -> commit index
    previous_finish: dt.datetime | None = None
    for deployment in deployments:
        finished = _parse(deployment["finished_at"])
        earlier = shipped_by_git.get(id(deployment["git"]))
        if earlier is not None:  # a rollback: the same git object as the deployment it repeats
            ships[deployment["id"]] = earlier
            previous_finish = finished
            continue
        rng = random.Random(f"{SEED}:commits:{deployment['id']}")
        since = previous_finish or finished - FIRST_COMMITS_BEFORE
        # Committed since the previous deployment, and at least a minute before this one.
        window = max((finished - since).total_seconds(), 120.0)
        moments = sorted(
            finished - dt.timedelta(seconds=rng.uniform(60, window))
            for _ in range(rng.randint(1, 4))
        )
        for number, committed in enumerate(moments):
            authored = committed
            if rng.random() < REBASED_CHANCE:
                authored = committed - dt.timedelta(days=rng.uniform(1, 6))
            parents = (len(plan) - 1,) if plan else ()
            message = f"{deployment['service']}: change {deployment['id']}.{number}"
            plan.append(PlannedCommit(message, authored, parents, "main", committed))
        ships[deployment["id"]] = len(plan) - 1
        shipped_by_git[id(deployment["git"])] = len(plan) - 1
        previous_finish = finished
    return plan, ships


def build_repositories(history: History, folder: Path) -> dict[str, str]:
    """Create the repositories under `folder` (afresh) and point every deployment's `git` at
    its commit; the map of repository URL to local path, for `DORA_CONFIG`."""
    shutil.rmtree(folder, ignore_errors=True)
    clone_urls: dict[str, str] = {}
    for service in SERVICES:
        deployments = sorted(
            (event for event in history.deployments if event["service"] == service.name),
            key=lambda event: event["finished_at"],
        )
        if not deployments:
            continue
        url = deployments[0]["git"]["repository_url"]
        path = folder / f"{service.name}.git"
        plan, ships = _plan(deployments)
        shas = fast_import(path, plan, bare=True)
        by_commit: dict[int, dict[str, str]] = {}
        for deployment in deployments:
            index = ships[deployment["id"]]
            deployment["git"] = by_commit.setdefault(
                index, {"repository_url": url, "commit_sha": shas[index]}
            )
        clone_urls[url] = str(path.resolve())
    return clone_urls
