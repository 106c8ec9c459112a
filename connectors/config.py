"""`DORA_CONFIG`: the small service catalog and the PagerDuty service mapping and filters.

```yaml
services:                 # catalog: the team that owns each service
  checkout: {team: payments}
pagerduty:
  services:               # PagerDuty service id or name -> what we record
    PX1234: {service: checkout, env: prod}
    "Search API": {service: search, team: discovery, env: staging}
  filters:                # optional; an empty or missing list lets everything through
    urgencies: [high]
    priorities: [P1, P2]
    services: [PX1234, "Search API"]
change_failures:          # all optional; see DESIGN.md "Change failures on deployments"
  rollforward:
    versions: ['(?i)hotfix']
    custom_tags: ['(?i)hotfix']
  incidents_mark_deployments: true
  attribution_window_hours: 24
git:                      # optional; where to clone a repository that deployments name
  repositories:
    https://github.com/acme/shop: {url: /srv/mirrors/shop.git}
summary:                  # optional; see DESIGN.md "DORA summary and report"
  window_days: 90
  benchmark: dora-2023    # or dora-2021
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from connectors import settings
from connectors.report.levels import DEFAULT_BENCHMARK, benchmarks


class ConfigError(ValueError):
    """DORA_CONFIG is unreadable or malformed; the message names the file and the key."""


@dataclass(frozen=True)
class ServiceMapping:
    """What a PagerDuty service is recorded as; None falls back to the defaults."""

    service: str | None = None
    team: str | None = None
    env: str | None = None


@dataclass(frozen=True)
class IncidentFilters:
    urgencies: frozenset[str] = frozenset()
    priorities: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()


DEFAULT_ROLLFORWARD_PATTERNS = ("(?i)hotfix",)


@dataclass(frozen=True)
class ChangeFailureSettings:
    """`change_failures`: how change failures are detected on deployments."""

    rollforward_versions: tuple[str, ...] = DEFAULT_ROLLFORWARD_PATTERNS
    rollforward_custom_tags: tuple[str, ...] = DEFAULT_ROLLFORWARD_PATTERNS
    incidents_mark_deployments: bool = True
    attribution_window_hours: float = 24.0


@dataclass(frozen=True)
class SummarySettings:
    """`summary`: the trailing window of `dora_summary` and the benchmark it is rated on."""

    window_days: int = 90
    benchmark: str = DEFAULT_BENCHMARK


@dataclass(frozen=True)
class DoraConfig:
    service_teams: dict[str, str] = field(default_factory=dict)
    pagerduty_services: dict[str, ServiceMapping] = field(default_factory=dict)
    pagerduty_filters: IncidentFilters = field(default_factory=IncidentFilters)
    change_failures: ChangeFailureSettings = field(default_factory=ChangeFailureSettings)
    summary: SummarySettings = field(default_factory=SummarySettings)
    # `git.repositories`: repository URL (as deployments name it) -> URL or path to clone.
    git_clone_urls: dict[str, str] = field(default_factory=dict)

    def team_of(self, service: str) -> str:
        """The catalog team of a service, or '' when the catalog does not list it."""
        return self.service_teams.get(service, "")


def _mapping(value: object, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _names(value: object, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list")
    return frozenset(str(item) for item in value)


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_ROLLFORWARD_PATTERNS
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of regular expressions")
    for pattern in value:
        try:
            re.compile(str(pattern))
        except re.error as error:
            raise ConfigError(
                f"{where}: {pattern!r} is not a regular expression: {error}"
            ) from None
    return tuple(str(pattern) for pattern in value)


def _change_failures(value: object, source: str) -> ChangeFailureSettings:
    where = f"{source}: change_failures"
    section = _mapping(value, where)
    unknown = set(section) - {
        "rollforward",
        "incidents_mark_deployments",
        "attribution_window_hours",
    }
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")
    rollforward = _mapping(section.get("rollforward"), f"{where}.rollforward")
    mark = section.get("incidents_mark_deployments", True)
    window = section.get("attribution_window_hours", 24)
    if not isinstance(mark, bool):
        raise ConfigError(f"{where}.incidents_mark_deployments must be true or false")
    if isinstance(window, bool) or not isinstance(window, int | float) or window < 0:
        raise ConfigError(f"{where}.attribution_window_hours must be a number of hours >= 0")
    return ChangeFailureSettings(
        rollforward_versions=_patterns(
            rollforward.get("versions"), f"{where}.rollforward.versions"
        ),
        rollforward_custom_tags=_patterns(
            rollforward.get("custom_tags"), f"{where}.rollforward.custom_tags"
        ),
        incidents_mark_deployments=mark,
        attribution_window_hours=float(window),
    )


def _summary(value: object, source: str) -> SummarySettings:
    where = f"{source}: summary"
    section = _mapping(value, where)
    unknown = set(section) - {"window_days", "benchmark"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")
    window = section.get("window_days", SummarySettings.window_days)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"{where}.window_days must be a whole number of days >= 1")
    name = str(section.get("benchmark", DEFAULT_BENCHMARK))
    if name not in benchmarks():
        raise ConfigError(
            f"{where}.benchmark {name!r} is not known; use one of {', '.join(sorted(benchmarks()))}"
        )
    return SummarySettings(window_days=window, benchmark=name)


def _git_clone_urls(value: object, source: str) -> dict[str, str]:
    where = f"{source}: git"
    section = _mapping(value, where)
    unknown = set(section) - {"repositories"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}")
    clone_urls = {}
    for url, entry in _mapping(section.get("repositories"), f"{where}.repositories").items():
        entry = _mapping(entry, f"{where}.repositories.{url}")
        if set(entry) != {"url"} or not isinstance(entry["url"], str) or not entry["url"]:
            raise ConfigError(
                f"{where}.repositories.{url} must be {{url: <clone URL or local path>}}"
            )
        clone_urls[str(url)] = entry["url"]
    return clone_urls


def parse_config(document: object, source: str = "DORA_CONFIG") -> DoraConfig:
    root = _mapping(document, source)
    service_teams = {}
    for name, entry in _mapping(root.get("services"), f"{source}: services").items():
        entry = _mapping(entry, f"{source}: services.{name}")
        if "team" in entry:
            service_teams[str(name)] = str(entry["team"])
    pagerduty = _mapping(root.get("pagerduty"), f"{source}: pagerduty")
    mapping = {}
    for key, entry in _mapping(pagerduty.get("services"), f"{source}: pagerduty.services").items():
        entry = _mapping(entry, f"{source}: pagerduty.services.{key}")
        unknown = set(entry) - {"service", "team", "env"}
        if unknown:
            raise ConfigError(
                f"{source}: pagerduty.services.{key} has unknown keys {sorted(unknown)};"
                " use service, team and env"
            )
        mapping[str(key)] = ServiceMapping(**{k: str(v) for k, v in entry.items() if v is not None})
    filters = _mapping(pagerduty.get("filters"), f"{source}: pagerduty.filters")
    return DoraConfig(
        service_teams=service_teams,
        pagerduty_services=mapping,
        pagerduty_filters=IncidentFilters(
            urgencies=_names(filters.get("urgencies"), f"{source}: pagerduty.filters.urgencies"),
            priorities=_names(filters.get("priorities"), f"{source}: pagerduty.filters.priorities"),
            services=_names(filters.get("services"), f"{source}: pagerduty.filters.services"),
        ),
        change_failures=_change_failures(root.get("change_failures"), source),
        summary=_summary(root.get("summary"), source),
        git_clone_urls=_git_clone_urls(root.get("git"), source),
    )


def load_config(path: Path | str | None = None) -> DoraConfig:
    """Read `path`, else `DORA_CONFIG`, else `./dora.yaml`; no file means an empty config."""
    target = Path(path) if path else settings.config_path()
    if target is None:
        return DoraConfig()
    try:
        document = yaml.safe_load(target.read_text())
    except FileNotFoundError:
        raise ConfigError(f"DORA_CONFIG file {target} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"DORA_CONFIG file {target} is not valid YAML: {error}") from None
    return parse_config(document, str(target))
