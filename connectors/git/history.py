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

import datetime as dt
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from connectors.git.mirror import Commit

MAX_COMMITS = 5000
_FROM_SHA, _FROM_PREVIOUS = 1, 2


@dataclass(frozen=True)
class Shipped:
    commits: list[Commit]  # newest first, as `git log` lists them, at most MAX_COMMITS
    capped: bool  # the range held more than MAX_COMMITS


@dataclass
class CommitGraph:
    commits: dict[str, Commit] = field(default_factory=dict)
    _generation: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, commits: Iterable[Commit]) -> CommitGraph:
        return cls({commit.sha: commit for commit in commits})

    def __contains__(self, sha: str) -> bool:
        return sha in self.commits

    def generation(self, sha: str) -> int:
        """1 + the largest generation of its parents in the graph (1 for a root, and for
        the boundary of a shallow history)."""
        known = self._generation
        if sha in known:
            return known[sha]
        stack = [sha]
        while stack:
            current = stack[-1]
            pending = [
                parent
                for parent in self.commits[current].parents
                if parent in self.commits and parent not in known
            ]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            parents = [known[p] for p in self.commits[current].parents if p in self.commits]
            known[current] = 1 + max(parents, default=0)
        return known[sha]

    def shipped(self, sha: str, previous: str, limit: int = MAX_COMMITS) -> Shipped:
        """The non-merge commits of `previous..sha`; both must be in the graph."""
        marks = {sha: _FROM_SHA}
        marks[previous] = marks.get(previous, 0) | _FROM_PREVIOUS
        queue = [(-self.generation(tip), tip) for tip in {sha, previous}]
        heapq.heapify(queue)
        only_from_sha = sum(1 for _, tip in queue if marks[tip] == _FROM_SHA)
        in_range: list[Commit] = []
        while queue and only_from_sha:
            _, current = heapq.heappop(queue)
            mark = marks[current]
            if mark == _FROM_SHA:
                only_from_sha -= 1
                in_range.append(self.commits[current])
            for parent in self.commits[current].parents:
                if parent not in self.commits:
                    continue
                before = marks.get(parent)
                after = (before or 0) | mark
                if before is None:
                    heapq.heappush(queue, (-self.generation(parent), parent))
                    only_from_sha += after == _FROM_SHA
                elif after != before:
                    # Reached from PREV's side too: it leaves the range.
                    only_from_sha -= before == _FROM_SHA
                marks[parent] = after
        listed = sorted(
            (commit for commit in in_range if not commit.is_merge),
            key=lambda commit: (commit.committed_at, commit.sha),
            reverse=True,
        )
        return Shipped(listed[:limit], capped=len(listed) > limit)


def lead_time_seconds(finished_at: dt.datetime, commit: Commit) -> float:
    return (finished_at - commit.authored_at).total_seconds()
