"""Bare mirrors under `DORA_GIT_CACHE`: cloned once, then fetched incrementally."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from connectors.git.command import DEFAULT_TIMEOUT_SECONDS, GitError, run_git, shown_url

# One record per commit: sha, parents, author time, committer time (Unix seconds).
_LOG_FORMAT = "%H%x1f%P%x1f%at%x1f%ct"


# A tuple: a first sync lists, numbers and lands tens of thousands of them.
class Commit(NamedTuple):
    sha: str
    parents: tuple[str, ...]
    authored_at: dt.datetime  # naive UTC, as the warehouse stores times
    committed_at: dt.datetime
    generation: int = 0  # 0 until known (see CommitGraph.generation)

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


_EPOCH = dt.datetime(1970, 1, 1)


def _utc(seconds: str) -> dt.datetime:
    """Naive UTC (an aware datetime converted back costs three times as much)."""
    return _EPOCH + dt.timedelta(seconds=int(seconds))


class Mirrors:
    """The mirrors of a cache folder. `clone_urls` maps a repository URL (as deployments
    name it) to where to clone it from: another URL or a local path."""

    def __init__(
        self,
        cache: Path,
        clone_urls: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.cache = cache
        self.clone_urls = dict(clone_urls or {})
        self.timeout = timeout

    def path(self, repository_url: str) -> Path:
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", shown_url(repository_url)).strip("_")[-80:]
        digest = hashlib.sha256(repository_url.encode()).hexdigest()[:12]
        return self.cache / f"{readable}-{digest}.git"

    def sync(self, repository_url: str) -> Path:
        """Clone the repository's mirror, or fetch what is new; the mirror's path.

        A first clone goes to a temporary folder and is renamed when complete, so an
        interrupted clone never leaves a mirror that looks usable.
        """
        path = self.path(repository_url)
        source = self.clone_urls.get(repository_url, repository_url)
        if path.exists():
            run_git(["remote", "set-url", "origin", source], directory=path, timeout=self.timeout)
            run_git(["fetch", "--prune", "--quiet", "origin"], directory=path, timeout=self.timeout)
            return path
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            run_git(["clone", "--mirror", "--quiet", source, str(partial)], timeout=self.timeout)
        except GitError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(path)
        return path

    def tips(self, path: Path) -> set[str]:
        """The commits the mirror's refs point at."""
        listed = run_git(
            ["for-each-ref", "--format=%(objectname)"], directory=path, timeout=self.timeout
        )
        return set(listed.split())

    def commits(self, path: Path, known_tips: Iterable[str] = ()) -> Iterator[Commit]:
        """The commits reachable from the mirror's refs and not from `known_tips` (every
        commit without them; none for an empty repository), parents before children."""
        excluded = sorted(known_tips)
        listed = run_git(
            [
                "log",
                "--all",
                "--topo-order",
                "--reverse",
                f"--format={_LOG_FORMAT}",
                *(["--not", *excluded] if excluded else []),
            ],
            directory=path,
            timeout=self.timeout,
        )
        for line in listed.splitlines():
            sha, parents, authored, committed = line.split("\x1f")
            yield Commit(sha, tuple(parents.split()), _utc(authored), _utc(committed))

    def is_shallow(self, path: Path) -> bool:
        return (path / "shallow").exists()
