"""GET|POST /webhook/whatsapp-cloud: Meta's handshake, then signed WhatsApp Cloud API events.

``X-Hub-Signature-256`` over the raw body is checked before anything is parsed (meta_graph):
a forged request gets 403 and changes nothing. Every entry and change of a batched POST is
read. Messages go through the chat pipeline (channels/inbound.py), each once by its
``wamid`` (Meta retries for days): text, reply-button and list taps (their id is the
button's action), a template's quick-reply payload, images and documents (receipts).
Statuses move a message forward only. Replies go out after the 200, through the Send API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gomflow_messaging import outbox
from gomflow_messaging.api import openapi
from gomflow_messaging.api.common import error_response, parse_json, services
from gomflow_messaging.channels import inbound, meta_graph
from gomflow_messaging.channels.whatsapp.cloud.channel import (
    PLATFORM,
    USER_ID,
    CloudChannel,
    failure_reason,
)
from gomflow_messaging.channels.whatsapp.cloud.render import render
from gomflow_messaging.errors import ApiError, ChannelError
from gomflow_messaging.phones import normalize_phone
from gomflow_messaging.workflows.chat.types import IncomingFile, Reply, Sender

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/whatsapp-cloud"
#: Meta's statuses we record (``played`` is for voice messages; ours are never one).
_RECORDED = frozenset({"sent", "delivered", "read", "failed"})
_FILES = frozenset({"image", "document"})
#: People of one batched POST handled at once (each person's messages in order).
BATCH_CONCURRENCY = 8


def channel_of(svc: Services) -> CloudChannel:
    channel = svc.channels[PLATFORM]
    assert isinstance(channel, CloudChannel)
    return channel


async def verify(request: Request) -> Response:
    """Meta subscribes the webhook once: echo ``hub.challenge`` if the token is ours."""
    settings = services(request).settings
    return PlainTextResponse(
        meta_graph.handshake(request.query_params, settings.whatsapp_cloud_verify_token)
    )


async def events(request: Request) -> Response:
    svc = services(request)
    channel = channel_of(svc)
    # Bounded before it is read by api/limits.py (MAX_WHATSAPP_CLOUD_EVENT_BYTES).
    raw = await request.body()
    signature = request.headers.get(meta_graph.SIGNATURE_HEADER, "")
    meta_graph.verify_signature(
        raw, signature, svc.settings.whatsapp_cloud_app_secret, "WhatsApp Cloud API"
    )
    try:
        body = parse_json(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "The body is not JSON.") from None
    if not isinstance(body, dict) or body.get("object") != "whatsapp_business_account":
        raise ApiError(400, "bad_request", "The body is not a WhatsApp Business Account event.")
    statuses: list[dict[str, Any]] = []
    people: dict[str, list[inbound.Inbound]] = {}
    for value in _values(body):
        statuses += meta_graph.objects(value.get("statuses"))
        names = _names(value)
        for message in meta_graph.objects(value.get("messages")):
            update = _incoming(channel, message, names)
            if update is not None:
                people.setdefault(update.sender.address, []).append(update)
    answers: list[tuple[str, list[Reply], str]] = []
    room = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one_person(updates: list[inbound.Inbound]) -> None:
        # A person's messages in their order; different people side by side, so that a
        # batch of many is answered fast.
        async with room:
            for update in updates:
                handled = await inbound.handle(svc, update)
                if handled.replies:
                    answers.append((update.sender.address, handled.replies, handled.locale))

    try:
        async with inbound.guarded(svc):
            for status in statuses:
                await _status(svc, status)
        results = await asyncio.gather(
            *(one_person(updates) for updates in people.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
    except inbound.Unavailable as exc:
        # Meta resends the whole POST: what was handled already is answered now, the rest
        # (forgotten by the pipeline) once the dependency is back.
        response = error_response(exc)
        response.background = _replies_task(channel, answers)
        return response
    return JSONResponse({}, background=_replies_task(channel, answers))


def _values(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every change's ``value`` of every entry (Meta batches many in one POST)."""
    found = []
    for entry in meta_graph.objects(body.get("entry")):
        for change in meta_graph.objects(entry.get("changes")):
            if change.get("field") == "messages" and isinstance(change.get("value"), dict):
                found.append(change["value"])
    return found


def _names(value: dict[str, Any]) -> dict[str, str]:
    """wa_id and user_id -> the profile name WhatsApp shows for the person."""
    names = {}
    for contact in meta_graph.objects(value.get("contacts")):
        profile = contact.get("profile")
        if not isinstance(profile, dict):
            continue
        for key in ("wa_id", "user_id"):
            if contact.get(key):
                names[str(contact[key])] = str(profile.get("name") or "")[:100]
    return names


