"""Land the commits of every repository that deployments name into `git_commits`.

Repositories are recorded under their URL without user information: a token in a URL
is used to clone, never stored or shown.

Each repository is mirrored and read on its own: one that cannot be reached is
recorded in `git_repositories` with the (credential-free) reason, and the others
still progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from connectors.git.command import GitError, shown_url
from connectors.git.mirror import Commit, Mirrors
from connectors.timestamps import utcnow
from connectors.warehouse import reading
from connectors.warehouse.schema import dora_deployments, git_commits, git_repositories
from connectors.warehouse.upsert import upsert

# Rows per insert transaction: a first clone of a large history never holds the
# warehouse's write lock for long.
INSERT_CHUNK = 5000


@dataclass
class Synced:
    repositories: int = 0
    commits_new: int = 0
    commits_known: int = 0
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


def _new_commits(connection: sa.Connection, url: str, commits: list[Commit]) -> list[Commit]:
    known = set(
        connection.execute(
            sa.select(git_commits.c.commit_sha).where(git_commits.c.repository_url == url)
        ).scalars()
    )
    return [commit for commit in commits if commit.sha not in known]


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
            commits = list(mirrors.commits(path))
            shallow = mirrors.is_shallow(path)
        except GitError as error:
            synced.unreachable[shown] = str(error)
            with engine.begin() as connection:
                _record(connection, shown, str(error), shallow=False)
            progress(f"{shown}: unreachable ({error})")
            continue
        with reading(engine) as connection:
            new = _new_commits(connection, shown, commits)
        fetched_at = utcnow()
        for start in range(0, len(new), INSERT_CHUNK):
            chunk = new[start : start + INSERT_CHUNK]
            with engine.begin() as connection:
                connection.execute(
                    sa.insert(git_commits),
                    [
                        {
                            "repository_url": shown,
                            "commit_sha": commit.sha,
                            "parents": " ".join(commit.parents),
                            "authored_at": commit.authored_at,
                            "committed_at": commit.committed_at,
                            "fetched_at": fetched_at,
                        }
                        for commit in chunk
                    ],
                )
        with engine.begin() as connection:
            _record(connection, shown, None, shallow)
        synced.commits_new += len(new)
        synced.commits_known += len(commits) - len(new)
        if shallow:
            synced.shallow.append(shown)
        if not commits:
            synced.empty.append(shown)
        progress(f"{shown}: {len(new)} new of {len(commits)} commits")
    return synced
