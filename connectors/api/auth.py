"""API-key authentication: `DD-API-KEY: <key>` or `Authorization: Bearer <key>`.

The presented key is compared in constant time against every configured key
(no early exit), so timing reveals neither a key nor which one matched. Keys
are never logged or echoed back.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from connectors.api.errors import ApiError


def presented_key(request: Request) -> str | None:
    key = request.headers.get("dd-api-key")
    if key:
        return key.strip()
    scheme, _, credentials = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def is_accepted(key: str, accepted_keys: list[str]) -> bool:
    presented = key.encode("utf-8")
    matched = False
    for accepted in accepted_keys:
        matched |= hmac.compare_digest(presented, accepted.encode("utf-8"))
    return matched


def authenticate(request: Request) -> None:
    """401 without a key, 403 with a wrong one."""
    key = presented_key(request)
    if key is None:
        raise ApiError(
            401,
            "Missing API key",
            "Send your key in the DD-API-KEY header or as `Authorization: Bearer <key>`.",
            {"WWW-Authenticate": "Bearer"},
        )
    if not is_accepted(key, request.app.state.settings.api_keys):
        raise ApiError(
            403,
            "Invalid API key",
            "The API key is not accepted; use one of the keys in the server's DORA_API_KEYS.",
        )


class AuthenticatedRoute(APIRoute):
    """A route that authenticates before anything else (so before the body is read).

    A route class rather than a router dependency: FastAPI resolves dependencies on every
    request at a cost comparable to validating the event itself.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated_handler(request: Request) -> Response:
            authenticate(request)
            return await handler(request)

        return authenticated_handler
