"""The event API application: Datadog-compatible DORA endpoints and the PagerDuty webhook."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import Response

from connectors import settings
from connectors.api import events, pagerduty_webhook
from connectors.api.errors import install_error_handling
from connectors.events.group_commit import GroupCommitWriter
from connectors.events.spool import Spool
from connectors.events.store import EventStore


@dataclass(frozen=True)
class ApiSettings:
    """What the API needs besides the warehouse; secrets never leave this object."""

    api_keys: list[str]
    webhook_secrets: list[str] = field(default_factory=list)
    max_body_bytes: int = 1024 * 1024

    @classmethod
    def from_environment(cls) -> ApiSettings:
        return cls(
            api_keys=settings.api_keys(), webhook_secrets=settings.pagerduty_webhook_secrets()
        )


def create_app(engine: sa.Engine, api_settings: ApiSettings) -> FastAPI:
    """The ASGI app; routers read `app.state.engine` and `app.state.settings`."""
    spool = Spool.beside(engine)
    writer = GroupCommitWriter(EventStore(engine, spool))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await writer.settle()  # what an earlier run of the API spooled
        yield
        writer.close()  # answers what is in flight before the process exits
        if spool is not None:
            spool.dispose()

    app = FastAPI(title="DORA event API", version="1.0", lifespan=lifespan)
    app.state.engine = engine
    app.state.settings = api_settings
    app.state.event_writer = writer
    install_error_handling(app, api_settings.max_body_bytes)

    @app.get("/healthz", summary="Liveness (no warehouse access)")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    app.include_router(events.router)
    app.include_router(pagerduty_webhook.router)
    return app
