"""SIGKILL `dora api` while clients are sending: after a restart every 202'd event is there.

A 202 is sent only after the event's transaction committed (group commit), so a
crash may lose an event that was never acknowledged, but never one that was.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
from api_support import API_KEY, api_process, deployment, failure, free_port

SENDERS = 8
ACCEPTED_BEFORE_KILL = 200


def _send_until_killed(
    base_url: str, sender: int, accepted: list[tuple[str, str]], stop: threading.Event
) -> None:
    with httpx.Client(base_url=base_url, headers={"DD-API-KEY": API_KEY}, timeout=10) as http:
        number = 0
        while not stop.is_set():
            number += 1
            if number % 3 == 0:
                path, kind = "/api/v2/dora/failure", "failures"
                body = failure(id=f"f-{sender}-{number}")
            else:
                path, kind = "/api/v2/dora/deployment", "deployments"
                body = deployment(id=f"d-{sender}-{number}")
            try:
                response = http.post(path, json=body)
            except httpx.TransportError:
                return  # the server is gone
            if response.status_code == 202:
                accepted.append((kind, response.json()["data"]["id"]))


def test_every_accepted_event_survives_sigkill(warehouse_url: str, tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    accepted: list[tuple[str, str]] = []
    stop = threading.Event()
    with api_process(warehouse_url, port, log) as server:
        senders = [
            threading.Thread(target=_send_until_killed, args=(base_url, n, accepted, stop))
            for n in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 60
        while len(accepted) < ACCEPTED_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.pid, signal.SIGKILL)  # mid-stream: requests are in flight
        server.wait(timeout=30)
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
    assert len(accepted) >= ACCEPTED_BEFORE_KILL

    with (
        api_process(warehouse_url, port, log),
        httpx.Client(base_url=base_url, headers={"DD-API-KEY": API_KEY}) as http,
    ):
        missing = [
            (kind, identifier)
            for kind, identifier in accepted
            if http.get(f"/api/v2/dora/{kind}/{identifier}").status_code != 200
        ]
        assert http.post("/api/v2/dora/deployment", json=deployment()).status_code == 202
    assert missing == []
