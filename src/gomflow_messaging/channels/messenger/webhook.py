"""GET|POST /webhook/messenger: Meta's handshake, then signed events handed to the chat bot.

``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body with the app secret) is compared in
constant time before the body is parsed: a forged request gets 403 and changes nothing.
Each message is handled once (its ``mid`` in `inbound_updates`: Meta retries). Texts, quick
replies and button presses (postbacks) go to `workflows.chat` like every chat's; images go to
the payment-proof flow; a ``ref`` (``m.me/<page>?ref=CODE``) is ``/start CODE``. A Page chat
is always one person, so the sender is the person and there is no group. Replies go out
after the 200, through the Send API. Delivery and read receipts move messages forward only.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gomflow_messaging import outbox
from gomflow_messaging.api import openapi
from gomflow_messaging.api.common import error_response, parse_json, services
from gomflow_messaging.channels import inbound, meta_graph
from gomflow_messaging.channels.messenger import WEBHOOK_PATH
from gomflow_messaging.channels.messenger.channel import PLATFORM, MessengerChannel
from gomflow_messaging.channels.messenger.render import render
from gomflow_messaging.errors import ApiError, ChannelError
from gomflow_messaging.workflows.chat.types import IncomingFile, Reply, Sender

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)


def channel_of(svc: Services) -> MessengerChannel:
    channel = svc.channels[PLATFORM]
    assert isinstance(channel, MessengerChannel)
    return channel


async def verify(request: Request) -> Response:
    """Meta subscribes the webhook once: echo ``hub.challenge`` if the token is ours."""
    config = channel_of(services(request)).config
    return PlainTextResponse(
        meta_graph.handshake(request.query_params, config.messenger_verify_token)
    )


# -- events --------------------------------------------------------------------------------


@dataclass
class Incoming:
    """One thing a person did: its dedupe key, what to hand the bot, and a file if any."""

    key: str
    psid: str
    text: str = ""
    image_url: str = ""


async def events(request: Request) -> Response:
    svc = services(request)
    channel = channel_of(svc)
    config = channel.config
    # Bounded before it is read by api/limits.py (MAX_MESSENGER_EVENT_BYTES).
    raw = await request.body()
    signature = request.headers.get(meta_graph.SIGNATURE_HEADER, "")
    meta_graph.verify_signature(raw, signature, config.messenger_app_secret, "Messenger")
    try:
        body = parse_json(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "The body is not JSON.") from None
    if not isinstance(body, dict) or body.get("object") != "page":
        raise ApiError(400, "bad_request", "The body is not a Messenger page event.")
    answers: list[tuple[str, list[Reply]]] = []
    try:
        for event in _messaging(body):
            psid = str((event.get("sender") or {}).get("id") or "")
            if not psid.isdigit():
                continue
            if isinstance(event.get("delivery"), dict):
                async with inbound.guarded(svc):
                    await _delivered(svc, psid, event["delivery"])
            elif isinstance(event.get("read"), dict):
                async with inbound.guarded(svc):
                    await _read(svc, psid, event["read"])
            else:
                incoming = _incoming(psid, event)
                replies = await _handle(svc, channel, incoming) if incoming is not None else []
                if replies:
                    answers.append((psid, replies))
    except inbound.Unavailable as exc:
        # Meta resends the whole batch: what was handled already is answered now, the rest
        # (forgotten by the pipeline) once the dependency is back.
        response = error_response(exc)
        response.background = _replies_task(channel, answers)
        return response
    return JSONResponse({}, background=_replies_task(channel, answers))


def _replies_task(
    channel: MessengerChannel, answers: list[tuple[str, list[Reply]]]
) -> BackgroundTask | None:
    return BackgroundTask(send_replies, channel, answers) if answers else None


def _messaging(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        event
        for entry in meta_graph.objects(body.get("entry"))
        for event in meta_graph.objects(entry.get("messaging"))
    ]


def _event_key(kind: str, psid: str, event: dict[str, Any]) -> str:
    """A dedupe key for an event without a ``mid``: the person and Meta's timestamp, hashed,
    so that `inbound_updates` holds no PSID after the person's data is erased."""
    stamp = str(event.get("timestamp") or "")
    return f"{kind}:" + hashlib.sha256(f"{psid}:{stamp}".encode()).hexdigest()[:40]


