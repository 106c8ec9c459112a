"""What each deployment shipped, kept incrementally in `dora_deployment_commits`.

A deployment's commits are `git log --no-merges PREV..SHA`, PREV being the SHA of the
previous deployment of its (`service`, `env`) sequence from the same repository, when
that one finished at most 60 days earlier. So a change to a deployment (new, moved,
retracted) changes what it and the deployments after it in its sequence shipped; each
run re-evaluates, per changed sequence, the deployments from the earliest changed
point on, plus those that could not be resolved before (SHA not fetched yet,
repository unreachable). Deployments whose rows come out the same are not rewritten.

Changes are found from `dora_deployments.ingested_at` (when a row's content last
changed) after this step's watermark, re-reading a few minutes behind it so a refresh
that committed out of order is not missed; the watermark advances in the transaction
that writes the last chunk, so a crash re-applies rather than skips.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from connectors.gc_pause import gc_paused
from connectors.git.command import shown_url
from connectors.git.history import CommitGraph
from connectors.git.mirror import Commit
from connectors.timestamps import utcnow
from connectors.warehouse import WriteTurns, reading
from connectors.warehouse.bulk import executemany
from connectors.warehouse.schema import (
    deployment_commit_ranges,
    dora_change_lead_time_daily,
    dora_deployment_commits,
    dora_deployments,
    git_commits,
    git_repositories,
)
from connectors.warehouse.watermarks import lock_watermark, read_watermark, save_watermark
from dora_assets import changed_days

WATERMARK = "dora_deployment_commits.ingested_at"
REREAD_OVERLAP = dt.timedelta(minutes=5)
LONGEST_GAP = dt.timedelta(days=60)
CHUNK_DEPLOYMENTS = 2000
# From this many deployments to resolve, a repository's history is read whole.
READ_WHOLE_HISTORY_FROM = 200
# Up to this many changed deployments of a sequence are named in its query.
MAX_CHANGED_LISTED = 500
METRIC = dora_change_lead_time_daily.name
# Outcomes that may resolve on a later run (after a fetch), so they are evaluated again.
RETRIED = ("sha_not_in_mirror", "previous_not_in_mirror", "repository_unreachable")
OUTCOMES = ("shipped", "capped", "no_git", "first", "gap", *RETRIED)

d, r, c = dora_deployments.c, deployment_commit_ranges.c, dora_deployment_commits.c
SequenceKey = tuple[str, str]  # (service, env)


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    service: str
    env: str
    finished_at: dt.datetime
    finished_day: dt.date
    commit_sha: str | None
    repository_url: str | None


@dataclass(frozen=True)
class Resolution:
    """One deployment's range: its outcome and the commit rows it ships."""

    deployment: Deployment
    previous_id: str | None
    outcome: str
    rows: tuple[tuple[str, str, dt.datetime, float], ...]  # sha, repository, authored, lead

    def range_row(self, now: dt.datetime) -> dict[str, object]:
        deployment = self.deployment
        return {
            "deployment_id": deployment.deployment_id,
            "service": deployment.service,
            "env": deployment.env,
            "finished_at": deployment.finished_at,
            "repository_url": deployment.repository_url,
            "previous_deployment_id": self.previous_id,
            "outcome": self.outcome,
            "commits": len(self.rows),
            "finished_day": deployment.finished_day,
            "evaluated_at": now,
        }


@dataclass
class Evaluated:
    deployments: int = 0
    rewritten: int = 0
    retracted: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    metric_days: set[changed_days.MetricDay] = field(default_factory=set)


