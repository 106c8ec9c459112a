"""The git connector on real repositories made in a temporary folder: mirrors (clone,
incremental fetch, clone URL mapping, errors without credentials) and what a
deployment shipped, checked against `git log --no-merges PREV..SHA` itself."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

from connectors.git.command import GitError, redact, run_git, shown_url
from connectors.git.history import CommitGraph
from connectors.git.mirror import Mirrors
from connectors.git.synthetic import PlannedCommit, fast_import

START = dt.datetime(2025, 3, 1, 9)


def hours(count: float) -> dt.datetime:
    return START + dt.timedelta(hours=count)


def git_log_range(path: Path, previous: str, sha: str) -> list[str]:
    listed = run_git(["log", "--no-merges", "--format=%H", f"{previous}..{sha}"], directory=path)
    return listed.split()


def random_history(seed: int, size: int) -> list[PlannedCommit]:
    """Mainline commits with feature branches merged back, some authored (rebased) long
    before they were committed."""
    rng = random.Random(seed)
    plan: list[PlannedCommit] = [PlannedCommit("root", hours(0))]
    main_tip, branches = 0, []
    for index in range(1, size):
        moment = hours(index)
        authored = moment - dt.timedelta(days=rng.choice([0, 0, 0, 3]))
        roll = rng.random()
        if roll < 0.15:
            branches.append(index)
            plan.append(
                PlannedCommit(f"feature {index}", authored, (main_tip,), f"f{index}", moment)
            )
        elif roll < 0.3 and branches:
            branch = branches.pop(rng.randrange(len(branches)))
            plan.append(
                PlannedCommit(f"merge {branch}", moment, (main_tip, branch), "main", moment)
            )
            main_tip = index
        else:
            plan.append(PlannedCommit(f"change {index}", authored, (main_tip,), "main", moment))
            main_tip = index
    return plan


def test_shipped_ranges_match_git_log_on_a_history_with_merges(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    shas = fast_import(path, random_history(seed=7, size=160))
    graph = CommitGraph.of(Mirrors(tmp_path).commits(path))
    assert len(graph.commits) == 160
    rng = random.Random(3)
    pairs = [(shas[i], shas[j]) for i, j in zip(range(0, 150, 7), range(5, 160, 7), strict=False)]
    pairs += [(rng.choice(shas), rng.choice(shas)) for _ in range(60)]
    for previous, sha in pairs:
        expected = git_log_range(path, previous, sha)
        shipped = graph.shipped(sha, previous)
        assert [commit.sha for commit in shipped.commits] == expected, (previous, sha)
        assert not shipped.capped


def test_merges_are_excluded_rollbacks_ship_nothing_and_author_dates_survive_rebases(
    tmp_path: Path,
) -> None:
    path = tmp_path / "repo"
    plan = [
        PlannedCommit("a", hours(0)),
        PlannedCommit("b", hours(1), (0,)),
        PlannedCommit(
            "feature", hours(-48), (1,), "feature", hours(2)
        ),  # rebased: authored earlier
        PlannedCommit("merge", hours(3), (1, 2)),
        PlannedCommit("c", hours(4), (3,)),
    ]
    a, b, feature, merge, c = fast_import(path, plan)
    graph = CommitGraph.of(Mirrors(tmp_path).commits(path))

    shipped = graph.shipped(c, a)
    assert [commit.sha for commit in shipped.commits] == [c, feature, b]
    assert graph.commits[feature].authored_at == hours(-48)
    assert graph.shipped(a, c).commits == []  # a rollback ships nothing
    assert graph.shipped(c, c).commits == []
    assert merge not in {commit.sha for commit in graph.shipped(c, b).commits}


def test_a_range_is_capped_at_the_newest_commits(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    plan = [PlannedCommit(f"c{i}", hours(i), (i - 1,) if i else ()) for i in range(12)]
    shas = fast_import(path, plan)
    graph = CommitGraph.of(Mirrors(tmp_path).commits(path))
    shipped = graph.shipped(shas[-1], shas[0], limit=5)
    assert [commit.sha for commit in shipped.commits] == shas[-1:-6:-1]
    assert shipped.capped


def test_mirror_clones_once_then_fetches_new_commits(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    first = fast_import(upstream, [PlannedCommit("a", hours(0))])
    mirrors = Mirrors(tmp_path / "cache", {"https://git.example/acme/shop": str(upstream)})
    mirror = mirrors.sync("https://git.example/acme/shop")
    assert mirror.parent == tmp_path / "cache"
    assert [commit.sha for commit in mirrors.commits(mirror)] == first
    second = fast_import(upstream, [PlannedCommit("b", hours(1), ())])
    # Not a parent of the first: a separate root on the same branch is still fetched.
    assert mirrors.sync("https://git.example/acme/shop") == mirror
    assert {commit.sha for commit in mirrors.commits(mirror)} >= set(second)


def test_an_empty_repository_has_no_commits(tmp_path: Path) -> None:
    upstream = tmp_path / "empty"
    run_git(["init", "--quiet", "--bare", str(upstream)])
    mirrors = Mirrors(tmp_path / "cache")
    assert list(mirrors.commits(mirrors.sync(str(upstream)))) == []


def test_a_shallow_history_walks_to_its_boundary(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    plan = [PlannedCommit(f"c{i}", hours(i), (i - 1,) if i else ()) for i in range(6)]
    shas = fast_import(upstream, plan)
    shallow = tmp_path / "shallow"
    run_git(["clone", "--quiet", "--bare", "--depth", "3", upstream.as_uri(), str(shallow)])
    mirrors = Mirrors(tmp_path / "cache")
    graph = CommitGraph.of(mirrors.commits(shallow))
    assert mirrors.is_shallow(shallow)
    assert set(graph.commits) == set(shas[3:])
    assert [commit.sha for commit in graph.shipped(shas[5], shas[3]).commits] == shas[5:3:-1]


def test_an_unreachable_repository_fails_without_showing_credentials(tmp_path: Path) -> None:
    url = "https://deploy-bot:s3cr3t-token@127.0.0.1:9/acme/shop.git"
    mirrors = Mirrors(tmp_path / "cache", timeout=30)
    with pytest.raises(GitError) as raised:
        mirrors.sync(url)
    assert "s3cr3t-token" not in str(raised.value)
    assert "deploy-bot" not in str(raised.value)
    assert "s3cr3t" not in str(mirrors.path(url))
    assert not list((tmp_path / "cache").glob("*"))  # no half-made mirror is left
    assert shown_url(url) == "https://127.0.0.1:9/acme/shop.git"
    assert redact(f"fatal: unable to access '{url}/'") == (
        "fatal: unable to access 'https://127.0.0.1:9/acme/shop.git/'"
    )


def test_a_git_call_that_runs_too_long_is_stopped(tmp_path: Path) -> None:
    upstream = tmp_path / "upstream"
    fast_import(upstream, [PlannedCommit("a", hours(0))])
    with pytest.raises(GitError, match="timed out after"):
        # A real call with an impossible budget: the timeout is enforced, not advisory.
        Mirrors(tmp_path / "cache", timeout=0.000001).sync(str(upstream))
