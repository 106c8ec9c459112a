"""The change-failure rules of DESIGN.md on hand-made sequences, and against a brute-force
reference on random ones.

Pure functions: no warehouse needed. Names: deployments are `d<position>` and deploy a
version (or nothing, `None`), finishing an hour apart from 2025-03-01 00:00.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dora_assets.change_failures.classify import (
    Attribution,
    Classification,
    Deployment,
    Incident,
    Patch,
    Rules,
    classify_sequence,
)

START = dt.datetime(2025, 3, 1)
RULES = Rules()


def hour(n: float) -> dt.datetime:
    return START + dt.timedelta(hours=n)


def sequence(*versions: str | None, **patches: Patch) -> list[Deployment]:
    """Deployments d0, d1, ... deploying `versions`, finished at hours 0, 1, ..."""
    return [
        Deployment(
            deployment_id=f"d{n}",
            started_at=hour(n) - dt.timedelta(minutes=5),
            finished_at=hour(n),
            version=version,
            patch=patches.get(f"d{n}"),
        )
        for n, version in enumerate(versions)
    ]


def failures(deployments: list[Deployment], incidents=(), rules: Rules = RULES) -> dict:
    classified, _ = classify_sequence(deployments, list(incidents), rules)
    return {
        key: (value.change_failure_reason, value.remediation_deployment_id, value.recovered_at)
        for key, value in classified.items()
        if value.change_failure
    }


def flags(deployments: list[Deployment], name: str) -> set[str]:
    classified, _ = classify_sequence(deployments, [], RULES)
    return {key for key, value in classified.items() if getattr(value, name)}


# --- rollback ------------------------------------------------------------------------


def test_v1_v2_v3_v1_the_first_deployment_after_the_target_failed() -> None:
    deployments = sequence("1", "2", "3", "1")
    assert failures(deployments) == {"d1": ("rollback", "d3", hour(3))}
    assert flags(deployments, "is_rollback") == {"d3"}


def test_a_redeploy_is_not_a_rollback() -> None:
    assert failures(sequence("1", "1", "2")) == {}


def test_a_deployment_without_sha_or_version_is_invisible_to_rollbacks() -> None:
    # V1 -> X -> V1 is a redeploy; in V1 -> X -> V2 -> V1 the failure is V2.
    assert failures(sequence("1", None, "1")) == {}
    assert failures(sequence("1", None, "2", "1")) == {"d2": ("rollback", "d3", hour(3))}


def test_the_target_is_the_most_recent_earlier_deployment_of_the_same_thing() -> None:
    # 1 2 1 3 1: d2 rolls back to d0 (d1 failed); d4 rolls back to d2 (d3 failed).
    assert failures(sequence("1", "2", "1", "3", "1")) == {
        "d1": ("rollback", "d2", hour(2)),
        "d3": ("rollback", "d4", hour(4)),
    }


def test_the_commit_sha_is_what_a_deployment_deployed_when_it_has_one() -> None:
    deployments = [
        Deployment("a", hour(0), hour(0), commit_sha="aaa", version="1"),
        Deployment("b", hour(1), hour(1), commit_sha="bbb", version="1"),
        Deployment("c", hour(2), hour(2), commit_sha="aaa", version="2"),
    ]
    assert failures(deployments) == {"b": ("rollback", "c", hour(2))}


def test_order_is_finished_then_started_then_id() -> None:
    # Same finish: the one that started earlier comes first; then the smaller id.
    deployments = [
        Deployment("z", hour(0), hour(5), version="1"),
        Deployment("y", hour(1), hour(5), version="2"),
        Deployment("b", hour(2), hour(6), version="1"),
        Deployment("a", hour(2), hour(6), version="3"),
    ]
    # Sequence: z(1) y(2) a(3) b(1): b rolls back to z; the failure is y.
    assert failures(deployments) == {"y": ("rollback", "b", hour(6))}


# --- rollforward ---------------------------------------------------------------------


def test_a_hotfix_marks_the_deployment_before_it() -> None:
    deployments = sequence("1", "2", "2-HOTFIX")
    assert failures(deployments) == {"d1": ("rollforward", "d2", hour(2))}
    assert flags(deployments, "is_rollforward") == {"d2"}


def test_a_hotfix_tag_counts_and_a_deployment_without_version_can_be_the_failure() -> None:
    deployments = [*sequence("1", None)]
    deployments.append(Deployment("d2", hour(2), hour(2), custom_tags=("kind:Hotfix",)))
    assert failures(deployments) == {"d1": ("rollforward", "d2", hour(2))}


def test_configured_patterns_replace_the_default_for_their_field() -> None:
    rules = Rules(rollforward_versions=(re.compile(r"-fix$"),))
    assert failures(sequence("1", "2", "2-hotfix"), rules=rules) == {}
    assert failures(sequence("1", "2", "2-fix"), rules=rules) == {
        "d1": ("rollforward", "d2", hour(2))
    }


def test_a_first_deployment_that_is_a_hotfix_marks_nothing() -> None:
    assert failures(sequence("hotfix-1", "2")) == {}


# --- manual ----------------------------------------------------------------------------


def test_patch_with_a_remediation_by_id_or_by_version() -> None:
    by_id = sequence("1", "2", "3", d1=Patch(True, "rollforward", remediation_id="d2"))
    assert failures(by_id) == {"d1": ("manual", "d2", hour(2))}
    assert flags(by_id, "is_rollforward") == {"d2"}
    by_version = sequence("1", "2", "3", "3", d0=Patch(True, "rollback", remediation_version="3"))
    assert failures(by_version) == {"d0": ("manual", "d2", hour(2))}
    assert flags(by_version, "is_rollback") == {"d2"}


def test_patch_without_or_with_an_invalid_remediation_is_not_recovered() -> None:
    for patch in (
        Patch(True),
        Patch(True, "rollback", remediation_id="elsewhere"),
        Patch(True, "rollback", remediation_id="d0"),  # finished before the failed one
        Patch(True, "rollback", remediation_version="9"),
    ):
        deployments = sequence("1", "2", "3", d1=patch)
        classified, _ = classify_sequence(deployments, [], RULES)
        assert classified["d1"] == Classification(
            change_failure=True,
            change_failure_reason="manual",
            remediation_type=patch.remediation_type,
        )
        assert flags(deployments, "is_rollback") == set()


def test_stable_overrides_every_automatic_reason_but_not_what_a_deployment_did() -> None:
    deployments = sequence("1", "2", "1", d1=Patch(False), d2=Patch(False))
    assert failures(deployments) == {}
    assert flags(deployments, "is_rollback") == {"d2"}


def test_manual_wins_over_rollback_and_rollback_over_rollforward() -> None:
    deployments = sequence("1", "2", "1", d1=Patch(True))
    assert failures(deployments) == {"d1": ("manual", None, None)}
    # d1 is both rolled back (by d3) and rolled forward (by d2): the rollback wins.
    both = sequence("1", "2", "2-hotfix", "1")
    assert failures(both)["d1"] == ("rollback", "d3", hour(3))


# --- incidents -----------------------------------------------------------------------


def incident(name: str, started: float, finished: float | None, **keys: str) -> Incident:
    return Incident(
        name, "checkout", hour(started), hour(finished) if finished is not None else None, **keys
    )


def test_attribution_by_commit_then_version_then_the_window() -> None:
    deployments = [
        Deployment("a", hour(0), hour(0), commit_sha="aaa", version="1"),
        Deployment("b", hour(1), hour(1), commit_sha="bbb", version="2"),
        Deployment("c", hour(2), hour(2), version="3"),
        Deployment("late", hour(30), hour(30), commit_sha="aaa"),  # after every incident
    ]
    incidents = [
        incident("by-commit", 5, 6, commit_sha="aaa"),
        incident("by-version", 5, 6, version="2"),
        incident("preceding", 5, None),
        incident("too-late", 27, 28),  # 25 h after c: outside the 24 h window
        incident("edge", 26, 27),  # exactly 24 h after c: inside (both ends count)
    ]
    _, attributions = classify_sequence(deployments, incidents, RULES)
    assert attributions == [
        Attribution("by-commit", "checkout", "a", "commit", 5 * 3600.0),
        Attribution("by-version", "checkout", "b", "version", 4 * 3600.0),
        Attribution("preceding", "checkout", "c", "preceding", 3 * 3600.0),
        Attribution("edge", "checkout", "c", "preceding", 24 * 3600.0),
    ]


def test_attribution_takes_the_latest_deployment_of_the_commit_or_version() -> None:
    deployments = [
        Deployment("first", hour(0), hour(0), commit_sha="aaa", version="1"),
        Deployment("other", hour(1), hour(1), commit_sha="bbb", version="2"),
        Deployment("again", hour(2), hour(2), commit_sha="aaa", version="1"),
    ]
    incidents = [
        incident("by-commit", 5, 6, commit_sha="aaa"),
        incident("by-version", 5, 6, version="1"),
        incident("at-finish", 2, 3, version="1"),  # started as `again` finished: it counts
    ]
    _, attributions = classify_sequence(deployments, incidents, RULES)
    assert attributions == [
        Attribution("by-commit", "checkout", "again", "commit", 3 * 3600.0),
        Attribution("by-version", "checkout", "again", "version", 3 * 3600.0),
        Attribution("at-finish", "checkout", "again", "version", 0.0),
    ]


def test_an_attributed_deployment_recovers_when_its_last_incident_resolves() -> None:
    deployments = sequence("1", "2")
    assert failures(deployments, [incident("i1", 1.5, 3), incident("i2", 2, 4)]) == {
        "d1": ("incident", None, hour(4))
    }
    assert failures(deployments, [incident("i1", 1.5, 3), incident("i2", 2, None)]) == {
        "d1": ("incident", None, None)
    }
    quiet = Rules(incidents_mark_deployments=False)
    assert failures(deployments, [incident("i1", 1.5, 3)], rules=quiet) == {}


def test_a_rollback_detected_failure_with_incidents_recovers_at_the_rollback() -> None:
    deployments = sequence("1", "2", "1")
    assert failures(deployments, [incident("i1", 1.5, 9)]) == {"d1": ("rollback", "d2", hour(2))}


def test_an_incident_without_service_or_before_any_deployment_is_not_attributed() -> None:
    teamless = Incident("t", "", hour(5), None)
    early = incident("early", -1, 0)
    _, attributions = classify_sequence(sequence("1"), [teamless, early], RULES)
    assert attributions == []


# --- property: the rules against a brute-force reference -------------------------------


def reference_rollbacks(deployments: list[Deployment]) -> dict[str, str]:
    """failed id -> rollback id, by the definitions, position by position."""
    ordered = sorted(deployments, key=lambda d: d.order)
    visible = [d for d in ordered if d.deployed]
    found: dict[str, str] = {}
    for i, d in enumerate(visible):
        if i == 0 or visible[i - 1].deployed == d.deployed:
            continue
        earlier = [j for j in range(i) if visible[j].deployed == d.deployed]
        if earlier:
            found.setdefault(visible[earlier[-1] + 1].deployment_id, d.deployment_id)
    return found


@settings(max_examples=300, deadline=None)
@given(
    versions=st.lists(st.sampled_from(["1", "2", "3", "hotfix", None]), max_size=12),
    finish_hours=st.lists(st.integers(0, 5), min_size=12, max_size=12),
)
def test_rollbacks_and_rollforwards_match_a_brute_force_reference(
    versions: list[str | None], finish_hours: list[int]
) -> None:
    deployments = [
        Deployment(f"d{n:02d}", hour(0), hour(finish_hours[n]), version=version)
        for n, version in enumerate(versions)
    ]
    ordered = sorted(deployments, key=lambda d: d.order)
    rollbacks = reference_rollbacks(deployments)
    rollforwards = {
        ordered[i - 1].deployment_id: d.deployment_id
        for i, d in enumerate(ordered)
        if i and "hotfix" in (d.version or "")
    }
    classified, _ = classify_sequence(deployments, [], RULES)
    finish = {d.deployment_id: d.finished_at for d in deployments}
    expected = {failed: ("rollback", by, finish[by]) for failed, by in rollbacks.items()} | {
        failed: ("rollforward", by, finish[by])
        for failed, by in rollforwards.items()
        if failed not in rollbacks
    }
    assert failures(deployments) == expected
    assert {k for k, v in classified.items() if v.is_rollback} == set(rollbacks.values())
    # A hotfix is a rollforward even when nothing precedes it to mark as failed.
    hotfixes = {d.deployment_id for d in deployments if d.version == "hotfix"}
    assert {k for k, v in classified.items() if v.is_rollforward} == hotfixes


@pytest.mark.parametrize("count", [0, 1])
def test_short_sequences_have_no_failures(count: int) -> None:
    assert failures(sequence(*["1"] * count)) == {}
