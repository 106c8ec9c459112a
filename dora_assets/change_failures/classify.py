"""Change failures detected on deployments: DESIGN.md, "Change failures on deployments".

Pure functions over one (`service`, `env`) sequence of deployments and the incidents of
that service and env, so that a late deployment reclassifies only its own sequence.

The sequence is ordered by `finished_at`, then `started_at`, then `deployment_id`. What
a deployment deployed is its `commit_sha`, else its `version`; one with neither is
invisible to the rollback rule but a deployment everywhere else. Four rules mark a
deployment as a change failure; the first of manual, rollback, rollforward, incident
wins, and a PATCH with `change_failure: false` (stable) overrides them all.
"""

from __future__ import annotations

import bisect
import datetime as dt
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

MANUAL, ROLLBACK, ROLLFORWARD, INCIDENT = "manual", "rollback", "rollforward", "incident"
PRECEDENCE = (MANUAL, ROLLBACK, ROLLFORWARD, INCIDENT)
DEFAULT_ROLLFORWARD = (re.compile("(?i)hotfix"),)


@dataclass(frozen=True)
class Patch:
    """What `PATCH /api/v2/dora/deployments/{id}` said: a change failure (with its
    remediation named by deployment id or by version) or stable."""

    change_failure: bool
    remediation_type: str | None = None
    remediation_id: str | None = None
    remediation_version: str | None = None


# Tuples, not dataclasses: a sequence of a busy service holds thousands of them, and a
# frozen dataclass costs several times a tuple to build.
class Deployment(NamedTuple):
    deployment_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    commit_sha: str | None = None
    version: str | None = None
    custom_tags: tuple[str, ...] = ()
    patch: Patch | None = None

    @property
    def deployed(self) -> str | None:
        return self.commit_sha or self.version or None

    @property
    def order(self) -> tuple[dt.datetime, dt.datetime, str]:
        return SEQUENCE_ORDER(self)


# `Deployment.order` without a Python call per deployment.
SEQUENCE_ORDER = operator.itemgetter(2, 1, 0)


class Incident(NamedTuple):
    """One `dora_incidents` row of the sequence's service and env."""

    incident_id: str
    service: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    commit_sha: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Rules:
    """The `change_failures` section of DORA_CONFIG."""

    rollforward_versions: tuple[re.Pattern[str], ...] = DEFAULT_ROLLFORWARD
    rollforward_tags: tuple[re.Pattern[str], ...] = DEFAULT_ROLLFORWARD
    incidents_mark_deployments: bool = True
    attribution_window: dt.timedelta = dt.timedelta(hours=24)

    def rollforward_positions(self, sequence: Sequence[Deployment]) -> list[int]:
        """Where in `sequence` the rollforwards are."""
        # Plain loops with the searches at hand, no call or generator per deployment:
        # this visits every deployment of every sequence classified.
        versions = [pattern.search for pattern in self.rollforward_versions]
        tags = [pattern.search for pattern in self.rollforward_tags]
        found = []
        for position, deployment in enumerate(sequence):
            version = deployment.version or ""
            for search in versions:
                if search(version):
                    found.append(position)
                    break
            else:
                custom_tags = deployment.custom_tags  # most deployments have none
                if custom_tags and any(search(tag) for tag in custom_tags for search in tags):
                    found.append(position)
        return found


class Classification(NamedTuple):
    """The `dora_deployments` columns this module decides."""

    change_failure: bool = False
    change_failure_reason: str | None = None
    is_rollback: bool = False
    is_rollforward: bool = False
    remediation_type: str | None = None
    remediation_deployment_id: str | None = None
    recovered_at: dt.datetime | None = None


# What most deployments are: one shared instance.
NOT_A_FAILURE = Classification()


class Attribution(NamedTuple):
    """A `dora_incident_deployments` row."""

    incident_id: str
    service: str
    deployment_id: str
    method: str
    lag_seconds: float


@dataclass
class _Marks:
    """Every reason found for one deployment, each with its remediation."""

    reasons: dict[str, tuple[str | None, str | None, dt.datetime | None]] = field(
        default_factory=dict
    )
    is_rollback: bool = False
    is_rollforward: bool = False

    def add(self, reason: str, kind: str | None, by: Deployment | None) -> None:
        # The first remediation found (the earliest in the sequence) is the one kept.
        self.reasons.setdefault(
            reason, (kind, by.deployment_id if by else None, by.finished_at if by else None)
        )


def classify_sequence(
    deployments: Sequence[Deployment], incidents: Sequence[Incident], rules: Rules
) -> tuple[dict[str, Classification], list[Attribution]]:
    """Classify one (service, env) sequence; also attribute its incidents.

    Only deployments something marks have an entry: any other is `NOT_A_FAILURE`.
    """
    # Cheap when they come in order: a sort of sorted items only compares neighbours.
    sequence = sorted(deployments, key=SEQUENCE_ORDER)
    marks: defaultdict[str, _Marks] = defaultdict(_Marks)
    _detect_rollbacks(sequence, marks)
    _detect_rollforwards(sequence, marks, rules)
    _apply_patches(sequence, marks)
    finished = [deployment.finished_at for deployment in sequence]
    attributions = [
        attribution
        for incident in incidents
        if (attribution := attribute(incident, sequence, rules, finished)) is not None
    ]
    if rules.incidents_mark_deployments:
        _mark_attributed(sequence, incidents, attributions, marks)
    patches = {d.deployment_id: d.patch for d in sequence if d.patch is not None}
    return {
        deployment_id: _decide(patches.get(deployment_id), found)
        for deployment_id, found in marks.items()
    }, attributions


