"""Environment variables of DESIGN.md, read in one place so defaults never drift."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_WAREHOUSE_URL = "sqlite:///.dora/warehouse.db"
DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_PAGERDUTY_API_URL = "https://api.pagerduty.com"
DEFAULT_START_DATE = "2025-01-01"
DEFAULT_CONFIG_FILE = "dora.yaml"
DEFAULT_GIT_CACHE = ".dora/git"
DEFAULT_CLI_MAX_ATTEMPTS = 5
DEFAULT_CLI_RETRY_BASE_SECONDS = 0.5


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


WAREHOUSE_URL_VARIABLE = "DORA_WAREHOUSE_URL"


def warehouse_url() -> str:
    return os.environ.get(WAREHOUSE_URL_VARIABLE) or DEFAULT_WAREHOUSE_URL


def api_keys() -> list[str]:
    return _csv(os.environ.get("DORA_API_KEYS"))


def api_url() -> str:
    return os.environ.get("DORA_API_URL") or DEFAULT_API_URL


def api_key() -> str | None:
    return os.environ.get("DORA_API_KEY") or None


def cli_max_attempts() -> int:
    """`DORA_CLI_MAX_ATTEMPTS`: deliveries the CLI tries before giving up (at least 1)."""
    value = os.environ.get("DORA_CLI_MAX_ATTEMPTS") or str(DEFAULT_CLI_MAX_ATTEMPTS)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"DORA_CLI_MAX_ATTEMPTS must be a whole number of at least 1, not {value!r}"
        )
    return int(value)


def cli_retry_base_seconds() -> float:
    """`DORA_CLI_RETRY_BASE_SECONDS`: the first retry's backoff; each later one doubles it."""
    value = os.environ.get("DORA_CLI_RETRY_BASE_SECONDS") or str(DEFAULT_CLI_RETRY_BASE_SECONDS)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ValueError(
            f"DORA_CLI_RETRY_BASE_SECONDS must be a number of seconds >= 0, not {value!r}"
        )
    return seconds


def pagerduty_api_url() -> str:
    return os.environ.get("PAGERDUTY_API_URL") or DEFAULT_PAGERDUTY_API_URL


def pagerduty_webhook_secrets() -> list[str]:
    return _csv(os.environ.get("PAGERDUTY_WEBHOOK_SECRETS"))


def start_date() -> str:
    return os.environ.get("DORA_START_DATE") or DEFAULT_START_DATE


def config_path() -> Path | None:
    """`DORA_CONFIG` when set (it must exist), else `./dora.yaml` when present."""
    explicit = os.environ.get("DORA_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def git_cache() -> Path:
    """`DORA_GIT_CACHE`: the folder of the repositories' mirrors."""
    return Path(os.environ.get("DORA_GIT_CACHE") or DEFAULT_GIT_CACHE)
