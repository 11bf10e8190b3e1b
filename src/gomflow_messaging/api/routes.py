"""The public API: notify, message status, test sends, link tokens, contacts and health."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gomflow_messaging import health as health_checks
from gomflow_messaging import outbox
from gomflow_messaging.api.commands import commands_status
from gomflow_messaging.api.common import json_body, model_body, require_service_secret, services
from gomflow_messaging.api.models import (
    LinkTokenRequest,
    TestNotificationRequest,
)
from gomflow_messaging.api.proofs import routes as proof_routes
from gomflow_messaging.channels import registry
from gomflow_messaging.errors import ApiError, ValidationFailed
from gomflow_messaging.idempotency import check_key
from gomflow_messaging.workflows import data_rights, linking
from gomflow_messaging.workflows import notify as notify_workflow

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services

#: The local channel's address the deployment check writes to, and how long it waits.
DEPLOYMENT_CHECK_ADDRESS = "deployment-check"
DEPLOYMENT_CHECK_SECONDS = 5.0


def _json(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(_plain(data), status_code=status_code)


def _plain(value: Any) -> Any:
    """UUIDs, datetimes and Decimals as strings, for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


async def notify(request: Request) -> Response:
    require_service_secret(request)
    body = await json_body(request)
    key = request.headers.get("idempotency-key")
    svc = services(request)
    result = await notify_workflow.notify(
        svc,
        body,
        idempotency_key=check_key(key) if key is not None else None,
        request_id=request.state.request_id,
    )
    # The answer is plain JSON already (ids and times as strings, a replay as stored): no
    # walk through `_plain`, which costs on every request.
    response = JSONResponse(result.body, status_code=result.status_code)
    # One ring per channel, whatever the fan-out: no need to answer before it.
    await notify_workflow.enqueue(svc, result)
    return response


async def notifications_test(request: Request) -> Response:
    """Send the localised test message on each channel named, to check a deployment;
    ``{"test_message": true}`` without addresses checks it without messaging anyone."""
    require_service_secret(request)
    body = await model_body(request, TestNotificationRequest)
    svc = services(request)
    if body.test_message is True and body.address is None and body.addresses is None:
        return _json(await _deployment_check(request, svc, body.locale))
    addresses = body.addresses
    if body.address is not None:
        addresses = {name: body.address for name in svc.channels}
    if not addresses:
        raise ValidationFailed(
            {
                "addresses": 'give {"<channel>": "<address>"} for the channels to test '
                f'(enabled: {", ".join(svc.channels)}), or one "address" for all',
            }
        )
    recipients = [
        {"channel": channel, "address": address} for channel, address in addresses.items()
    ]
    payload: dict[str, Any] = {"event": "test", "recipients": recipients}
    if body.locale is not None:
        payload["locale"] = body.locale
    result = await notify_workflow.notify(
        svc, payload, request_id=request.state.request_id, source="test"
    )
    await notify_workflow.enqueue(svc, result)
    return _json(result.body, result.status_code)


async def _deployment_check(request: Request, svc: Services, locale: str | None) -> Any:
    """What the seed guide's step 7.2 asks: Postgres, the queue (Redis and a live worker),
    each enabled channel's credentials and reach (its health check), the Smart Agent, and,
    when a local channel (one that records) is on, one test message through the whole
    pipeline to it."""
    message_id: uuid.UUID | None = None
    local = registry.local_channel(svc.channels)
    if local is not None:
        payload: dict[str, Any] = {
            "event": "test",
            "recipients": [{"channel": local, "address": DEPLOYMENT_CHECK_ADDRESS}],
        }
        if locale is not None:
            payload["locale"] = locale
        result = await notify_workflow.notify(
            svc, payload, request_id=request.state.request_id, source="test"
        )
        await notify_workflow.enqueue(svc, result)
        [entry] = result.body["messages"]
        message_id = uuid.UUID(str(entry["id"]))
    # While the worker takes the message: the rest of the deployment.
    report = await health_checks.check(svc, mode=request.app.state.mode)
    found: dict[str, Any] = {
        "ok": report["status"] == "ok",
        "status": report["status"],
        "mode": report["mode"],
        "components": report["components"],
    }
    if "problems" in report:
        found["problems"] = report["problems"]
    if message_id is not None:
        status = await _settled(svc, message_id)
        sent = status in ("sent", "delivered", "read")
        found["test_message"] = {"ok": sent, "id": str(message_id), "status": status}
        if not sent:
            found["ok"] = False
            found["status"] = "unavailable" if report["status"] == "unavailable" else "degraded"
    return found


async def _settled(svc: Services, message_id: uuid.UUID) -> str:
    """The message's status once the worker is done with it, or as it is after a while."""
    deadline = time.monotonic() + DEPLOYMENT_CHECK_SECONDS
    status = "queued"
    while True:
        message = await outbox.get_message(svc.pool, message_id)
        status = str(message["status"]) if message else "missing"
        if status not in ("queued", "sending") or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


async def message_status(request: Request) -> Response:
    require_service_secret(request)
    try:
        message_id = uuid.UUID(request.path_params["message_id"])
    except ValueError:
        raise ValidationFailed({"id": "must be a UUID"}) from None
    message = await outbox.get_message(services(request).pool, message_id)
    if message is None:
        raise ApiError(404, "not_found", "No message with this id.")
    return _json(message)


async def link_tokens(request: Request) -> Response:
    """A one-use code that links a chat to a buyer's submission or to a GOM profile."""
    require_service_secret(request)
    body = await model_body(request, LinkTokenRequest)
    token = await linking.create_link_token(
        services(request).pool, submission_id=body.submission_id, gom_id=body.gom_id
    )
    return _json(token, 201)


def _contact_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["contact_id"])
    except ValueError:
        raise ValidationFailed({"id": "must be a UUID"}) from None


async def contact_export(request: Request) -> Response:
    require_service_secret(request)
    data = await data_rights.export(services(request), _contact_id(request), actor="api")
    return _json(data)


async def contact_erase(request: Request) -> Response:
    require_service_secret(request)
    data = await data_rights.erase(services(request), _contact_id(request), actor="api")
    return _json(data)


def _has_secret(request: Request) -> bool:
    try:
        require_service_secret(request)
    except ApiError:
        return False
    return True


async def health(request: Request) -> Response:
    """No auth (Railway's check); details, which name bots and accounts, only with the secret.

    Also at ``/health``, which the original GOMFLOW services' monitoring polls."""
    report = await health_checks.check(
        services(request), mode=request.app.state.mode, detailed=_has_secret(request)
    )
    return _json(report, 200 if report["ok"] else 503)


routes = [
    Route("/api/health", health, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/api/notify", notify, methods=["POST"]),
    Route("/api/notifications/test", notifications_test, methods=["POST"]),
    Route("/api/messages/{message_id}", message_status, methods=["GET"]),
    Route("/api/link-tokens", link_tokens, methods=["POST"]),
    Route("/api/contacts/{contact_id}/export", contact_export, methods=["GET"]),
    Route("/api/contacts/{contact_id}", contact_erase, methods=["DELETE"]),
    Route("/api/commands/status", commands_status, methods=["GET"]),
    *proof_routes,
]
