"""The sandbox's own API: what it received, and a chat with the bot as a sandbox user.

Mounted whether or not the channel is on: when it is off both answer 404 ``sandbox_disabled``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from gomflow_messaging import ratelimit
from gomflow_messaging.api.common import json_body, require_service_secret, services
from gomflow_messaging.api.routes import _json
from gomflow_messaging.errors import ApiError, ValidationFailed
from gomflow_messaging.i18n import normalize_locale
from gomflow_messaging.workflows.bot import IncomingFile, Reply, Sender, link_code_attempt

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
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ValidationFailed({"body": "must be a JSON object"})
    fields = {}
    upload = _sandbox_file(body.get("file"))
    for name in ("address", "text"):
        if name == "text" and (upload is not None or isinstance(body.get("form"), dict)):
            continue  # a file may come without a caption, a form's answers without text
        if not isinstance(body.get(name), str) or not body[name].strip():
            fields[name] = "is required"
    if fields:
        raise ValidationFailed(fields)
    sender = Sender(
        channel="sandbox",
        address=body["address"].strip()[:200],
        name=str(body.get("name", ""))[:100],
        language=str(body.get("language", "")),
        supports_forms=bool(body.get("supports_forms", False)),
    )
    text = str(body.get("text") or "")
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
    form = body.get("form")
    if isinstance(form, dict) and isinstance(form.get("values"), dict):
        replies = await svc.bot.submit_form(
            sender, str(form.get("id", "")), {str(k): str(v) for k, v in form["values"].items()}
        )
    elif upload is not None:
        replies = await svc.bot.file(sender, upload, str(body.get("text") or ""))
    else:
        replies = await svc.bot.handle(sender, body["text"])
    return _json({"replies": [asdict(r) for r in replies]})


def _sandbox_file(value: Any) -> IncomingFile | None:
    """``{"name", "mime_type", "content_base64"}``: a file as a sandbox chat sends it."""
    if value is None:
        return None
    try:
        content = base64.b64decode(str(value["content_base64"]), validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ValidationFailed({"file.content_base64": "must be base64"}) from None

    async def fetch() -> bytes:
        return content

    return IncomingFile(
        name=str(value.get("name", "receipt"))[:200],
        mime_type=str(value.get("mime_type", "application/octet-stream"))[:100],
        size=len(content),
        fetch=fetch,
    )


def routes(settings: Settings) -> list[BaseRoute]:
    return [
        Route("/api/sandbox/messages", sandbox_messages, methods=["GET"]),
        Route("/api/sandbox/inbound", sandbox_inbound, methods=["POST"]),
    ]
