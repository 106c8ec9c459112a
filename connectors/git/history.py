"""What a deployment shipped: the commits reachable from its SHA and not from the previous
deployment's, as `git log --no-merges PREV..SHA` lists them, computed on an in-memory
commit graph so thousands of deployments cost one read of the history, not one `git`
process each.

The walk is git's own "paint down to the common ancestors": commits are visited from
both tips in decreasing generation number (a commit's generation exceeds its
parents'), so when a commit is visited every path to it from the two tips has
already been walked, and its marks are final. It stops as soon as no commit waiting
to be visited is reachable from SHA alone, so its cost follows the size of the range.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from connectors.git.mirror import Commit

MAX_COMMITS = 5000
_FROM_SHA, _FROM_PREVIOUS = 1, 2
# `git log`'s order, newest first once reversed: (committed_at, sha).
_LOG_ORDER = operator.itemgetter(3, 0)


@dataclass(frozen=True)
class Shipped:
    commits: list[Commit]  # newest first, as `git log` lists them, at most MAX_COMMITS
    capped: bool  # the range held more than MAX_COMMITS


class CommitGraph:
    """Commits by SHA: given whole, or read on demand through `load` (SHAs -> the commits
    among them that exist, with their stored generation), so resolving a few
    deployments reads a few commits, not the history."""

    def __init__(
        self,
        commits: Iterable[Commit] = (),
        load: Callable[[Collection[str]], Iterable[Commit]] | None = None,
    ) -> None:
        self.commits = {commit.sha: commit for commit in commits}
        self._load = load
        self._absent: set[str] = set()
        self._generation: dict[str, int] = {}

    @classmethod
    def of(cls, commits: Iterable[Commit]) -> CommitGraph:
        return cls(commits)

    def _fetch(self, shas: Iterable[str]) -> None:
        if self._load is None:
            return
        wanted = {sha for sha in shas if sha not in self.commits and sha not in self._absent}
        if not wanted:
            return
        for commit in self._load(wanted):
            self.commits[commit.sha] = commit
        self._absent |= wanted - self.commits.keys()

    def get(self, sha: str) -> Commit | None:
        self._fetch((sha,))
        return self.commits.get(sha)

    def __contains__(self, sha: str) -> bool:
        return self.get(sha) is not None

    def _parents(self, commit: Commit) -> list[Commit]:
        """Its parents in the graph (a shallow history's boundary has none)."""
        self._fetch(commit.parents)
        return [self.commits[p] for p in commit.parents if p in self.commits]

    def generation(self, sha: str) -> int:
        """1 + the largest generation of its parents in the graph (1 for a root, and for
        the boundary of a shallow history); stored values are taken as they are."""
        known = self._generation
        stack = [sha]
        while stack:
            current = self.commits[stack[-1]]
            if current.generation or current.sha in known:
                known.setdefault(current.sha, current.generation)
                stack.pop()
                continue
            parents = self._parents(current)
            pending = [p.sha for p in parents if not p.generation and p.sha not in known]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            known[current.sha] = 1 + max((p.generation or known[p.sha] for p in parents), default=0)
        return known[sha]

    def shipped(self, sha: str, previous: str, limit: int = MAX_COMMITS) -> Shipped:
        """The non-merge commits of `previous..sha`; both must be in the graph (`in`)."""
        marks = {sha: _FROM_SHA}
        marks[previous] = marks.get(previous, 0) | _FROM_PREVIOUS
        queue = [(-self.generation(tip), tip) for tip in {sha, previous}]
        heapq.heapify(queue)
        only_from_sha = sum(1 for _, tip in queue if marks[tip] == _FROM_SHA)
        in_range: list[Commit] = []
        commits = self.commits
        while queue and only_from_sha:
            _, current = heapq.heappop(queue)
            mark = marks[current]
            commit = commits[current]
            if mark == _FROM_SHA:
                only_from_sha -= 1
                in_range.append(commit)
            for parent_commit in self._parents(commit):
                parent = parent_commit.sha
                before = marks.get(parent)
                after = (before or 0) | mark
                if before is None:
                    # A stored generation is final: no call to `generation` (one per commit
                    # walked) for the history a whole-graph read brings.
                    depth = parent_commit.generation or self.generation(parent)
                    heapq.heappush(queue, (-depth, parent))
                    only_from_sha += after == _FROM_SHA
                elif after != before:
                    # Reached from PREV's side too: it leaves the range.
                    only_from_sha -= before == _FROM_SHA
                marks[parent] = after
        listed = sorted(
            (commit for commit in in_range if not commit.is_merge),
            key=_LOG_ORDER,
            reverse=True,
        )
        return Shipped(listed[:limit], capped=len(listed) > limit)
