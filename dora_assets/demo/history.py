"""A realistic, deterministic synthetic delivery history for the demo.

Ten services in three teams deploy on working days (a little at weekends), each at
its own pace; some deployments cause an incident a little later, resolved after a
log-normally distributed time (some still open at the end). Most incidents are
PagerDuty's; the rest, plus a few team-wide and multi-service failures, are sent to
the event API, as teams without PagerDuty do.

Deployments also go wrong the ways DORA's change failures describe: now and then a
service rolls back to the version it ran two deployments earlier, ships a hotfix right
after a bad deployment, or someone marks a deployment as a change failure through the
API's PATCH, naming the deployment that remedied it; and incidents start shortly after
a deployment of their service, so they are attributed to it.

Every day and service draws from its own seeded generator, so a day's events are
the same whichever window they fall in: running the demo twice lands the same
events (same ids), and running it tomorrow adds a day and resolves what has been
resolved since.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any

SEED = "dora-demo-1"
ENV = "prod"
WORKDAY_START_HOUR = 8
WORKDAY_HOURS = 10
WEEKEND_FACTOR = 0.15
PAGERDUTY_SHARE = 0.75
# Per deployment: it rolls back to the version of two deployments earlier (the one in
# between failed), it is a hotfix of the one before, or it remedies the one before,
# which is then marked through PATCH.
ROLLBACK_CHANCE = 0.04
HOTFIX_CHANCE = 0.03
PATCH_CHANCE = 0.02


@dataclass(frozen=True)
class Service:
    name: str
    team: str
    deploys_per_workday: float
    failure_chance: float  # per deployment
    median_restore_minutes: float
    pagerduty_id: str


SERVICES = (
    Service("checkout", "payments", 4.0, 0.06, 45, "PDEMO01"),
    Service("payments-api", "payments", 3.0, 0.09, 70, "PDEMO02"),
    Service("billing-worker", "payments", 1.0, 0.15, 180, "PDEMO03"),
    Service("search", "discovery", 6.0, 0.03, 25, "PDEMO04"),
    Service("recommendations", "discovery", 2.0, 0.12, 90, "PDEMO05"),
    Service("catalog", "discovery", 2.5, 0.05, 40, "PDEMO06"),
    Service("storefront-web", "discovery", 5.0, 0.04, 30, "PDEMO07"),
    Service("identity", "platform", 1.5, 0.04, 35, "PDEMO08"),
    Service("api-gateway", "platform", 2.0, 0.07, 20, "PDEMO09"),
    Service("notifications", "platform", 1.0, 0.10, 120, "PDEMO10"),
)
TEAM_IDS = {"payments": "PTDEMO1", "discovery": "PTDEMO2", "platform": "PTDEMO3"}


@dataclass(frozen=True)
class PagerDutyIncident:
    service: Service
    title: str
    created_at: dt.datetime  # naive UTC, as the compatible server stores them
    resolved_at: dt.datetime | None
    urgency: str
    priority: str


@dataclass
class History:
    first_day: dt.date
    end_day: dt.date  # exclusive: the history stops at midnight UTC before this day
    deployments: list[dict[str, Any]] = field(default_factory=list)  # event API attributes
    failures: list[dict[str, Any]] = field(default_factory=list)  # event API attributes
    pagerduty: list[PagerDutyIncident] = field(default_factory=list)
    # (deployment id, PATCH attributes) for deployments marked as change failures
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small daily means used here.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _restore_time(rng: random.Random, service: Service) -> dt.timedelta:
    minutes = rng.lognormvariate(math.log(service.median_restore_minutes), 0.8)
    return dt.timedelta(minutes=max(2.0, minutes), seconds=rng.randint(0, 59))


def _deployment(service: Service, day: dt.date, number: int, finished: dt.datetime) -> dict:
    identifier = f"demo-{service.name}-{day:%Y%m%d}-{number}"
    started = finished - dt.timedelta(minutes=3 + (number * 7) % 15)
    return {
        "id": identifier,
        "service": service.name,
        "team": service.team,
        "env": ENV,
        "version": f"{day:%Y.%m.%d}.{number}",
        "started_at": _rfc3339(started),
        "finished_at": _rfc3339(finished),
        "git": {
            "repository_url": f"https://github.com/acme/{service.name}",
            "commit_sha": hashlib.sha1(identifier.encode()).hexdigest(),
        },
        "custom_tags": ["source:demo"],
    }


def _failure(
    identifier: str,
    services: list[str],
    team: str,
    started: dt.datetime,
    resolved: dt.datetime | None,
    name: str,
    severity: str,
) -> dict:
    attributes = {
        "id": identifier,
        "services": services,
        "team": team,
        "env": ENV,
        "name": name,
        "severity": severity,
        "started_at": _rfc3339(started),
        "custom_tags": ["source:demo"],
    }
    if resolved is not None:
        attributes["finished_at"] = _rfc3339(resolved)
    return attributes


def _service_day(history: History, service: Service, day: dt.date, end: dt.datetime) -> None:
    rng = random.Random(f"{SEED}:{service.name}:{day.isoformat()}")
    pace = service.deploys_per_workday * (1.0 if day.weekday() < 5 else WEEKEND_FACTOR)
    midnight = dt.datetime.combine(day, dt.time())
    offsets = sorted(
        WORKDAY_START_HOUR + rng.random() * WORKDAY_HOURS for _ in range(_poisson(rng, pace))
    )
    today: list[dict[str, Any]] = []
    for number, hours in enumerate(offsets):
        finished = midnight + dt.timedelta(hours=hours)
        deployment = _deployment(service, day, number, finished)
        draw = rng.random()
        if number >= 2 and draw < ROLLBACK_CHANCE:
            earlier = today[number - 2]
            deployment["version"], deployment["git"] = earlier["version"], earlier["git"]
        elif number >= 1 and draw < ROLLBACK_CHANCE + HOTFIX_CHANCE:
            deployment["version"] = f"{today[number - 1]['version']}-hotfix"
        elif number >= 1 and draw < ROLLBACK_CHANCE + HOTFIX_CHANCE + PATCH_CHANCE:
            remedy = {"type": "rollforward", "id": deployment["id"]}
            history.patches.append(
                (today[number - 1]["id"], {"change_failure": True, "remediation": remedy})
            )
        today.append(deployment)
        history.deployments.append(deployment)
        if rng.random() >= service.failure_chance:
            continue
        started = finished + dt.timedelta(minutes=rng.randint(2, 90))
        resolved = started + _restore_time(rng, service)
        resolved_at = resolved if resolved < end else None
        severity = rng.choice(("SEV-1", "SEV-2", "SEV-2", "SEV-3"))
        title = f"{service.name}: {rng.choice(('error rate', 'latency', 'saturation'))}"
        if rng.random() < PAGERDUTY_SHARE:
            urgency = "high" if severity != "SEV-3" else "low"
            priority = {"SEV-1": "P1", "SEV-2": "P2", "SEV-3": "P3"}[severity]
            history.pagerduty.append(
                PagerDutyIncident(service, title, started, resolved_at, urgency, priority)
            )
        else:
            identifier = f"demo-failure-{service.name}-{day:%Y%m%d}-{number}"
            history.failures.append(
                _failure(
                    identifier, [service.name], service.team, started, resolved_at, title, severity
                )
            )


def _cross_cutting_failures(history: History, day: dt.date, end: dt.datetime) -> None:
    """Now and then a team-wide platform failure, or one hitting checkout and payments-api."""
    rng = random.Random(f"{SEED}:cross:{day.isoformat()}")
    midnight = dt.datetime.combine(day, dt.time())
    draw = rng.random()
    if draw < 0.05:
        services, team, name = [], "platform", "platform: shared cluster degraded"
    elif draw < 0.09:
        services, team, name = ["checkout", "payments-api"], "payments", "card processor outage"
    else:
        return
    started = midnight + dt.timedelta(hours=rng.uniform(0, 23))
    resolved = started + dt.timedelta(minutes=rng.lognormvariate(math.log(60), 0.6))
    identifier = f"demo-failure-{team}-{day:%Y%m%d}"
    history.failures.append(
        _failure(
            identifier, services, team, started, resolved if resolved < end else None, name, "SEV-1"
        )
    )


def generate(first_day: dt.date, end_day: dt.date) -> History:
    """The history of the days `[first_day, end_day)`; nothing happens at or after `end_day`."""
    history = History(first_day, end_day)
    end = dt.datetime.combine(end_day, dt.time())
    day = first_day
    while day < end_day:
        for service in SERVICES:
            _service_day(history, service, day, end)
        _cross_cutting_failures(history, day, end)
        day += dt.timedelta(days=1)
    return history


def demo_config() -> dict[str, Any]:
    """The `DORA_CONFIG` document of the demo: service catalog and PagerDuty mapping."""
    return {
        "services": {service.name: {"team": service.team} for service in SERVICES},
        "pagerduty": {
            "services": {
                service.pagerduty_id: {"service": service.name, "env": ENV} for service in SERVICES
            }
        },
    }
