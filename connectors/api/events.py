"""The Datadog-compatible DORA endpoints: record, read back, retract, mark change failure.

Writes go through the app's group-commit writer, so `202` is sent only after the
transaction holding the event has committed (in the warehouse, or in the spool beside a
SQLite warehouse while a job holds its lock: see `connectors.events.spool`). A read
first waits for the spool to be applied, so it sees every event already answered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from connectors.api.auth import AuthenticatedRoute
from connectors.api.errors import ApiError, read_json_body
from connectors.events import store
from connectors.events.group_commit import GroupCommitWriter
from connectors.events.schemas import (
    ChangeFailureRequest,
    DeploymentRequest,
    FailureRequest,
    LatestDeploymentChangeFailureRequest,
    inline_json_schema,
    parse_change_failure,
    parse_deployment,
    parse_failure,
    parse_latest_deployment_change_failure,
)
from connectors.events.store import EventStore, StoredDeployment, StoredFailure

DEPLOYMENT = "dora_deployment"
FAILURE = "dora_failure"

router = APIRouter(prefix="/api/v2/dora", tags=["dora"], route_class=AuthenticatedRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key"},
    403: {"description": "Wrong API key"},
}
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"description": "Invalid body; `errors[].source.pointer` names the field"},
    413: {"description": "Body over the size limit"},
    415: {"description": "Content-Type is not JSON"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown or retracted id"}}


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    # The body is read raw (for exact JSON:API errors) but documented, so /openapi.json
    # describes it and generated clients and schemathesis send meaningful bodies.
    schema = inline_json_schema(model)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _json(status: int, document: dict[str, Any]) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")


def _accepted(identifier: str, kind: str) -> Response:
    return _json(202, {"data": {"id": identifier, "type": kind}})


def _writer(request: Request) -> GroupCommitWriter:
    return request.app.state.event_writer


def _store(request: Request) -> EventStore:
    return EventStore(request.app.state.engine)


def _rfc3339(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None


def _git(commit_sha: str | None, repository_url: str | None) -> dict[str, str] | None:
    if commit_sha is None or repository_url is None:
        return None
    return {"commit_sha": commit_sha, "repository_url": repository_url}


def _not_found(kind: str, identifier: str) -> ApiError:
    return ApiError(
        404,
        "Not found",
        f"No {kind} with id {identifier!r}: it was never recorded or has been deleted.",
    )


# --- deployments ------------------------------------------------------------------------


@router.post(
    "/deployment",
    status_code=202,
    summary="Record a deployment",
    openapi_extra=_documented_body(DeploymentRequest),
    responses=_BODY_ERRORS,
)
async def post_deployment(request: Request) -> Response:
    event = parse_deployment(await read_json_body(request))
    identifier = await _writer(request).submit(store.upsert_deployment(event))
    return _accepted(identifier, DEPLOYMENT)


@router.get(
    "/deployments/{deployment_id}",
    summary="Read a deployment back",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def get_deployment(deployment_id: str, request: Request) -> Response:
    await _writer(request).settle()
    stored = await run_in_threadpool(_store(request).get_deployment, deployment_id)
    if stored is None:
        raise _not_found("deployment", deployment_id)
    return _json(200, {"data": _deployment_resource(stored)})


def _deployment_resource(stored: StoredDeployment) -> dict[str, Any]:
    event = stored.event
    remediation = stored.remediation
    attributes = {
        "service": event.service,
        "team": event.team,
        "env": event.env,
        "version": event.version,
        "started_at": _rfc3339(event.started_at),
        "finished_at": _rfc3339(event.finished_at),
        "git": _git(event.commit_sha, event.repository_url),
        "custom_tags": list(event.custom_tags),
        "change_failure": stored.change_failure,
        "remediation": {"type": remediation.type, "ref": remediation.ref} if remediation else None,
        "updated_at": _rfc3339(stored.updated_at),
    }
    return {"id": stored.id, "type": DEPLOYMENT, "attributes": attributes}


@router.delete(
    "/deployment/{deployment_id}",
    status_code=202,
    summary="Retract a deployment (metrics drop it)",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def delete_deployment(deployment_id: str, request: Request) -> Response:
    write = store.delete_deployment(deployment_id)
    if not await _writer(request).submit(write):
        raise _not_found("deployment", deployment_id)
    return _accepted(deployment_id, DEPLOYMENT)


@router.patch(
    "/deployments/{deployment_id}",
    status_code=202,
    summary="Mark a deployment as a change failure (and how it was remedied)",
    openapi_extra=_documented_body(ChangeFailureRequest),
    responses={**_BODY_ERRORS, **_NOT_FOUND},
)
async def patch_deployment(deployment_id: str, request: Request) -> Response:
    change = parse_change_failure(await read_json_body(request))
    write = store.mark_change_failure(deployment_id, change)
    if not await _writer(request).submit(write):
        raise _not_found("deployment", deployment_id)
    return _accepted(deployment_id, DEPLOYMENT)


@router.patch(
    "/deployments",
    status_code=202,
    summary="Mark the latest deployment of a service, env and version as a change failure",
    openapi_extra=_documented_body(LatestDeploymentChangeFailureRequest),
    responses={**_BODY_ERRORS, **_NOT_FOUND},
)
async def patch_latest_deployment(request: Request) -> Response:
    match, change = parse_latest_deployment_change_failure(await read_json_body(request))
    identifier = await _writer(request).submit(store.mark_latest_change_failure(match, change))
    if identifier is None:
        raise ApiError(
            404,
            "Not found",
            f"No deployment of service {match.service!r}, env {match.env!r} and version"
            f" {match.version!r}: send the deployment first, or PATCH it by id.",
        )
    return _accepted(identifier, DEPLOYMENT)


# --- failures ---------------------------------------------------------------------------


async def _post_failure(request: Request) -> Response:
    event = parse_failure(await read_json_body(request))
    identifier = await _writer(request).submit(store.upsert_failure(event))
    return _accepted(identifier, FAILURE)


for _path in ("/failure", "/incident"):
    router.add_api_route(
        _path,
        _post_failure,
        methods=["POST"],
        status_code=202,
        summary="Record a failure" if _path == "/failure" else "Record a failure (alias)",
        operation_id=f"post_{_path.strip('/')}",
        openapi_extra=_documented_body(FailureRequest),
        responses=_BODY_ERRORS,
    )


@router.get(
    "/failures/{failure_id}",
    summary="Read a failure back",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def get_failure(failure_id: str, request: Request) -> Response:
    await _writer(request).settle()
    stored = await run_in_threadpool(_store(request).get_failure, failure_id)
    if stored is None:
        raise _not_found("failure", failure_id)
    return _json(200, {"data": _failure_resource(stored)})


def _failure_resource(stored: StoredFailure) -> dict[str, Any]:
    event = stored.event
    attributes = {
        "services": list(event.services),
        "team": event.team,
        "env": event.env,
        "name": event.name,
        "severity": event.severity,
        "version": event.version,
        "started_at": _rfc3339(event.started_at),
        "finished_at": _rfc3339(event.finished_at),
        "git": _git(event.commit_sha, event.repository_url),
        "custom_tags": list(event.custom_tags),
        "updated_at": _rfc3339(stored.updated_at),
    }
    return {"id": stored.id, "type": FAILURE, "attributes": attributes}


@router.delete(
    "/failure/{failure_id}",
    status_code=202,
    summary="Retract a failure (metrics drop it)",
    responses={**_ERRORS, **_NOT_FOUND},
)
async def delete_failure(failure_id: str, request: Request) -> Response:
    if not await _writer(request).submit(store.delete_failure(failure_id)):
        raise _not_found("failure", failure_id)
    return _accepted(failure_id, FAILURE)