def _detect_rollbacks(sequence: Sequence[Deployment], marks: defaultdict[str, _Marks]) -> None:
    """A rollback deploys what an earlier deployment did, unlike the one just before it;
    the change failure is the first deployment after that earlier one."""
    # `Deployment.deployed` inline: this visits every deployment.
    visible = [(d, deployed) for d in sequence if (deployed := d.commit_sha or d.version)]
    latest_rank: dict[str, int] = {}
    previous: str | None = None
    for rank, (deployment, deployed) in enumerate(visible):
        target = latest_rank.get(deployed)
        # A target means an earlier visible deployment, so `previous` is set.
        if target is not None and previous != deployed:
            marks[deployment.deployment_id].is_rollback = True
            marks[visible[target + 1][0].deployment_id].add(ROLLBACK, ROLLBACK, deployment)
        latest_rank[deployed] = rank
        previous = deployed


def _detect_rollforwards(
    sequence: Sequence[Deployment], marks: defaultdict[str, _Marks], rules: Rules
) -> None:
    for position in rules.rollforward_positions(sequence):
        deployment = sequence[position]
        marks[deployment.deployment_id].is_rollforward = True
        if position:
            failed = sequence[position - 1]
            marks[failed.deployment_id].add(ROLLFORWARD, ROLLFORWARD, deployment)


def _remediation(sequence: Sequence[Deployment], position: int, patch: Patch) -> Deployment | None:
    """The valid remediation a PATCH names: a later deployment of the same sequence."""
    later = sequence[position + 1 :]
    if patch.remediation_id is not None:
        return next((d for d in later if d.deployment_id == patch.remediation_id), None)
    if patch.remediation_version is not None:
        return next((d for d in later if d.version == patch.remediation_version), None)
    return None


def _apply_patches(sequence: Sequence[Deployment], marks: defaultdict[str, _Marks]) -> None:
    for position, deployment in enumerate(sequence):
        patch = deployment.patch
        if patch is None or not patch.change_failure:
            continue
        remedy = _remediation(sequence, position, patch)
        marks[deployment.deployment_id].reasons[MANUAL] = (
            patch.remediation_type,
            remedy.deployment_id if remedy else None,
            remedy.finished_at if remedy else None,
        )
        if remedy is not None and patch.remediation_type == ROLLBACK:
            marks[remedy.deployment_id].is_rollback = True
        if remedy is not None and patch.remediation_type == ROLLFORWARD:
            marks[remedy.deployment_id].is_rollforward = True


def attribute(
    incident: Incident,
    sequence: Sequence[Deployment],
    rules: Rules,
    finished: Sequence[dt.datetime] | None = None,
) -> Attribution | None:
    """The deployment an incident is attributed to: the latest finished at or before it
    started with its commit, else with its version, else within the window before it.

    `sequence` is in sequence order, so by `finished_at`; `finished` (its `finished_at`
    values, given when many incidents are attributed) finds the candidates by bisection.
    """
    if not incident.service:
        return None
    finished = finished if finished is not None else [d.finished_at for d in sequence]
    # The candidates are `sequence[:end]`, not copied: a busy service's sequence holds
    # thousands of deployments, and most incidents only need the last candidate.
    end = bisect.bisect_right(finished, incident.started_at)
    if not end:
        return None

    def latest(matches: Callable[[Deployment], bool]) -> Deployment | None:
        return next((d for k in range(end - 1, -1, -1) if matches(d := sequence[k])), None)

    chosen, method = None, ""
    if incident.commit_sha is not None:
        chosen, method = latest(lambda d: d.commit_sha == incident.commit_sha), "commit"
    if chosen is None and incident.version is not None:
        chosen, method = latest(lambda d: d.version == incident.version), "version"
    if (
        chosen is None
        and sequence[end - 1].finished_at >= incident.started_at - rules.attribution_window
    ):
        # The latest candidate finished last: if it is outside the window, all are.
        chosen, method = sequence[end - 1], "preceding"
    if chosen is None:
        return None
    lag = (incident.started_at - chosen.finished_at).total_seconds()
    return Attribution(incident.incident_id, incident.service, chosen.deployment_id, method, lag)


def _mark_attributed(
    sequence: Sequence[Deployment],
    incidents: Sequence[Incident],
    attributions: Sequence[Attribution],
    marks: defaultdict[str, _Marks],
) -> None:
    """An attributed deployment recovers when the last of its incidents resolved."""
    finished = {(i.incident_id, i.service): i.finished_at for i in incidents}
    resolutions: dict[str, list[dt.datetime | None]] = {}
    for attribution in attributions:
        resolutions.setdefault(attribution.deployment_id, []).append(
            finished[(attribution.incident_id, attribution.service)]
        )
    for deployment_id, times in resolutions.items():
        recovered = None if None in times else max(t for t in times if t is not None)
        marks[deployment_id].reasons[INCIDENT] = (None, None, recovered)


def _decide(patch: Patch | None, marks: _Marks) -> Classification:
    if patch is None or patch.change_failure:  # not marked stable
        for reason in PRECEDENCE:
            if reason in marks.reasons:
                kind, remedy_id, recovered = marks.reasons[reason]
                return Classification(
                    True,
                    reason,
                    marks.is_rollback,
                    marks.is_rollforward,
                    kind,
                    remedy_id,
                    recovered,
                )
    return Classification(is_rollback=marks.is_rollback, is_rollforward=marks.is_rollforward)