class Repositories:
    """The commit graphs of synced repositories from `git_commits`: read whole when many
    deployments are resolved (a first build), commit by commit as the walks need them
    when few are (a steady-state run)."""

    def __init__(self, connection: sa.Connection, whole: bool) -> None:
        self._connection = connection
        self._whole = whole
        self._graphs: dict[str, CommitGraph | None] = {}

    def _commits(self, url: str, shas: Collection[str] | None = None) -> list[Commit]:
        g = git_commits.c
        query = sa.select(
            g.commit_sha, g.parents, g.authored_at, g.committed_at, g.generation
        ).where(g.repository_url == url)
        if shas is not None:
            query = query.where(g.commit_sha.in_(sorted(shas)))
        return [
            Commit(sha, tuple(parents.split()), authored, committed, generation)
            for sha, parents, authored, committed, generation in self._connection.execute(
                query
            ).all()
        ]

    def graph(self, url: str) -> CommitGraph | None:
        """None when the repository was never synced."""
        if url not in self._graphs:
            synced = self._connection.execute(
                sa.select(git_repositories.c.synced_at).where(
                    git_repositories.c.repository_url == url
                )
            ).scalar()
            if not synced:
                self._graphs[url] = None
            elif self._whole:
                self._graphs[url] = CommitGraph(self._commits(url))
            else:
                self._graphs[url] = CommitGraph(load=lambda shas: self._commits(url, shas))
        return self._graphs[url]


def resolve(
    deployment: Deployment, previous: Deployment | None, repositories: Repositories
) -> Resolution:
    previous_id = previous.deployment_id if previous else None

    def outcome(name: str, rows: Iterable[tuple[str, str, dt.datetime, float]] = ()) -> Resolution:
        return Resolution(deployment, previous_id, name, tuple(rows))

    sha, url = deployment.commit_sha, deployment.repository_url
    if not sha or not url:
        return outcome("no_git")
    if previous is None:
        return outcome("first")
    if deployment.finished_at - previous.finished_at > LONGEST_GAP:
        return outcome("gap")
    graph = repositories.graph(url)
    if graph is None:
        return outcome("repository_unreachable")
    if sha not in graph:
        return outcome("sha_not_in_mirror")
    if previous.commit_sha not in graph:
        return outcome("previous_not_in_mirror")
    shipped = graph.shipped(sha, previous.commit_sha)
    return outcome(
        "capped" if shipped.capped else "shipped",
        (
            (
                commit.sha,
                url,
                commit.authored_at,
                (deployment.finished_at - commit.authored_at).total_seconds(),
            )
            for commit in shipped.commits
        ),
    )


def _sequence_rows(
    connection: sa.Connection, sequence: SequenceKey, since: dt.datetime, changed: set[str]
) -> list[Deployment]:
    """The sequence's deployments finished since `since`: those with git (the only ones
    that ship or serve as the previous one), and the `changed` ones (one that lost its git
    loses its rows), unless so many changed that reading them all is cheaper."""
    service, env = sequence
    with_git = sa.and_(d.commit_sha.is_not(None), d.repository_url.is_not(None))
    wanted = (
        sa.true()
        if len(changed) > MAX_CHANGED_LISTED
        else sa.or_(with_git, d.deployment_id.in_(sorted(changed)))
    )
    rows = connection.execute(
        sa.select(
            d.deployment_id,
            d.service,
            d.env,
            d.finished_at,
            d.finished_day,
            d.commit_sha,
            d.repository_url,
        )
        .where(d.service == service, d.env == env, d.finished_at >= since, wanted)
        .order_by(d.finished_at, d.started_at, d.deployment_id)
    )
    return [
        Deployment(*row[:-1], repository_url=shown_url(row[-1]) if row[-1] else None)
        for row in rows
    ]


def resolve_sequence(
    rows: Sequence[Deployment],
    evaluate_from: dt.datetime,
    also: set[str],
    repositories: Repositories,
) -> list[Resolution]:
    """Walk the sequence in order: resolve the deployments finished at or after
    `evaluate_from`, and those named in `also`."""
    latest_by_repository: dict[str, Deployment] = {}
    resolved = []
    for deployment in rows:
        url = deployment.repository_url
        if deployment.finished_at >= evaluate_from or deployment.deployment_id in also:
            previous = latest_by_repository.get(url) if url else None
            resolved.append(resolve(deployment, previous, repositories))
        if url and deployment.commit_sha:
            latest_by_repository[url] = deployment
    return resolved


