"""`POST /webhooks/pagerduty`: the PagerDuty webhooks v3 receiver.

The signature is the authentication (no API key). Incident deliveries are landed
as they came and acknowledged with 202 once committed; `fold_webhook_deliveries`
turns them into incident state later, so the answer stays far inside PagerDuty's 5 s.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from connectors.api.errors import error_response
from connectors.pagerduty.webhooks import (
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    WebhookPayloadError,
    delivery_id,
    parse_webhook_event,
    signature_is_valid,
    store_delivery,
)

router = APIRouter(tags=["PagerDuty"])


def _accepted(webhook_id: str | None, outcome: str) -> JSONResponse:
    data = {"id": webhook_id, "type": "pagerduty_webhook_delivery", "status": outcome}
    return JSONResponse({"data": data}, status_code=202)


@router.post(
    "/webhooks/pagerduty",
    status_code=202,
    summary="Receive a PagerDuty v3 webhook delivery",
    responses={
        400: {"description": "the body is not a PagerDuty v3 event"},
        401: {"description": f"no {SIGNATURE_HEADER} header"},
        403: {"description": "the signature matches none of PAGERDUTY_WEBHOOK_SECRETS"},
        503: {"description": "PAGERDUTY_WEBHOOK_SECRETS is not configured"},
    },
)
async def receive_pagerduty_webhook(request: Request) -> Response:
    secrets = request.app.state.settings.webhook_secrets
    if not secrets:
        return error_response(
            503,
            "PagerDuty webhooks are not configured",
            "Set PAGERDUTY_WEBHOOK_SECRETS to the signing secret of your PagerDuty webhook"
            " subscription (comma-separated during a rotation) and restart the API.",
        )
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return error_response(
            401,
            "Missing signature",
            f"PagerDuty signs every delivery in {SIGNATURE_HEADER}; this request has none.",
        )
    body = await request.body()
    if not signature_is_valid(body, signature, secrets):
        return error_response(
            403,
            "Invalid signature",
            f"No {SIGNATURE_HEADER} value matches a secret in PAGERDUTY_WEBHOOK_SECRETS;"
            " check that it holds the subscription's current signing secret.",
        )
    try:
        payload = body.decode("utf-8")
        event = parse_webhook_event(payload)
        if event.resource_type != "incident":
            return _accepted(request.headers.get(WEBHOOK_ID_HEADER) or event.event_id, "ignored")
        webhook_id = delivery_id(request.headers.get(WEBHOOK_ID_HEADER), event)
    except UnicodeDecodeError:
        return error_response(400, "Invalid body", "The body is not UTF-8 encoded JSON.")
    except WebhookPayloadError as error:
        return error_response(400, "Invalid body", str(error))
    stored = await run_in_threadpool(
        store_delivery, request.app.state.engine, webhook_id, event, payload
    )
    return _accepted(webhook_id, "stored" if stored else "duplicate")
