"""Land the commits of every repository that deployments name into `git_commits`.

Repositories are recorded under their URL without user information: a token in a URL
is used to clone, never stored or shown.

Each repository is mirrored and read on its own: one that cannot be reached is
recorded in `git_repositories` with the (credential-free) reason, and the others
still progress.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from connectors.gc_pause import gc_paused
from connectors.git.command import GitError, shown_url
from connectors.git.mirror import Commit, Mirrors
from connectors.timestamps import utcnow
from connectors.warehouse import reading
from connectors.warehouse.bulk import executemany
from connectors.warehouse.schema import dora_deployments, git_commits, git_repositories
from connectors.warehouse.upsert import insert, upsert
from connectors.warehouse.watermarks import lock_state, read_state, save_state

# Rows per insert transaction: a first clone of a large history never holds the
# warehouse's write lock for long.
INSERT_CHUNK = 5000
_BY_SHA = operator.attrgetter("sha")


@dataclass
class Synced:
    repositories: int = 0
    commits_new: int = 0
    unreachable: dict[str, str] = field(default_factory=dict)  # shown URL -> reason
    shallow: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


def named_repositories(connection: sa.Connection) -> list[str]:
    url = dora_deployments.c.repository_url
    query = sa.select(url).where(url.is_not(None), url != "").distinct().order_by(url)
    return list(connection.execute(query).scalars())


def _record(connection: sa.Connection, url: str, error: str | None, shallow: bool) -> None:
    now = utcnow()
    values = {"repository_url": url, "error": error, "attempted_at": now, "shallow": shallow}
    if error is None:
        values["synced_at"] = now
    update = [name for name in values if name != "repository_url"]
    connection.execute(upsert(git_repositories, connection.dialect, update), [values])


def _tips_state(url: str) -> str:
    return f"git_commits.tips {url}"


def _with_generations(connection: sa.Connection, url: str, new: list[Commit]) -> list[Commit]:
    """`new` (parents before children) with generation numbers, continuing those of the
    commits already landed."""
    listed = {commit.sha for commit in new}
    outside = sorted({parent for commit in new for parent in commit.parents} - listed)
    known: dict[str, int] = {}
    g = git_commits.c
    for start in range(0, len(outside), INSERT_CHUNK):
        known |= dict(
            connection.execute(
                sa.select(g.commit_sha, g.generation).where(
                    g.repository_url == url, g.commit_sha.in_(outside[start : start + INSERT_CHUNK])
                )
            ).all()
        )
    numbered = []
    for sha, parents, authored_at, committed_at, _ in new:
        generation = 1 + max([known[p] for p in parents if p in known] or [0])
        known[sha] = generation
        numbered.append(Commit(sha, parents, authored_at, committed_at, generation))
    return numbered


def _listed_since(mirrors: Mirrors, path: Path, known_tips: set[str]) -> list[Commit]:
    """The commits that are new since `known_tips`; all of them when a tip is gone
    (history rewritten and garbage-collected)."""
    if known_tips:
        try:
            return list(mirrors.commits(path, known_tips))
        except GitError:
            pass
    return list(mirrors.commits(path))


@gc_paused()
def sync_repositories(
    engine: sa.Engine, mirrors: Mirrors, progress: Callable[[str], None] = lambda _: None
) -> Synced:
    synced = Synced()
    with reading(engine) as connection:
        urls = named_repositories(connection)
    for url in urls:
        shown = shown_url(url)
        synced.repositories += 1
        try:
            path = mirrors.sync(url)
            tips = mirrors.tips(path)
            with reading(engine) as connection:
                known_tips = set(json.loads(read_state(connection, _tips_state(shown)) or "[]"))
            listed = [] if tips == known_tips else _listed_since(mirrors, path, known_tips)
            shallow = mirrors.is_shallow(path)
        except GitError as error:
            synced.unreachable[shown] = str(error)
            with engine.begin() as connection:
                _record(connection, shown, str(error), shallow=False)
            progress(f"{shown}: unreachable ({error})")
            continue
        with reading(engine) as connection:
            new = _with_generations(connection, shown, listed)
        fetched_at = utcnow()
        # In key order: each chunk then dirties a run of neighbouring index pages, not pages
        # all over the index, which halves what SQLite writes and fsyncs per commit.
        landing = sorted(new, key=_BY_SHA)
        chunks = [
            landing[start : start + INSERT_CHUNK] for start in range(0, len(landing), INSERT_CHUNK)
        ]
        for index, chunk in enumerate(chunks or [[]]):
            with engine.begin() as connection:
                if chunk:
                    executemany(
                        connection,
                        insert(git_commits, connection.dialect)
                        .values(repository_url=shown, fetched_at=fetched_at)
                        .on_conflict_do_nothing(),
                        [
                            {
                                "commit_sha": commit.sha,
                                "parents": " ".join(commit.parents),
                                "authored_at": commit.authored_at,
                                "committed_at": commit.committed_at,
                                "generation": commit.generation,
                            }
                            for commit in chunk
                        ],
                    )
                if index == len(chunks or [[]]) - 1:
                    # The tips move with the last chunk: an interrupted run lists again.
                    lock_state(connection, _tips_state(shown))
                    save_state(connection, _tips_state(shown), json.dumps(sorted(tips)))
                    _record(connection, shown, None, shallow)
        synced.commits_new += len(new)
        if shallow:
            synced.shallow.append(shown)
        if not tips:
            synced.empty.append(shown)
        progress(f"{shown}: {len(new)} new commits")
    return synced
