"""The sandbox's own API: what it received, and a chat with the bot as a sandbox user.

Mounted whether or not the channel is on: when it is off both answer 404 ``sandbox_disabled``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from gomflow_messaging.api import openapi
from gomflow_messaging.api.common import model_body, require_service_secret, services
from gomflow_messaging.api.models import SandboxFile, SandboxInboundRequest
from gomflow_messaging.api.routes import _json
from gomflow_messaging.channels import inbound
from gomflow_messaging.errors import ApiError, ValidationFailed
from gomflow_messaging.workflows.chat.types import IncomingFile, Sender

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from gomflow_messaging.settings import Settings


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
    form = (body.form.id, body.form.values) if body.form is not None else None
    handled = await inbound.handle(
        svc, inbound.Inbound(sender, text=body.text or "", file=upload, form=form)
    )
    return _json({"replies": [asdict(r) for r in handled.replies]})


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


def routes(settings: Settings) -> list[BaseRoute]:
    return [
        Route("/api/sandbox/messages", sandbox_messages, methods=["GET"]),
        Route("/api/sandbox/inbound", sandbox_inbound, methods=["POST"]),
    ]


def openapi_paths(settings: Settings) -> dict[str, Any]:
    """The sandbox's own API in the service's OpenAPI document."""
    return {
        "/api/sandbox/messages": {
            "get": {
                "summary": "What the sandbox channel received, newest first",
                "security": openapi.BEARER,
                "parameters": [
                    {
                        "name": "address",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 200},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    "200": openapi.ok("Messages", openapi.ref("SandboxMessages")),
                    **openapi.AUTH_ERRORS,
                    "404": openapi.error("The sandbox channel is not enabled"),
                    "422": openapi.error("A parameter is not valid"),
                },
            }
        },
        "/api/sandbox/inbound": {
            "post": {
                "summary": "Talk to the bot as a sandbox chat user",
                "security": openapi.BEARER,
                "requestBody": openapi.json_body(openapi.ref("SandboxInboundRequest")),
                "responses": {
                    "200": openapi.ok("The bot's replies", openapi.ref("BotReplies")),
                    **openapi.AUTH_ERRORS,
                    "404": openapi.error("The sandbox channel is not enabled"),
                    **openapi.BODY_ERRORS,
                },
            }
        },
    }