def _phone(digits: str) -> str:
    """WhatsApp's ``from`` (digits, no +) as contacts store a number: E.164."""
    try:
        return normalize_phone("+" + digits)
    except ValueError:
        if digits.isdigit() and 6 <= len(digits) <= 15:
            return "+" + digits  # a number outside PH/MY that WhatsApp vouches for
        raise


def _incoming(
    channel: CloudChannel, message: dict[str, Any], names: dict[str, str]
) -> inbound.Inbound | None:
    """What the person did, or None for what is not for the bot (reactions, stickers, ...)."""
    wamid = str(message.get("id") or "")
    sender_digits = str(message.get("from") or "")
    user_id = str(message.get("from_user_id") or "")
    if not wamid:
        return None
    if sender_digits:
        try:
            address = _phone(sender_digits)
        except ValueError:
            return None
    elif USER_ID.fullmatch(user_id):
        # A person who took a username shows no number: their user id is their address
        # (answers and later messages go to it as "recipient").
        address = user_id
    else:
        return None
    name = names.get(sender_digits) or names.get(user_id) or ""
    sender = Sender(PLATFORM, address, name, keywords=True)
    kind = message.get("type")
    content = message.get(kind) if isinstance(kind, str) else None
    content = content if isinstance(content, dict) else {}
    if kind == "text":
        return inbound.Inbound(sender, key=wamid, text=str(content.get("body") or ""))
    if kind == "interactive":
        reply = content.get(str(content.get("type") or ""))
        if isinstance(reply, dict) and reply.get("id"):
            return inbound.Inbound(sender, key=wamid, text=str(reply["id"]))
        return None
    if kind == "button":
        # A template's quick reply: its payload, else the words on it.
        text = str(content.get("payload") or content.get("text") or "")
        return inbound.Inbound(sender, key=wamid, text=text) if text else None
    if kind in _FILES and content.get("id"):
        media_id = str(content["id"])

        async def fetch() -> bytes:
            _mime, data = await channel.download_media(media_id)
            return data

        mime = str(content.get("mime_type") or "")
        name = str(content.get("filename") or f"{media_id}.{mime.rpartition('/')[2] or 'bin'}")
        upload = IncomingFile(name=name[:200], mime_type=mime[:100], size=0, fetch=fetch)
        caption = str(content.get("caption") or "")
        return inbound.Inbound(sender, key=wamid, text=caption, file=upload)
    return None


async def _status(svc: Services, status: dict[str, Any]) -> None:
    """sent / delivered / read / failed (with or without ``contacts``): forward only."""
    wamid = str(status.get("id") or "")
    kind = str(status.get("status") or "")
    if not wamid or kind not in _RECORDED:
        return
    reason, gone, error = None, False, None
    if kind == "failed":
        errors = meta_graph.objects(status.get("errors"))
        first = errors[0] if errors else {}
        code = first.get("code")
        number = code if isinstance(code, int) and not isinstance(code, bool) else 0
        reason, gone = failure_reason(number)
        words = first.get("title") or first.get("message") or ""
        error = f"WhatsApp error {number}: {words}"[:500] if number else "WhatsApp: failed"
    row = await outbox.record_receipt(
        svc.pool, PLATFORM, status=kind, provider_message_id=wamid, reason=reason, error=error
    )
    if row is not None and gone:
        await outbox.mark_address_unreachable(svc.pool, PLATFORM, row["address"], reason or "")


def _replies_task(
    channel: CloudChannel, answers: list[tuple[str, list[Reply], str]]
) -> BackgroundTask | None:
    return BackgroundTask(send_replies, channel, answers) if answers else None


async def send_replies(channel: CloudChannel, answers: list[tuple[str, list[Reply], str]]) -> None:
    """Each person's replies in order; one that cannot go stops that person's rest."""
    for address, replies, locale in answers:
        try:
            for reply in replies:
                messages = render(reply.text, reply.buttons, locale, reply.image_url)
                await channel.send_reply(address, messages)
        except ChannelError as exc:
            log.warning("whatsapp cloud reply dropped: %s", exc.code)


def routes(settings: Settings) -> list[BaseRoute]:
    return [
        Route(WEBHOOK_PATH, verify, methods=["GET"]),
        Route(WEBHOOK_PATH, events, methods=["POST"]),
    ]


def openapi_paths(settings: Settings) -> dict[str, Any]:
    """This webhook in the service's OpenAPI document: Meta's handshake and its events."""
    item = openapi.webhook(
        "WhatsApp Cloud API events (X-Hub-Signature-256 with the app secret); each wamid once",
        openapi.JSON,
        {
            "200": "Handled; replies go out through the Cloud API",
            "400": "Not a WhatsApp Business Account event",
            "403": "Missing or wrong X-Hub-Signature-256",
            "503": "Redis or Postgres away: Meta retries",
        },
    )
    item["get"] = openapi.meta_handshake(
        "Meta's verification handshake: hub.challenge echoed for our verify token"
    )
    return {WEBHOOK_PATH: item}
