"""DORA performance levels: the benchmark sets shipped as data (`benchmarks.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

LEVELS = ("elite", "high", "medium", "low")
DEFAULT_BENCHMARK = "dora-2023"
# The summary's metric families: deployment frequency, lead time, change failure rate,
# and one duration family for both failed deployment recovery and time to restore.
METRICS = (
    "deployment_days_per_week",
    "lead_time_seconds",
    "change_failure_rate",
    "recovery_seconds",
)


@dataclass(frozen=True)
class Thresholds:
    """The elite, high and medium bounds of one metric; beyond medium is low."""

    bounds: tuple[float, float, float]
    higher_is_better: bool

    def level(self, value: float | None) -> str | None:
        if value is None:
            return None
        for name, bound in zip(LEVELS, self.bounds, strict=False):
            if (value >= bound) if self.higher_is_better else (value <= bound):
                return name
        return "low"


@dataclass(frozen=True)
class Benchmark:
    name: str
    source: str
    thresholds: dict[str, Thresholds]

    def level(self, metric: str, value: float | None) -> str | None:
        return self.thresholds[metric].level(value)


def _thresholds(entry: dict[str, list[float]]) -> Thresholds:
    ((direction, bounds),) = entry.items()
    return Thresholds(tuple(float(bound) for bound in bounds), direction == "at_least")


@cache
def benchmarks() -> dict[str, Benchmark]:
    document = yaml.safe_load(
        resources.files("connectors.report").joinpath("benchmarks.yaml").read_text()
    )
    return {
        name: Benchmark(
            name, entry["source"], {metric: _thresholds(entry[metric]) for metric in METRICS}
        )
        for name, entry in document.items()
    }


def benchmark(name: str = DEFAULT_BENCHMARK) -> Benchmark:
    known = benchmarks()
    if name not in known:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(known))}")
    return known[name]
