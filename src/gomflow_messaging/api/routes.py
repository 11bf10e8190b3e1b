"""The public API: notify, message status, test sends, the sandbox view and health."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gomflow_messaging import health as health_checks
from gomflow_messaging import outbox, ratelimit
from gomflow_messaging.api.commands import commands_status
from gomflow_messaging.api.common import json_body, model_body, require_service_secret, services
from gomflow_messaging.api.models import (
    LinkTokenRequest,
    SandboxFile,
    SandboxInboundRequest,
    TestNotificationRequest,
)
from gomflow_messaging.api.proofs import routes as proof_routes
from gomflow_messaging.errors import ApiError, ValidationFailed
from gomflow_messaging.i18n import normalize_locale
from gomflow_messaging.idempotency import check_key
from gomflow_messaging.workflows import data_rights, linking
from gomflow_messaging.workflows import notify as notify_workflow
from gomflow_messaging.workflows.chat.router import link_code_attempt
from gomflow_messaging.workflows.chat.types import IncomingFile, Reply, Sender

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services

INLINE_ENQUEUE_LIMIT = 200
#: The sandbox address the deployment check writes to, and how long it waits for a worker.
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
    response = _json(result.body, result.status_code)
    if len(result.to_enqueue) > INLINE_ENQUEUE_LIMIT:
        # A large fan-out is answered as soon as its rows are committed; the jobs follow
        # (and if this process dies first, the sweeper enqueues them).
        response.background = BackgroundTask(notify_workflow.enqueue, svc, result)
    else:
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
    when the sandbox is on, one test message through the whole pipeline to the sandbox."""
    message_id: uuid.UUID | None = None
    if "sandbox" in svc.channels:
        payload: dict[str, Any] = {
            "event": "test",
            "recipients": [{"channel": "sandbox", "address": DEPLOYMENT_CHECK_ADDRESS}],
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


async def sandbox_messages(request: Request) -> Response:
    require_service_secret(request)
    svc = services(request)
    if "sandbox" not in svc.channels:
        raise ApiError(404, "sandbox_disabled", "The sandbox channel is not enabled.")
    params = request.query_params
    try:
        limit = min(max(int(params.get("limit", "50")), 1), 500)
        after = min(max(int(params.get("after", "0")), 0), 2**63 - 1)
    except ValueError:
        raise ValidationFailed({"limit": "and after must be integers"}) from None
    address = params.get("address")
    if address is not None and "\x00" in address:
        raise ValidationFailed({"address": "must not contain a NUL character"})
    rows = await svc.pool.fetch(
        """
        SELECT id, message_id, address, payload, deliveries, received_at
          FROM sandbox_messages
         WHERE id > $1 AND ($2::text IS NULL OR address = $2)
         ORDER BY id DESC LIMIT $3
        """,
        after,
        address,
        limit,
    )
    return _json({"messages": [dict(r) for r in rows]})


async def sandbox_inbound(request: Request) -> Response:
    """Talk to the bot as a sandbox chat user: what a buyer would type, and the replies."""
    require_service_secret(request)
    svc = services(request)
    if "sandbox" not in svc.channels:
        raise ApiError(404, "sandbox_disabled", "The sandbox channel is not enabled.")
    body = await model_body(request, SandboxInboundRequest)
    if body.missing():
        raise ValidationFailed(body.missing())
    upload = _sandbox_file(body.file)
    sender = Sender(
        channel="sandbox",
        address=body.address[:200],
        name=body.name[:100],
        language=body.language,
        supports_forms=body.supports_forms,
    )
    text = body.text or ""
    allowed, limit = await ratelimit.inbound(
        svc.queue.redis,
        svc.settings,
        "sandbox",
        sender.address,
        link_attempt=link_code_attempt(text),
    )
    if allowed != "ok":
        refusal = Reply(ratelimit.refusal(svc.settings, limit, normalize_locale(sender.language)))
        return _json({"replies": [asdict(refusal)] if allowed == "warn" else []})
    if body.form is not None:
        replies = await svc.bot.submit_form(sender, body.form.id, body.form.values)
    elif upload is not None:
        replies = await svc.bot.file(sender, upload, text)
    else:
        replies = await svc.bot.handle(sender, text)
    return _json({"replies": [asdict(r) for r in replies]})


def _sandbox_file(value: SandboxFile | None) -> IncomingFile | None:
    if value is None:
        return None
    content = value.content()

    async def fetch() -> bytes:
        return content

    return IncomingFile(
        name=value.name[:200],
        mime_type=value.mime_type[:100],
        size=len(content),
        fetch=fetch,
    )


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
    """No auth (Railway's check); details, which name bots and accounts, only with the secret."""
    report = await health_checks.check(
        services(request), mode=request.app.state.mode, detailed=_has_secret(request)
    )
    return _json(report, 200 if report["ok"] else 503)


routes = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/notify", notify, methods=["POST"]),
    Route("/api/notifications/test", notifications_test, methods=["POST"]),
    Route("/api/messages/{message_id}", message_status, methods=["GET"]),
    Route("/api/sandbox/messages", sandbox_messages, methods=["GET"]),
    Route("/api/sandbox/inbound", sandbox_inbound, methods=["POST"]),
    Route("/api/link-tokens", link_tokens, methods=["POST"]),
    Route("/api/contacts/{contact_id}/export", contact_export, methods=["GET"]),
    Route("/api/contacts/{contact_id}", contact_erase, methods=["DELETE"]),
    Route("/api/commands/status", commands_status, methods=["GET"]),
    *proof_routes,
]
