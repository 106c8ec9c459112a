"""API-key authentication: DD-API-KEY or Bearer, 401/403 before the body, keys never logged."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from api_support import API_KEY, api_process, count_rows, deployment, failure, free_port, live_api

from connectors.warehouse.schema import api_deployments, api_failures

SECOND_KEY = "rotated-key-9f8e7d6c5b4a"
WRONG_KEY = "wrong-key-that-must-not-leak-4242"


def test_missing_and_wrong_keys_store_nothing(warehouse: sa.Engine) -> None:
    with live_api(warehouse, [API_KEY, SECOND_KEY]) as client:
        base = str(client.base_url)
        anonymous = httpx.post(f"{base}/api/v2/dora/deployment", json=deployment())
        assert anonymous.status_code == 401
        assert anonymous.json()["errors"][0]["status"] == "401"
        assert "DD-API-KEY" in anonymous.json()["errors"][0]["detail"]
        for headers in (
            {"DD-API-KEY": WRONG_KEY},
            {"Authorization": f"Bearer {WRONG_KEY}"},
            {"DD-API-KEY": API_KEY[:-1]},  # a prefix of a real key
            {"DD-API-KEY": API_KEY + "x"},
        ):
            response = httpx.post(f"{base}/api/v2/dora/failure", json=failure(), headers=headers)
            assert response.status_code == 403, headers
            assert WRONG_KEY not in response.text
        assert httpx.get(f"{base}/api/v2/dora/deployments/x").status_code == 401
        assert httpx.delete(f"{base}/api/v2/dora/failure/x").status_code == 401
        # Auth is checked before the body: an invalid body without a key is still 401.
        assert httpx.post(f"{base}/api/v2/dora/deployment", content=b"{").status_code == 401
        assert (
            httpx.post(
                f"{base}/api/v2/dora/deployment", content=b"{", headers={"DD-API-KEY": WRONG_KEY}
            ).status_code
            == 403
        )
    assert count_rows(warehouse, api_deployments) == 0
    assert count_rows(warehouse, api_failures) == 0


def test_every_configured_key_and_both_headers_are_accepted(warehouse: sa.Engine) -> None:
    with live_api(warehouse, [API_KEY, SECOND_KEY]) as client:
        base = str(client.base_url)
        for index, headers in enumerate(
            (
                {"DD-API-KEY": API_KEY},
                {"DD-API-KEY": SECOND_KEY},
                {"Authorization": f"Bearer {SECOND_KEY}"},
                {"Authorization": f"bearer {API_KEY}"},
            )
        ):
            body = deployment(version=str(index))
            response = httpx.post(f"{base}/api/v2/dora/deployment", json=body, headers=headers)
            assert response.status_code == 202, headers
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/openapi.json").status_code == 200
    assert count_rows(warehouse, api_deployments) == 4


def test_keys_never_appear_in_logs(
    warehouse_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "api.log"
    port = free_port()
    caplog.set_level(logging.DEBUG)
    with api_process(warehouse_url, port, log, api_keys=f"{API_KEY},{SECOND_KEY}"):
        base = f"http://127.0.0.1:{port}"
        for headers in (
            {"DD-API-KEY": API_KEY},
            {"Authorization": f"Bearer {SECOND_KEY}"},
            {"DD-API-KEY": WRONG_KEY},
            {},
        ):
            httpx.post(f"{base}/api/v2/dora/deployment", json=deployment(), headers=headers)
            httpx.post(f"{base}/api/v2/dora/failure", content=b"not json", headers=headers)
            httpx.get(f"{base}/api/v2/dora/failures/nope", headers=headers)
    output = log.read_text() + caplog.text
    assert "POST /api/v2/dora/deployment" in output  # the access log is there ...
    for secret in (API_KEY, SECOND_KEY, WRONG_KEY):
        assert secret not in output  # ... and no key is in it


def test_api_refuses_to_start_without_keys(tmp_path: Path) -> None:
    environment = {**os.environ, "DORA_API_KEYS": " , "}
    environment.pop("DORA_WAREHOUSE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "connectors.cli", "api", "--port", str(free_port())],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DORA_API_KEYS" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".dora").exists()  # refused before touching the warehouse