def _changes(
    connection: sa.Connection, overlap: dt.timedelta
) -> tuple[
    dict[SequenceKey, dt.datetime],
    dict[SequenceKey, dict[str, dt.datetime]],
    dict[SequenceKey, set[str]],
    list[sa.Row],
    dt.datetime | None,
]:
    """Per sequence, the earliest changed point, the ids to retry and the changed ids; the
    retracted ranges; the newest `ingested_at` seen."""
    watermark = read_watermark(connection, WATERMARK)
    since = watermark - overlap if watermark else None
    changed = connection.execute(
        sa.select(d.deployment_id, d.service, d.env, d.finished_at, d.ingested_at).where(
            d.ingested_at > since if since else sa.true()
        )
    ).all()
    newest = max((row.ingested_at for row in changed), default=watermark)
    changed_ids: dict[SequenceKey, set[str]] = collections.defaultdict(set)
    for row in changed:
        changed_ids[(row.service, row.env)].add(row.deployment_id)
    retracted = connection.execute(
        sa.select(r.deployment_id, r.service, r.env, r.finished_at, r.finished_day, r.commits)
        .select_from(
            deployment_commit_ranges.outerjoin(dora_deployments, d.deployment_id == r.deployment_id)
        )
        .where(d.deployment_id.is_(None))
    ).all()
    earliest: dict[SequenceKey, dt.datetime] = {}

    def touch(service: str, env: str, moment: dt.datetime) -> None:
        key = (service, env)
        earliest[key] = min(moment, earliest.get(key, moment))

    for row in [*changed, *retracted]:
        touch(row.service, row.env, row.finished_at)
    ids = sorted(row.deployment_id for row in changed)
    for start in range(0, len(ids), CHUNK_DEPLOYMENTS):
        for row in connection.execute(
            sa.select(r.service, r.env, r.finished_at).where(
                r.deployment_id.in_(ids[start : start + CHUNK_DEPLOYMENTS])
            )
        ):
            touch(row.service, row.env, row.finished_at)  # where it was before
    retry: dict[SequenceKey, dict[str, dt.datetime]] = collections.defaultdict(dict)
    for row in connection.execute(
        sa.select(r.deployment_id, r.service, r.env, r.finished_at).where(r.outcome.in_(RETRIED))
    ):
        retry[(row.service, row.env)][row.deployment_id] = row.finished_at
    return earliest, retry, changed_ids, retracted, newest


def _stored(connection: sa.Connection, ids: list[str]) -> tuple[dict, dict]:
    commits: dict[str, set] = collections.defaultdict(set)
    for row in connection.execute(
        sa.select(
            c.deployment_id, c.commit_sha, c.repository_url, c.authored_at, c.lead_time_seconds
        ).where(c.deployment_id.in_(ids))
    ):
        commits[row[0]].add(tuple(row[1:]))
    ranges = {
        row.deployment_id: row._asdict()
        for row in connection.execute(
            sa.select(deployment_commit_ranges).where(r.deployment_id.in_(ids))
        )
    }
    return commits, ranges


