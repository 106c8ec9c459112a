"""Every validation rule of the event API: exact status, JSON:API body, field pointer.

Each rule is one row of a table, sent over real HTTP to a live server on SQLite
and on PostgreSQL; after all of them, nothing may have been stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
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

from connectors.warehouse.schema import api_deployments, api_failures

DEPLOYMENT = "/api/v2/dora/deployment"
FAILURE = "/api/v2/dora/failure"
PATCH = "/api/v2/dora/deployments/any-id"
ATTRIBUTES = "/data/attributes"


@dataclass(frozen=True)
class Rule:
    name: str
    path: str
    body: Any  # a JSON document, or raw bytes sent as they are
    pointer: str
    status: int = 400
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def _change(**attributes: Any) -> dict[str, Any]:
    """A PATCH body that marks (or clears) a change failure."""
    return {"data": {"attributes": attributes}}


def _without(document: dict[str, Any], name: str) -> dict[str, Any]:
    attributes = dict(document["data"]["attributes"])
    del attributes[name]
    return {"data": {"attributes": attributes}}


RULES = [
    # required fields
    *(
        Rule(
            f"deployment without {name}",
            DEPLOYMENT,
            _without(deployment(), name),
            f"{ATTRIBUTES}/{name}",
        )
        for name in ("service", "started_at", "finished_at")
    ),
    Rule(
        "failure without started_at",
        FAILURE,
        _without(failure(), "started_at"),
        f"{ATTRIBUTES}/started_at",
    ),
    Rule(
        "failure without services or team",
        FAILURE,
        _without(failure(), "services"),
        f"{ATTRIBUTES}/services",
    ),
    Rule(
        "failure with empty services, no team",
        FAILURE,
        failure(services=[]),
        f"{ATTRIBUTES}/services",
    ),
    Rule("no data", DEPLOYMENT, {"attributes": {}}, "/data"),
    Rule("no attributes", DEPLOYMENT, {"data": {}}, "/data/attributes"),
    # types
    Rule("service is a number", DEPLOYMENT, deployment(service=7), f"{ATTRIBUTES}/service"),
    Rule("service is empty", DEPLOYMENT, deployment(service="  "), f"{ATTRIBUTES}/service"),
    Rule("env is a list", DEPLOYMENT, deployment(env=["prod"]), f"{ATTRIBUTES}/env"),
    Rule("team is a bool", DEPLOYMENT, deployment(team=True), f"{ATTRIBUTES}/team"),
    Rule("data is a string", DEPLOYMENT, {"data": "x"}, "/data"),
    Rule("body is an array", DEPLOYMENT, [deployment()], ""),
    Rule("services is a string", FAILURE, failure(services="shop"), f"{ATTRIBUTES}/services"),
    Rule("a service is a number", FAILURE, failure(services=[1]), f"{ATTRIBUTES}/services/0"),
    Rule("name over 1024 characters", FAILURE, failure(name="n" * 1025), f"{ATTRIBUTES}/name"),
    Rule(
        "service over 255 characters",
        DEPLOYMENT,
        deployment(service="s" * 256),
        f"{ATTRIBUTES}/service",
    ),
    Rule("NUL in a service", DEPLOYMENT, deployment(service="sh\u0000op"), f"{ATTRIBUTES}/service"),
    # git
    Rule(
        "git without repository_url",
        DEPLOYMENT,
        deployment(git={"commit_sha": SHA}),
        f"{ATTRIBUTES}/git/repository_url",
    ),
    Rule(
        "git without commit_sha",
        DEPLOYMENT,
        deployment(git={"repository_url": REPOSITORY}),
        f"{ATTRIBUTES}/git/commit_sha",
    ),
    Rule(
        "sha not hex",
        DEPLOYMENT,
        deployment(git={"commit_sha": "g" * 40, "repository_url": REPOSITORY}),
        f"{ATTRIBUTES}/git/commit_sha",
    ),
    Rule(
        "sha of 39 hex",
        DEPLOYMENT,
        deployment(git={"commit_sha": SHA[:39], "repository_url": REPOSITORY}),
        f"{ATTRIBUTES}/git/commit_sha",
    ),
    Rule(
        "failure with a short sha",
        FAILURE,
        failure(git={"commit_sha": "abc123", "repository_url": REPOSITORY}),
        f"{ATTRIBUTES}/git/commit_sha",
    ),
    # custom tags
    Rule(
        "tag without a colon",
        DEPLOYMENT,
        deployment(custom_tags=["team:a", "oops"]),
        f"{ATTRIBUTES}/custom_tags/1",
    ),
    Rule(
        "tag without a value",
        DEPLOYMENT,
        deployment(custom_tags=["key:"]),
        f"{ATTRIBUTES}/custom_tags/0",
    ),
    Rule("tag is a number", DEPLOYMENT, deployment(custom_tags=[5]), f"{ATTRIBUTES}/custom_tags/0"),
    Rule("tags not a list", DEPLOYMENT, deployment(custom_tags="a:b"), f"{ATTRIBUTES}/custom_tags"),
    Rule(
        "101 tags",
        DEPLOYMENT,
        deployment(custom_tags=[f"k:{n}" for n in range(101)]),
        f"{ATTRIBUTES}/custom_tags",
    ),
    # timestamps
    Rule(
        "finished before started",
        DEPLOYMENT,
        deployment(finished_at=STARTED - 1),
        f"{ATTRIBUTES}/finished_at",
    ),
    Rule(
        "failure finished before started",
        FAILURE,
        failure(finished_at="2025-01-31T11:59:59Z"),
        f"{ATTRIBUTES}/finished_at",
    ),
    Rule(
        "RFC 3339 without offset",
        DEPLOYMENT,
        deployment(started_at="2025-01-31T12:00:00"),
        f"{ATTRIBUTES}/started_at",
    ),
    Rule("not a date", DEPLOYMENT, deployment(started_at="yesterday"), f"{ATTRIBUTES}/started_at"),
    Rule(
        "float timestamp",
        DEPLOYMENT,
        deployment(started_at=1738324800.5),
        f"{ATTRIBUTES}/started_at",
    ),
    Rule("bool timestamp", DEPLOYMENT, deployment(finished_at=True), f"{ATTRIBUTES}/finished_at"),
    Rule(
        "unknown unit (past year 9999)",
        DEPLOYMENT,
        deployment(finished_at=10**26),
        f"{ATTRIBUTES}/finished_at",
    ),
    Rule("negative timestamp", DEPLOYMENT, deployment(started_at=-5), f"{ATTRIBUTES}/started_at"),
    Rule(
        "offset carries it past year 9999",
        DEPLOYMENT,
        deployment(finished_at="9999-12-31T23:59:59-01:00"),
        f"{ATTRIBUTES}/finished_at",
    ),
    Rule(
        "offset carries it before year 1",
        FAILURE,
        failure(started_at="0001-01-01T00:00:00+01:00"),
        f"{ATTRIBUTES}/started_at",
    ),
    Rule(
        "before 1970 as a string, as integers are",
        DEPLOYMENT,
        deployment(started_at="1969-12-31T23:59:59Z"),
        f"{ATTRIBUTES}/started_at",
    ),
    # body
    Rule("empty body", DEPLOYMENT, b"", ""),
    Rule("whitespace body", FAILURE, b"  \n", ""),
    Rule("not JSON", DEPLOYMENT, b"service=shop", ""),
    Rule("truncated JSON", FAILURE, json.dumps(failure()).encode()[:-3], ""),
    Rule("invalid UTF-8", DEPLOYMENT, b'{"data": "\xff"}', ""),
    Rule(
        "form Content-Type",
        DEPLOYMENT,
        b"service=shop",
        "",
        415,
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Rule(
        "text Content-Type",
        FAILURE,
        json.dumps(failure()).encode(),
        "",
        415,
        {"Content-Type": "text/plain"},
    ),
    Rule(
        "body over 1 MiB",
        DEPLOYMENT,
        json.dumps(deployment(name="x" * (1 << 20))).encode(),
        "",
        413,
    ),
    # PATCH change failure
    Rule(
        "patch without change_failure",
        PATCH,
        _change(),
        f"{ATTRIBUTES}/change_failure",
        method="PATCH",
    ),
    Rule(
        "patch change_failure a string",
        PATCH,
        _change(change_failure="yes"),
        f"{ATTRIBUTES}/change_failure",
        method="PATCH",
    ),
    Rule(
        "patch unknown remediation type",
        PATCH,
        _change(change_failure=True, remediation={"type": "revert", "id": "d1"}),
        f"{ATTRIBUTES}/remediation/type",
        method="PATCH",
    ),
    Rule(
        "patch remediation without id or version",
        PATCH,
        _change(change_failure=True, remediation={"type": "rollback"}),
        f"{ATTRIBUTES}/remediation",
        method="PATCH",
    ),
    Rule(
        "patch remediation with both id and version",
        PATCH,
        _change(change_failure=True, remediation={"type": "rollback", "id": "d1", "version": "1"}),
        f"{ATTRIBUTES}/remediation",
        method="PATCH",
    ),
    Rule(
        "patch remediation without a change failure",
        PATCH,
        _change(change_failure=False, remediation={"type": "rollforward", "version": "2"}),
        f"{ATTRIBUTES}/remediation",
        method="PATCH",
    ),
]


def _send(client: httpx.Client, rule: Rule) -> httpx.Response:
    content = rule.body if isinstance(rule.body, bytes) else json.dumps(rule.body).encode()
    headers = {"Content-Type": "application/json", **rule.headers}
    return client.request(rule.method, rule.path, content=content, headers=headers)


def test_every_rule_answers_its_status_and_pointer(warehouse: sa.Engine) -> None:
    mismatches = []
    with live_api(warehouse) as client:
        for rule in RULES:
            response = _send(client, rule)
            errors = response.json().get("errors") if response.content else None
            got = (response.status_code, errors[0]["source"]["pointer"] if errors else None)
            if got != (rule.status, rule.pointer):
                mismatches.append(f"{rule.name}: expected {(rule.status, rule.pointer)}, got {got}")
                continue
            error = errors[0]
            if error["status"] != str(rule.status) or not error["title"] or not error["detail"]:
                mismatches.append(f"{rule.name}: incomplete JSON:API error {error}")
    assert mismatches == []
    assert count_rows(warehouse, api_deployments) == 0
    assert count_rows(warehouse, api_failures) == 0


def test_error_detail_names_the_field_and_lists_every_problem(warehouse: sa.Engine) -> None:
    body = deployment(service=1, git={"commit_sha": "nope", "repository_url": REPOSITORY})
    with live_api(warehouse) as client:
        response = client.post(DEPLOYMENT, json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    errors = response.json()["errors"]
    assert [error["source"]["pointer"] for error in errors] == [
        f"{ATTRIBUTES}/service",
        f"{ATTRIBUTES}/git/commit_sha",
    ]
    assert "`service`" in errors[0]["detail"]
    assert "40 to 64 hexadecimal" in errors[1]["detail"]


def test_chunked_body_over_the_limit_is_413(warehouse: sa.Engine) -> None:
    def chunks() -> Any:
        # No Content-Length: the limit must hold while the body streams in.
        for _ in range(20):
            yield b" " * 65_536

    with live_api(warehouse) as client:
        response = client.post(
            DEPLOYMENT, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["errors"][0]["status"] == "413"
        # Just under the limit is read and validated (and refused as JSON, not as size).
        small = client.post(DEPLOYMENT, content=b" " * ((1 << 20) - 1))
        assert small.status_code == 400
    assert count_rows(warehouse, api_deployments) == 0


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/vnd.api+json"]
)
def test_json_content_types_are_accepted(warehouse: sa.Engine, content_type: str | None) -> None:
    # httpx sends no Content-Type for raw content: a missing one must mean JSON.
    headers = {"Content-Type": content_type} if content_type else {}
    with live_api(warehouse) as client:
        content = json.dumps(deployment()).encode()
        assert client.post(DEPLOYMENT, content=content, headers=headers).status_code == 202


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (STARTED, "2025-01-31T12:00:00Z"),  # seconds
        (STARTED * 1_000 + 250, "2025-01-31T12:00:00.250000Z"),  # milliseconds
        (STARTED * 1_000_000 + 250_001, "2025-01-31T12:00:00.250001Z"),  # microseconds
        (STARTED * 1_000_000_000 + 250_001_999, "2025-01-31T12:00:00.250001Z"),  # ns, truncated
        ("2025-01-31T13:00:00+01:00", "2025-01-31T12:00:00Z"),
        ("2025-01-31T12:00:00.5Z", "2025-01-31T12:00:00.500000Z"),
        ("2025-01-31T12:00:00.1234567891234Z", "2025-01-31T12:00:00.123456Z"),  # truncated
    ],
)
def test_timestamp_units_and_offsets_are_stored_as_utc(
    warehouse: sa.Engine, value: int | str, expected: str
) -> None:
    with live_api(warehouse) as client:
        posted = client.post(DEPLOYMENT, json=deployment(started_at=value, finished_at=FINISHED))
        assert posted.status_code == 202, posted.text
        identifier = posted.json()["data"]["id"]
        read = client.get(f"/api/v2/dora/deployments/{identifier}").json()
    assert read["data"]["attributes"]["started_at"] == expected


def test_empty_env_and_team_mean_missing(warehouse: sa.Engine) -> None:
    """DESIGN stores a missing env or team as ''; sending '' says the same thing."""
    with live_api(warehouse) as client:
        explicit = client.post(DEPLOYMENT, json=deployment(env="", team=" "))
        omitted = client.post(DEPLOYMENT, json=deployment())
        team_only = client.post(FAILURE, json=_without(failure(team=""), "services"))
    assert explicit.status_code == 202, explicit.text
    # The same deployment either way: its deterministic id matches.
    assert explicit.json()["data"]["id"] == omitted.json()["data"]["id"]
    assert team_only.status_code == 400
    assert team_only.json()["errors"][0]["source"]["pointer"] == f"{ATTRIBUTES}/services"
