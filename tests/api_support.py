"""Helpers shared by the event API tests (`test_api_*.py`): a live server and bodies."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from connectors.api.app import ApiSettings, create_app
from connectors.serving import serve_in_thread
from connectors.warehouse import reading
from connectors.warehouse.schema import api_deployments

API_KEY = "test-key-0123456789"
SHA = "0123456789abcdef0123456789abcdef01234567"
REPOSITORY = "https://github.com/acme/shop"
# 2025-01-31T12:00:00Z, computed by hand (20,119 days after the epoch, plus 12 h).
STARTED = 1_738_324_800
FINISHED = STARTED + 300  # 2025-01-31T12:05:00Z


@contextmanager
def live_api(engine: sa.Engine, api_keys: list[str] | None = None) -> Iterator[httpx.Client]:
    """The event API under uvicorn on loopback; a client that sends the first key."""
    keys = [API_KEY] if api_keys is None else api_keys
    app = create_app(engine, ApiSettings(api_keys=keys))
    with (
        serve_in_thread(app) as base_url,
        httpx.Client(base_url=base_url, headers={"DD-API-KEY": keys[0]}, timeout=30) as client,
    ):
        yield client


def deployment(**attributes: Any) -> dict[str, Any]:
    return {
        "data": {
            "attributes": {
                "service": "shop",
                "started_at": STARTED,
                "finished_at": FINISHED,
                **attributes,
            }
        }
    }


def failure(**attributes: Any) -> dict[str, Any]:
    return {"data": {"attributes": {"services": ["shop"], "started_at": STARTED, **attributes}}}


def count_rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(table))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def api_process(
    warehouse_url: str, port: int, log: Path, api_keys: str = API_KEY
) -> Iterator[subprocess.Popen[bytes]]:
    """`dora api` as a real process (its output in `log`), healthy when yielded."""
    environment = {**os.environ, "DORA_WAREHOUSE_URL": warehouse_url, "DORA_API_KEYS": api_keys}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "connectors.cli", "api", "--port", str(port)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"dora api exited: {log.read_text()}"
            assert time.monotonic() < deadline, "dora api did not become healthy"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def landed(engine: sa.Engine) -> dict[str, str]:
    """Landed deployments: id -> version, or "deleted"."""
    d = api_deployments.c
    with reading(engine) as connection:
        rows = connection.execute(sa.select(d.deployment_id, d.version, d.deleted_at)).all()
    return {row.deployment_id: "deleted" if row.deleted_at else row.version for row in rows}