def _write(
    connection: sa.Connection,
    resolutions: list[Resolution],
    changed_ids: set[str],
    evaluated: Evaluated,
) -> set[changed_days.MetricDay]:
    """Write the resolutions that differ from what is stored; the metric days touched."""
    touched: set[changed_days.MetricDay] = set()
    ids = [resolution.deployment.deployment_id for resolution in resolutions]
    stored_commits, stored_ranges = _stored(connection, ids)
    now = utcnow()
    rewritten: list[str] = []
    commit_rows: list[dict[str, object]] = []
    reranged: list[dict[str, object]] = []
    unranged: list[str] = []
    for resolution in resolutions:
        deployment = resolution.deployment
        identifier = deployment.deployment_id
        evaluated.outcomes[resolution.outcome] += 1
        new_rows = {(sha, url, authored, lead) for sha, url, authored, lead in resolution.rows}
        old_rows = stored_commits.get(identifier, set())
        old_range = stored_ranges.get(identifier)
        range_row = resolution.range_row(now)
        if resolution.outcome == "no_git":
            # Nothing to ship, retry or retract: a warehouse without git keeps no ranges.
            if old_range is not None:
                unranged.append(identifier)
        elif old_range is None or any(
            old_range[name] != value for name, value in range_row.items() if name != "evaluated_at"
        ):
            reranged.append(range_row)
        if new_rows != old_rows:
            rewritten.append(identifier)
            commit_rows += [
                {
                    "deployment_id": identifier,
                    "commit_sha": sha,
                    "repository_url": url,
                    "authored_at": authored,
                    "lead_time_seconds": lead,
                }
                for sha, url, authored, lead in new_rows
            ]
        # The metric counts a deployment's commits under its day, service, team and env:
        # a changed deployment may have moved, a re-resolved one may ship other commits.
        if new_rows != old_rows or (identifier in changed_ids and (new_rows or old_rows)):
            touched.add((METRIC, deployment.finished_day))
            if old_range is not None:
                touched.add((METRIC, old_range["finished_day"]))
    if rewritten:
        connection.execute(sa.delete(dora_deployment_commits).where(c.deployment_id.in_(rewritten)))
    # Inserted in key order, for the reason `connectors.git.ingest` lands commits so.
    commit_rows.sort(key=lambda row: (row["deployment_id"], row["commit_sha"]))
    executemany(connection, sa.insert(dora_deployment_commits), commit_rows)
    stale = unranged + [row["deployment_id"] for row in reranged]
    if stale:
        connection.execute(sa.delete(deployment_commit_ranges).where(r.deployment_id.in_(stale)))
    reranged.sort(key=lambda row: row["deployment_id"])
    executemany(connection, sa.insert(deployment_commit_ranges), reranged)
    evaluated.rewritten += len(rewritten)
    return touched


@gc_paused()
def evaluate_changed(engine: sa.Engine, overlap: dt.timedelta = REREAD_OVERLAP) -> Evaluated:
    """Bring `dora_deployment_commits` up to date with what changed since the last run."""
    evaluated = Evaluated()
    with reading(engine) as connection:
        earliest, retry, changed_by_sequence, retracted, newest = _changes(connection, overlap)
        changed_ids = set().union(*changed_by_sequence.values())
        retries = sum(len(ids) for ids in retry.values())
        repositories = Repositories(
            connection, whole=len(changed_ids) + retries >= READ_WHOLE_HISTORY_FROM
        )
        resolutions: list[Resolution] = []
        for sequence in sorted(set(earliest) | set(retry)):
            point = earliest.get(sequence, dt.datetime.max)
            retried = retry.get(sequence, {})
            # A previous deployment further back than the longest gap ships nothing anyway.
            since = min([point, *retried.values()]) - LONGEST_GAP
            changed = changed_by_sequence.get(sequence, set())
            rows = _sequence_rows(connection, sequence, since, changed)
            resolutions += resolve_sequence(rows, point, set(retried), repositories)
    evaluated.deployments = len(resolutions)
    evaluated.retracted = len(retracted)
    chunks = [
        resolutions[start : start + CHUNK_DEPLOYMENTS]
        for start in range(0, len(resolutions), CHUNK_DEPLOYMENTS)
    ] or [[]]
    turns = WriteTurns(engine)
    for index, chunk in enumerate(chunks):
        with turns.begin() as connection:
            # Each chunk records the metric days it touched in its own transaction.
            touched = _write(connection, chunk, changed_ids, evaluated)
            if index == 0:
                touched |= _remove(connection, retracted)
            changed_days.record(connection, touched)
            evaluated.metric_days |= touched
            if index == len(chunks) - 1 and newest is not None:
                lock_watermark(connection, WATERMARK)
                save_watermark(connection, WATERMARK, newest)
    return evaluated


def _remove(connection: sa.Connection, retracted: list[sa.Row]) -> set[changed_days.MetricDay]:
    """Forget retracted deployments; the days their commits counted under."""
    ids = [row.deployment_id for row in retracted]
    for start in range(0, len(ids), CHUNK_DEPLOYMENTS):
        chunk = ids[start : start + CHUNK_DEPLOYMENTS]
        connection.execute(sa.delete(dora_deployment_commits).where(c.deployment_id.in_(chunk)))
        connection.execute(sa.delete(deployment_commit_ranges).where(r.deployment_id.in_(chunk)))
    return {(METRIC, row.finished_day) for row in retracted if row.commits}
