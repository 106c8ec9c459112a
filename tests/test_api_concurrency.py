"""50 concurrent clients x 20 events against a live server: each 202'd event stored once."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import sqlalchemy as sa
from api_support import API_KEY, FINISHED, STARTED, deployment, failure, live_api

from connectors.warehouse.schema import api_deployments, api_failure_services, api_failures

CLIENTS = 50
EVENTS_PER_CLIENT = 20


def _event(client: int, number: int) -> tuple[str, dict]:
    """Deployments (half with an id, half identified by their attributes) and failures."""
    if number % 4 == 3:
        body = failure(services=[f"svc-{client}", "shared"], started_at=STARTED + number)
        return "/api/v2/dora/failure", body
    attributes = {"version": f"{client}.{number}", "finished_at": FINISHED + number}
    if number % 2 == 0:
        attributes["id"] = f"dep-{client}-{number}"
    return "/api/v2/dora/deployment", deployment(**attributes)


async def _client(base_url: str, client: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"DD-API-KEY": API_KEY}, timeout=60
    ) as http:
        responses = []
        for number in range(EVENTS_PER_CLIENT):
            path, body = _event(client, number)
            responses.append(await http.post(path, json=body))
        # Every client also sends the very same deployment: it must land once.
        responses.append(await http.post("/api/v2/dora/deployment", json=deployment()))
        return responses


async def _all_clients(base_url: str) -> list[httpx.Response]:
    results = await asyncio.gather(*(_client(base_url, client) for client in range(CLIENTS)))
    return [response for responses in results for response in responses]


def test_concurrent_clients_every_accepted_event_stored_once(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        responses = asyncio.run(_all_clients(str(client.base_url)))

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {202: CLIENTS * (EVENTS_PER_CLIENT + 1)}
    accepted = Counter(
        (response.json()["data"]["type"], response.json()["data"]["id"]) for response in responses
    )
    shared = [key for key, times in accepted.items() if times > 1]
    assert len(shared) == 1 and accepted[shared[0]] == CLIENTS  # only the common deployment

    with warehouse.connect() as connection:
        deployment_ids = connection.scalars(sa.select(api_deployments.c.deployment_id)).all()
        failure_ids = connection.scalars(sa.select(api_failures.c.failure_id)).all()
        service_rows = connection.scalar(
            sa.select(sa.func.count()).select_from(api_failure_services)
        )
    stored = Counter([("dora_deployment", i) for i in deployment_ids])
    stored.update(("dora_failure", i) for i in failure_ids)
    assert set(stored) == set(accepted)
    assert max(stored.values()) == 1
    failures = CLIENTS * EVENTS_PER_CLIENT // 4
    assert len(failure_ids) == failures
    assert len(deployment_ids) == CLIENTS * EVENTS_PER_CLIENT - failures + 1
    assert service_rows == 2 * failures