def _incoming(psid: str, event: dict[str, Any]) -> Incoming | None:
    """What the person did, or None for what is not for the bot (our own echoes)."""
    message = event.get("message")
    if isinstance(message, dict):
        if message.get("is_echo") or not message.get("mid"):
            return None
        mid = str(message["mid"])
        quick = message.get("quick_reply")
        if isinstance(quick, dict) and quick.get("payload"):
            return Incoming(mid, psid, text=str(quick["payload"]))
        for attachment in message.get("attachments") or []:
            if not isinstance(attachment, dict) or attachment.get("type") != "image":
                continue
            payload = attachment.get("payload")
            if not isinstance(payload, dict) or payload.get("sticker_id"):
                continue  # a sticker (the thumbs-up is one) is not a receipt
            url = payload.get("url")
            if isinstance(url, str) and url:
                return Incoming(mid, psid, text=str(message.get("text") or ""), image_url=url)
        return Incoming(mid, psid, text=str(message.get("text") or ""))
    postback = event.get("postback")
    if isinstance(postback, dict):
        key = str(postback.get("mid") or _event_key("postback", psid, event))
        referral = postback.get("referral")
        if isinstance(referral, dict) and referral.get("ref"):
            # Get Started pressed from an m.me/<page>?ref=CODE link.
            return Incoming(key, psid, text=f"/start {referral['ref']}")
        return Incoming(key, psid, text=str(postback.get("payload") or ""))
    referral = event.get("referral")
    if isinstance(referral, dict) and referral.get("ref"):
        key = _event_key("referral", psid, event)
        return Incoming(key, psid, text=f"/start {referral['ref']}")
    return None


async def _handle(svc: Services, channel: MessengerChannel, incoming: Incoming) -> list[Reply]:
    # Messenger has no slash-command menu: people type words, as on WhatsApp ("ORDERS").
    sender = Sender(PLATFORM, incoming.psid, supports_cards=True, keywords=True)
    upload = None
    if incoming.image_url:
        url = incoming.image_url

        async def fetch() -> bytes:
            return await channel.download_attachment(url)

        name = url.split("?", 1)[0].rsplit("/", 1)[-1][:100] or "receipt.jpg"
        upload = IncomingFile(name=name, mime_type="image/jpeg", size=0, fetch=fetch)
    update = inbound.Inbound(sender, key=incoming.key, text=incoming.text, file=upload)
    return (await inbound.handle(svc, update)).replies


async def send_replies(channel: MessengerChannel, answers: list[tuple[str, list[Reply]]]) -> None:
    """Each person's replies in order; one that cannot go stops that person's rest."""
    for psid, replies in answers:
        try:
            for reply in replies:
                await channel.send_reply(
                    psid, render(reply.text, reply.buttons, reply.image_url, reply.cards)
                )
        except ChannelError as exc:
            log.warning("messenger reply dropped: %s", exc.code)


# -- receipts ------------------------------------------------------------------------------


def _moment(value: Any) -> datetime | None:
    """Meta's watermark: milliseconds since the epoch."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


async def _delivered(svc: Services, psid: str, delivery: dict[str, Any]) -> None:
    for mid in delivery.get("mids") or []:
        if isinstance(mid, str) and mid:
            await outbox.record_receipt(
                svc.pool, PLATFORM, status="delivered", provider_message_id=mid
            )
    watermark = _moment(delivery.get("watermark"))
    if watermark is not None:
        await _up_to(svc, psid, watermark, "delivered")


async def _read(svc: Services, psid: str, read: dict[str, Any]) -> None:
    watermark = _moment(read.get("watermark"))
    if watermark is not None:
        await _up_to(svc, psid, watermark, "read")


async def _up_to(svc: Services, psid: str, watermark: datetime, status: str) -> None:
    """Everything sent to this person before the watermark reached ``status``, never back."""
    before = ("sent",) if status == "delivered" else ("sent", "delivered")
    await svc.pool.execute(
        """
        UPDATE messages
           SET status = $3,
               delivered_at = coalesce(delivered_at, now()),
               read_at = CASE WHEN $3 = 'read' THEN coalesce(read_at, now()) ELSE read_at END,
               updated_at = now()
         WHERE channel = $1 AND address = $2 AND status = ANY($4::text[]) AND sent_at <= $5
        """,
        PLATFORM,
        psid,
        status,
        list(before),
        watermark,
    )


def openapi_paths(settings: Settings) -> dict[str, Any]:
    """This webhook in the service's OpenAPI document: Meta's handshake and its events."""
    item = openapi.webhook(
        "Messenger events (X-Hub-Signature-256 with the app secret); each mid handled once",
        openapi.JSON,
        {
            "200": "Handled; replies go out through the Send API",
            "400": "Not a Messenger page event",
            "403": "Missing or wrong X-Hub-Signature-256",
        },
    )
    item["get"] = openapi.meta_handshake(
        "Meta's verification handshake: hub.challenge echoed for our verify token"
    )
    return {WEBHOOK_PATH: item}


def routes(settings: Settings) -> list[BaseRoute]:
    return [
        Route(WEBHOOK_PATH, verify, methods=["GET"]),
        Route(WEBHOOK_PATH, events, methods=["POST"]),
    ]
