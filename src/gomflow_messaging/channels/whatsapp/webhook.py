"""Twilio's webhooks: incoming WhatsApp messages (answered in TwiML) and status callbacks.

Both verify ``X-Twilio-Signature`` over ``PUBLIC_BASE_URL`` + path + query and the form
fields before anything else: a forged request gets 403 and changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl
from uuid import UUID
from xml.etree import ElementTree

from starlette.datastructures import ImmutableMultiDict
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from gomflow_messaging import outbox
from gomflow_messaging.api import openapi
from gomflow_messaging.api.common import services
from gomflow_messaging.channels import inbound
from gomflow_messaging.channels.base import split_text
from gomflow_messaging.channels.whatsapp import STATUS_PATH
from gomflow_messaging.channels.whatsapp.channel import (
    FAILURE_REASONS,
    PREFIX,
    TWILIO_API,
    WhatsAppChannel,
)
from gomflow_messaging.channels.whatsapp.render import render
from gomflow_messaging.errors import ApiError, PermanentError, ValidationFailed
from gomflow_messaging.phones import normalize_phone
from gomflow_messaging.workflows.chat.text import whole_number
from gomflow_messaging.workflows.chat.types import IncomingFile, Reply, Sender

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from gomflow_messaging.settings import Settings
    from gomflow_messaging.workflows.chat.router import Bot

log = logging.getLogger(__name__)

#: Twilio's statuses we record; the rest (queued, accepted, sending, ...) are ours already.
_RECORDED = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",  # the reason says which
}


async def _verified_form(request: Request) -> ImmutableMultiDict[str, str]:
    """The form fields, once the signature proves Twilio sent them; 403 otherwise."""
    settings = services(request).settings
    # MAX_TWILIO_FORM_BYTES bounds the body before it is read (api/limits.py).
    raw = await request.body()
    form = ImmutableMultiDict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    url = settings.public_base_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    signature = request.headers.get("x-twilio-signature", "")
    token = settings.twilio_auth_token
    if (
        token is None
        or not signature
        or not RequestValidator(token.get_secret_value()).validate(url, form, signature)
    ):
        # Every request failing here usually means PUBLIC_BASE_URL is not the URL Twilio calls.
        log.warning("refused a Twilio webhook with a bad signature for %s", url)
        raise ApiError(403, "invalid_signature", "The Twilio signature does not match.")
    # Postgres stores no NUL character, and Twilio never sends one: drop it once verified.
    return ImmutableMultiDict(
        [(key, value.replace("\x00", "")) for key, value in form.multi_items()]
    )


def _phone(value: str) -> str:
    """``whatsapp:+639171234567`` -> ``+639171234567``, as contacts store it."""
    raw = value.strip().removeprefix(PREFIX)
    try:
        return normalize_phone(raw)
    except ValueError:
        digits = raw.lstrip("+")
        if digits.isdigit() and 6 <= len(digits) <= 15:
            return "+" + digits  # a number outside PH/MY that WhatsApp vouches for
        raise


async def incoming(request: Request) -> Response:
    form = await _verified_form(request)
    svc = services(request)
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or ""
    try:
        address = _phone(form.get("From", ""))
    except ValueError:
        address = ""
    if not sid or not address:
        raise ValidationFailed(
            {name: "is required" for name, ok in (("MessageSid", sid), ("From", address)) if not ok}
        )
    sender = Sender("whatsapp", address, form.get("ProfileName", "")[:100], keywords=True)
    channel = svc.channels["whatsapp"]
    assert isinstance(channel, WhatsAppChannel)
    upload = _attachment(channel, form)
    # A tap on a template's quick-reply button carries its payload.
    text = form.get("ButtonPayload") or form.get("Body", "")
    numbered = False

    async def act() -> list[Reply]:
        nonlocal numbered
        if upload is not None:
            # A receipt (the caption may name the reference): the payment-proof flow.
            replies = await svc.bot.file(sender, upload, form.get("Body", ""))
        else:
            chosen = (
                text if form.get("ButtonPayload") else await _chosen(svc.bot, channel, sender, text)
            )
            replies = await svc.bot.handle(sender, chosen)
        # Numbers only when the next message will be read as one.
        numbered = not await svc.bot.flow_waiting(sender)
        return replies

    handled = await inbound.handle(svc, inbound.Inbound(sender, key=sid, text=text), act)
    response, actions = _twiml(handled.replies, handled.locale, numbered=numbered)
    if handled.ran:
        # After the bot acted: a failure here must not make Twilio's retry act twice.
        await channel.choices.remember(address, actions)
    return response


async def _chosen(bot: Bot, channel: WhatsAppChannel, sender: Sender, text: str) -> str:
    """The action of the choice a bare number picks, else the text as typed.

    "2", " 2 ", "2." and digits of other scripts (full-width) pick. A number with no list in
    view, or past its end, reaches the bot as typed; so does any number while a flow waits
    for an answer (the submit flow's quantity).
    """
    number = whole_number(text.strip().removesuffix("."))
    if not number:
        return text
    action = await channel.choices.action(sender.address, number)
    if action is None or await bot.flow_waiting(sender):
        return text
    return action


def _attachment(
    channel: WhatsAppChannel, form: ImmutableMultiDict[str, str]
) -> IncomingFile | None:
    """The message's first attachment, fetched from Twilio with our credentials on demand."""
    count = form.get("NumMedia", "0")
    url = form.get("MediaUrl0", "")
    if not count.isdigit() or int(count) < 1 or not url:
        return None

    async def fetch() -> bytes:
        # Our account's credentials go to Twilio's API and nowhere else.
        if not url.startswith(TWILIO_API + "/"):
            raise PermanentError("attachment is not on Twilio's API", code="untrusted_url")
        _content_type, data = await channel.download_media(url)
        return data

    return IncomingFile(
        name=url.rsplit("/", 1)[-1][:100],
        mime_type=form.get("MediaContentType0", ""),
        size=0,  # Twilio does not say; download_media stops at MAX_FILE_SIZE
        fetch=fetch,
    )


def _twiml(
    replies: list[Reply], locale: str, *, numbered: bool = False
) -> tuple[Response, tuple[str, ...]]:
    """One <Message> per reply (and per 1600 characters), and the actions of its choices.

    Buttons are numbered choices, counted on across the replies of one answer so that each
    number means one button, or (``numbered`` false) lines saying what to reply.
    """
    root = ElementTree.Element("Response")
    actions: tuple[str, ...] = ()
    for reply in replies:
        rendered = render(
            reply.text, reply.buttons, locale, numbered=numbered, first=len(actions) + 1
        )
        actions += rendered.actions
        parts = split_text(rendered.text, WhatsAppChannel.max_text_length) or [""]
        for index, part in enumerate(parts):
            message = ElementTree.SubElement(root, "Message")
            if index == 0 and reply.image_url:
                ElementTree.SubElement(message, "Body").text = part
                ElementTree.SubElement(message, "Media").text = reply.image_url
            else:
                message.text = part
    body = ElementTree.tostring(root, encoding="unicode", xml_declaration=False)
    xml = '<?xml version="1.0" encoding="UTF-8"?>' + body
    return Response(xml, media_type="application/xml"), actions


async def status_callback(request: Request) -> Response:
    form = await _verified_form(request)
    svc = services(request)
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    twilio_status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if not sid or not twilio_status:
        raise ValidationFailed({"MessageSid": "and MessageStatus are required"})
    status = _RECORDED.get(twilio_status)
    if status is None:
        return Response(status_code=204)
    try:
        message_id = _uuid(request.query_params.get("message_id"))
    except ValueError:
        raise ValidationFailed({"message_id": "must be a UUID"}) from None
    code = form.get("ErrorCode", "")
    reason, gone = (None, False)
    error = None
    if status == "failed":
        number = int(code) if code.isdigit() else 0
        reason, gone = FAILURE_REASONS.get(number, (twilio_status, False))
        error = f"Twilio {twilio_status}" + (f", error {code}" if code else "")
        if form.get("ErrorMessage"):
            error += f": {form['ErrorMessage'][:300]}"
    row = await outbox.record_receipt(
        svc.pool,
        "whatsapp",
        status=status,
        provider_message_id=sid,
        message_id=message_id,
        reason=reason,
        error=error,
    )
    if row is not None and gone:
        await outbox.mark_address_unreachable(svc.pool, "whatsapp", row["address"], reason or "")
    return Response(status_code=204)


def _uuid(value: str | None) -> UUID | None:
    return UUID(value) if value else None


def routes(settings: Settings) -> list[BaseRoute]:
    return [
        Route(settings.webhook_path, incoming, methods=["POST"]),
        Route(STATUS_PATH, status_callback, methods=["POST"]),
    ]


def openapi_paths(settings: Settings) -> dict[str, Any]:
    """These webhooks in the service's OpenAPI document."""
    form = "application/x-www-form-urlencoded"
    return {
        settings.webhook_path: openapi.webhook(
            "Twilio: incoming WhatsApp messages (X-Twilio-Signature); answered in TwiML",
            form,
            {
                "200": "TwiML (application/xml); each MessageSid handled once",
                "403": "Signature does not match",
                "422": "MessageSid or From missing",
            },
        ),
        STATUS_PATH: openapi.webhook(
            "Twilio status callbacks (X-Twilio-Signature): sent, delivered, read, failed",
            form,
            {
                "204": "Recorded (or not ours to record)",
                "403": "Signature does not match",
                "422": "MessageSid or MessageStatus missing",
            },
        ),
    }
