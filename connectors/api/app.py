"""The event API application: Datadog-compatible DORA endpoints and the PagerDuty webhook."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from fastapi import FastAPI

from connectors import settings


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
    app = FastAPI(title="DORA event API", version="1.0")
    app.state.engine = engine
    app.state.settings = api_settings
    return app
