"""Environment variables of DESIGN.md, read in one place so defaults never drift."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_WAREHOUSE_URL = "sqlite:///.dora/warehouse.db"
DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_PAGERDUTY_API_URL = "https://api.pagerduty.com"
DEFAULT_START_DATE = "2025-01-01"
DEFAULT_CONFIG_FILE = "dora.yaml"


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def warehouse_url() -> str:
    return os.environ.get("DORA_WAREHOUSE_URL") or DEFAULT_WAREHOUSE_URL


def api_keys() -> list[str]:
    return _csv(os.environ.get("DORA_API_KEYS"))


def api_url() -> str:
    return os.environ.get("DORA_API_URL") or DEFAULT_API_URL


def api_key() -> str | None:
    return os.environ.get("DORA_API_KEY") or None


def pagerduty_api_url() -> str:
    return os.environ.get("PAGERDUTY_API_URL") or DEFAULT_PAGERDUTY_API_URL


def pagerduty_webhook_secrets() -> list[str]:
    return _csv(os.environ.get("PAGERDUTY_WEBHOOK_SECRETS"))


def start_date() -> str:
    return os.environ.get("DORA_START_DATE") or DEFAULT_START_DATE


def config_path() -> Path | None:
    """`DORA_CONFIG` when set (it must exist), else `dora.yaml` in the working directory if present."""
    explicit = os.environ.get("DORA_CONFIG")
    if explicit:
        return Path(explicit)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None
