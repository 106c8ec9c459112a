"""JSON:API error bodies, the exception handlers that produce them, and body limits.

Every error the API answers has the shape
`{"errors": [{"status", "title", "detail", "source": {"pointer"}}]}`, including
404/405 from routing and 413 from the body limit, so a sender needs one parser.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.events.schemas import InvalidRequest, Problem

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as-is: status, a short title and a detail saying what to do."""

    def __init__(
        self, status: int, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers


class BodyTooLarge(Exception):
    """The request body exceeded the limit while it was being read."""


def error_body(status: int, problems: list[Problem]) -> bytes:
    errors = [
        {
            "status": str(status),
            "title": problem.title,
            "detail": problem.detail,
            "source": {"pointer": problem.pointer},
        }
        for problem in problems
    ]
    return orjson.dumps({"errors": errors})


def error_response(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    body = error_body(status, [Problem("", title, detail)])
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _too_large_detail(max_bytes: int) -> str:
    return f"The request body is over the {max_bytes}-byte limit; send one event per request."


# --- reading a JSON body ----------------------------------------------------------------


def _is_json(content_type: str | None) -> bool:
    if not content_type:  # senders that omit it (e.g. some CI scripts) mean JSON
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_json_body(request: Request) -> bytes:
    """The raw body of a JSON request: 415 for another Content-Type (the size limit
    is enforced while reading, by `BodySizeLimit`)."""
    content_type = request.headers.get("content-type")
    if not _is_json(content_type):
        raise ApiError(
            415,
            "Unsupported Content-Type",
            f"Content-Type {content_type!r} is not accepted; send the body as application/json.",
        )
    return await request.body()


class BodySizeLimit:
    """Refuses bodies over `max_bytes` with 413: at once when Content-Length says so,
    and while reading when it does not (chunked bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = error_response(413, "Body too large", _too_large_detail(self.max_bytes))
                await response(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited_receive, send)


# --- exception handlers -----------------------------------------------------------------


def install_error_handling(app: FastAPI, max_body_bytes: int) -> None:
    """JSON:API bodies for every error, and the body limit."""

    async def invalid_request(_request: Request, error: InvalidRequest) -> Response:
        return Response(
            error_body(400, error.problems), status_code=400, media_type="application/json"
        )

    async def api_error(_request: Request, error: ApiError) -> Response:
        return error_response(error.status, error.title, error.detail, error.headers)

    async def http_error(_request: Request, error: HTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed"}.get(error.status_code, "Error")
        return error_response(error.status_code, title, str(error.detail), error.headers)

    async def request_validation(_request: Request, error: RequestValidationError) -> Response:
        problems = [
            Problem(
                "/" + "/".join(str(part) for part in item["loc"]),
                "Invalid request",
                str(item["msg"]),
            )
            for item in error.errors()
        ]
        return Response(error_body(400, problems), status_code=400, media_type="application/json")

    async def too_large(_request: Request, _error: Exception) -> Response:
        return error_response(413, "Body too large", _too_large_detail(max_body_bytes))

    async def warehouse_unavailable(_request: Request, error: OperationalError) -> Response:
        logger.error("warehouse write failed: %s", type(error).__name__)
        return error_response(
            503,
            "Warehouse unavailable",
            "The event could not be stored right now and was not recorded; retry shortly.",
            {"Retry-After": "5"},
        )

    app.add_exception_handler(InvalidRequest, invalid_request)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(OperationalError, warehouse_unavailable)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    _document_errors_as_answered(app)


def _document_errors_as_answered(app: FastAPI) -> None:
    """FastAPI documents a 422 for every route with parameters; this API answers every
    invalid request with a 400 JSON:API body (documented per route), so the 422 goes."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
