"""API-key authentication: `DD-API-KEY: <key>` or `Authorization: Bearer <key>`.

The presented key is compared in constant time against every configured key
(no early exit), so timing reveals neither a key nor which one matched. Keys
are never logged or echoed back.
"""

from __future__ import annotations

import hmac

from fastapi import Request

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


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 without a key, 403 with a wrong one (checked before the body)."""
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
