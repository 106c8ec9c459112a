"""Every endpoint, and the identity rules: upserts, retries, resolution, retraction.

Over real HTTP against a live server on SQLite and on PostgreSQL; the landing
tables are read directly to show what downstream readers will see.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import sqlalchemy as sa
from api_support import (
    FINISHED,
    REPOSITORY,
    SHA,
    STARTED,
    count_rows,
    deployment,
    failure,
    live_api,
)

from connectors.warehouse.schema import api_deployments, api_failure_services, api_failures

DEPLOYMENTS = "/api/v2/dora/deployments"
FAILURES = "/api/v2/dora/failures"


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> str:
    response = client.post(path, json=body)
    assert response.status_code == 202, response.text
    return response.json()["data"]["id"]


def _row(engine: sa.Engine, table: sa.Table, identifier: str) -> sa.Row:
    (key,) = table.primary_key.columns
    with engine.connect() as connection:
        return connection.execute(sa.select(table).where(key == identifier)).one()


def _services(engine: sa.Engine, identifier: str) -> list[str]:
    table = api_failure_services
    with engine.connect() as connection:
        return sorted(
            connection.scalars(
                sa.select(table.c.service).where(table.c.failure_id == identifier)
            ).all()
        )


def test_deployment_round_trip(warehouse: sa.Engine) -> None:
    body = deployment(
        env="prod",
        team="payments",
        version="1.4.2",
        git={"commit_sha": SHA.upper(), "repository_url": REPOSITORY},
        custom_tags=["region:eu", "tier:1"],
    )
    with live_api(warehouse) as client:
        response = client.post("/api/v2/dora/deployment", json=body)
        assert response.status_code == 202
        data = response.json()["data"]
        assert data["type"] == "dora_deployment"
        read = client.get(f"{DEPLOYMENTS}/{data['id']}")
    assert read.status_code == 200
    resource = read.json()["data"]
    assert resource["id"] == data["id"]
    assert resource["type"] == "dora_deployment"
    attributes = resource["attributes"]
    assert {key: attributes[key] for key in attributes if key != "updated_at"} == {
        "service": "shop",
        "team": "payments",
        "env": "prod",
        "version": "1.4.2",
        "started_at": "2025-01-31T12:00:00Z",
        "finished_at": "2025-01-31T12:05:00Z",
        "git": {"commit_sha": SHA, "repository_url": REPOSITORY},  # sha stored lower-case
        "custom_tags": ["region:eu", "tier:1"],
        "change_failure": False,
        "remediation": None,
    }


def test_same_deployment_twice_is_one_row(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        first = _post(client, "/api/v2/dora/deployment", deployment(custom_tags=["a:1", "b:2"]))
        # A retry, with tags in another order: the same deployment.
        again = _post(client, "/api/v2/dora/deployment", deployment(custom_tags=["b:2", "a:1"]))
        other = _post(client, "/api/v2/dora/deployment", deployment(version="2"))
    assert first == again
    assert first.startswith("dep-")
    assert other != first
    assert count_rows(warehouse, api_deployments) == 2


def test_deployment_with_id_upserts_its_attributes(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        _post(client, "/api/v2/dora/deployment", deployment(id="deploy-1", version="1"))
        before = _row(warehouse, api_deployments, "deploy-1")
        time.sleep(0.01)  # updated_at must move on, even on a fast machine
        _post(client, "/api/v2/dora/deployment", deployment(id="deploy-1", version="2", env="prod"))
    after = _row(warehouse, api_deployments, "deploy-1")
    assert count_rows(warehouse, api_deployments) == 1
    assert (after.version, after.env, after.team) == ("2", "prod", "")
    assert after.received_at == before.received_at
    assert after.updated_at > before.updated_at


def test_failure_sent_open_then_resolved_with_id_is_one_failure(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        opened = _post(client, "/api/v2/dora/failure", failure(id="inc-7", severity="SEV-1"))
        assert client.get(f"{FAILURES}/inc-7").json()["data"]["attributes"]["finished_at"] is None
        resolved = _post(
            client,
            "/api/v2/dora/failure",
            failure(id="inc-7", severity="SEV-1", finished_at=FINISHED),
        )
        read = client.get(f"{FAILURES}/inc-7").json()["data"]["attributes"]
    assert opened == resolved == "inc-7"
    assert read["finished_at"] == "2025-01-31T12:05:00Z"
    assert count_rows(warehouse, api_failures) == 1
    assert _services(warehouse, "inc-7") == ["shop"]


def test_failure_without_id_is_matched_on_env_services_started_at(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        opened = _post(
            client,
            "/api/v2/dora/incident",  # the alias lands in the same place
            failure(services=["shop", "cart"], env="prod", name="checkout down"),
        )
        resolved = _post(
            client,
            "/api/v2/dora/failure",
            failure(services=["cart", "shop", "cart"], env="prod", finished_at=FINISHED),
        )
        other_env = _post(client, "/api/v2/dora/failure", failure(services=["shop", "cart"]))
    assert opened == resolved
    assert other_env != opened
    row = _row(warehouse, api_failures, opened)
    assert row.finished_at is not None
    assert row.name is None  # a re-sent failure replaces the attributes
    assert _services(warehouse, opened) == ["cart", "shop"]
    assert count_rows(warehouse, api_failures) == 2


def test_team_only_failure_has_one_blank_service_row(warehouse: sa.Engine) -> None:
    body = {"data": {"attributes": {"team": "payments", "started_at": STARTED, "env": "prod"}}}
    with live_api(warehouse) as client:
        opened = _post(client, "/api/v2/dora/failure", body)
        body["data"]["attributes"]["finished_at"] = FINISHED
        resolved = _post(client, "/api/v2/dora/failure", body)
        read = client.get(f"{FAILURES}/{opened}").json()["data"]
    assert opened == resolved
    assert _services(warehouse, opened) == [""]
    assert read["attributes"]["services"] == []
    assert read["attributes"]["team"] == "payments"
    assert count_rows(warehouse, api_failures) == 1


def test_delete_retracts_and_a_later_post_revives(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        identifier = _post(client, "/api/v2/dora/deployment", deployment())
        before = _row(warehouse, api_deployments, identifier)
        deleted = client.delete(f"/api/v2/dora/deployment/{identifier}")
        assert deleted.status_code == 202
        assert deleted.json()["data"] == {"id": identifier, "type": "dora_deployment"}
        retracted = _row(warehouse, api_deployments, identifier)
        assert retracted.deleted_at is not None
        assert retracted.updated_at > before.updated_at
        assert client.get(f"{DEPLOYMENTS}/{identifier}").status_code == 404
        assert client.delete(f"/api/v2/dora/deployment/{identifier}").status_code == 404
        patch = {"data": {"attributes": {"change_failure": True}}}
        assert client.patch(f"{DEPLOYMENTS}/{identifier}", json=patch).status_code == 404
        assert _post(client, "/api/v2/dora/deployment", deployment()) == identifier
        assert client.get(f"{DEPLOYMENTS}/{identifier}").status_code == 200
    assert _row(warehouse, api_deployments, identifier).deleted_at is None


def test_failure_delete_and_unknown_ids(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        identifier = _post(client, "/api/v2/dora/failure", failure())
        assert client.delete(f"/api/v2/dora/failure/{identifier}").status_code == 202
        assert client.get(f"{FAILURES}/{identifier}").status_code == 404
        assert client.delete(f"/api/v2/dora/failure/{identifier}").status_code == 404
        for path in (f"{FAILURES}/nope", f"{DEPLOYMENTS}/nope", f"{DEPLOYMENTS}/{'x' * 300}"):
            response = client.get(path)
            assert response.status_code == 404
            assert response.json()["errors"][0]["status"] == "404"
        assert client.delete("/api/v2/dora/failure/nope").status_code == 404
        assert client.delete("/api/v2/dora/deployment/nope%00").status_code == 404
    assert _row(warehouse, api_failures, identifier).deleted_at is not None


def test_patch_marks_a_change_failure(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        identifier = _post(client, "/api/v2/dora/deployment", deployment(id="d-1"))
        before = _row(warehouse, api_deployments, identifier)
        body = {
            "data": {
                "attributes": {
                    "change_failure": True,
                    "remediation": {"type": "rollback", "id": "d-0"},
                }
            }
        }
        response = client.patch(f"{DEPLOYMENTS}/d-1", json=body)
        assert response.status_code == 202
        assert response.json()["data"] == {"id": "d-1", "type": "dora_deployment"}
        attributes = client.get(f"{DEPLOYMENTS}/d-1").json()["data"]["attributes"]
        assert attributes["change_failure"] is True
        assert attributes["remediation"] == {"type": "rollback", "ref": "d-0"}
        row = _row(warehouse, api_deployments, "d-1")
        assert (row.change_failure, row.remediation_type, row.remediation_ref) == (
            True,
            "rollback",
            "d-0",
        )
        assert row.updated_at > before.updated_at
        # A retried POST of the deployment keeps the mark; un-marking clears the remedy.
        _post(client, "/api/v2/dora/deployment", deployment(id="d-1"))
        assert _row(warehouse, api_deployments, "d-1").change_failure is True
        forward = {"change_failure": True, "remediation": {"type": "rollforward", "version": "9"}}
        client.patch(f"{DEPLOYMENTS}/d-1", json={"data": {"attributes": forward}})
        assert _row(warehouse, api_deployments, "d-1").remediation_ref == "9"
        client.patch(f"{DEPLOYMENTS}/d-1", json={"data": {"attributes": {"change_failure": False}}})
        assert client.patch(f"{DEPLOYMENTS}/unknown", json=body).status_code == 404
    row = _row(warehouse, api_deployments, "d-1")
    assert (row.change_failure, row.remediation_type, row.remediation_ref) == (False, None, None)


def test_patch_without_id_marks_the_latest_deployment_of_service_env_and_version(
    warehouse: sa.Engine,
) -> None:
    with live_api(warehouse) as client:
        for identifier, finished, env in [
            ("old", FINISHED - 600, "prod"),
            ("latest", FINISHED, "prod"),
            ("staging", FINISHED + 600, "staging"),
        ]:
            _post(
                client,
                "/api/v2/dora/deployment",
                deployment(
                    id=identifier,
                    env=env,
                    version="1.2",
                    started_at=STARTED - 3600,
                    finished_at=finished,
                ),
            )
        mark = {
            "service": "shop",
            "env": "prod",
            "version": "1.2",
            "change_failure": True,
            "remediation": {"type": "rollforward", "version": "1.3"},
        }
        response = client.patch(DEPLOYMENTS, json={"data": {"attributes": mark}})
        assert response.status_code == 202
        assert response.json()["data"] == {"id": "latest", "type": "dora_deployment"}
        row = _row(warehouse, api_deployments, "latest")
        assert (row.change_failure, row.remediation_ref, row.remediation_by) == (
            True,
            "1.3",
            "version",
        )
        assert _row(warehouse, api_deployments, "old").patched_at is None
        unknown = {**mark, "version": "9.9"}
        missing = client.patch(DEPLOYMENTS, json={"data": {"attributes": unknown}})
        assert missing.status_code == 404
        assert "9.9" in missing.json()["errors"][0]["detail"]
        without_version = {key: value for key, value in mark.items() if key != "version"}
        invalid = client.patch(DEPLOYMENTS, json={"data": {"attributes": without_version}})
        assert invalid.status_code == 400
        assert invalid.json()["errors"][0]["source"]["pointer"] == "/data/attributes/version"


def test_healthz_openapi_and_unknown_routes(warehouse: sa.Engine) -> None:
    with live_api(warehouse) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        paths = client.get("/openapi.json").json()["paths"]
        # Every status the API can answer is documented, and no other (FastAPI's 422 is not).
        documented = {
            code for ops in paths.values() for op in ops.values() for code in op["responses"]
        }
        assert "422" not in documented and {"400", "404", "413", "415"} <= documented
        body = paths["/api/v2/dora/deployment"]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert schema["properties"]["data"]["properties"]["attributes"]["required"] == [
            "service",
            "started_at",
            "finished_at",
        ]
        missing = client.get("/api/v2/dora/nothing-here")
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["title"] == "Not found"
        wrong_method = client.put("/api/v2/dora/deployment", json=deployment())
        assert wrong_method.status_code == 405
        assert wrong_method.json()["errors"][0]["status"] == "405"
