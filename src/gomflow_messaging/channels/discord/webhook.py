"""POST /webhook/discord: Discord interactions, verified, and answered in the HTTP response.

Discord posts every slash command, button press and modal submission here (the
application's "Interactions Endpoint URL"), signed with Ed25519. The signature is checked
on the raw body before anything is parsed, and a timestamp more than five minutes away
is refused, so a captured request cannot be replayed.

Decision: we answer interactions ourselves from the raw JSON instead of handing them to
hikari's InteractionServer and a lightbulb client. Lightbulb answers over a second REST
call (``/interactions/{id}/{token}/callback``) instead of in this response, waits 5 s and
then gives hikari's 500 for anything it does not recognise (an unknown command, a button
from before a restart), and keeps modal and menu handlers in process memory, which a
second replica does not have. None of that can promise Discord's 3-second rule. So:

- the bot (`workflows/chat/`) gets the command line, the button's action (its custom id,
  fixed, so buttons keep working after a restart and on any replica) or the form values;
- if it answers within ``DISCORD_ANSWER_DEADLINE_SECONDS`` (2 s), the first reply is this
  response (type 4 message, or type 9 modal for a form) and the others follow through the
  interaction's webhook; otherwise we answer type 5 (deferred) and fill it in later. A
  form after a defer becomes a button that asks again, because a modal can only be the
  first answer;
- anything we cannot handle gets a short ephemeral answer at once.

hikari still does the Discord side: its builders make the message payloads and its REST
client sends follow-ups, DMs and the command registration (`discord-commands sync`).
Lightbulb is not used: the commands come from the bot's menu, not from classes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeGuard

import hikari
from hikari.impl import InteractionMessageBuilder, ModalActionRowBuilder
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gomflow_messaging import ratelimit
from gomflow_messaging.api import openapi
from gomflow_messaging.api.common import parse_json, services
from gomflow_messaging.channels import inbound
from gomflow_messaging.channels.base import Button
from gomflow_messaging.channels.discord import WEBHOOK_PATH
from gomflow_messaging.channels.discord.channel import DiscordChannel
from gomflow_messaging.channels.discord.render import (
    EPHEMERAL,
    Rendered,
    render_cards,
    render_text,
)
from gomflow_messaging.errors import ApiError, ChannelError
from gomflow_messaging.i18n import gettext, label, normalize_locale
from gomflow_messaging.workflows.chat.types import Form, IncomingFile, Reply, Sender

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW_SECONDS = 300

# Interaction types Discord sends, and the answer types we give.
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5
PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
AUTOCOMPLETE_RESULT = 8
MODAL = 9

ATTACHMENT_OPTION = 11  # an application command option of type ATTACHMENT

MAX_MODAL_TITLE = 45
MAX_INPUT_LABEL = 45
MAX_PLACEHOLDER = 100
MAX_INPUTS = 5
MAX_CHOICES = 25


@functools.lru_cache(maxsize=4)
def _verify_key(public_key_hex: str) -> VerifyKey:
    return VerifyKey(bytes.fromhex(public_key_hex))


def verify(public_key_hex: str, body: bytes, signature: str, timestamp: str, now: float) -> None:
    """Ed25519 over timestamp + raw body, then freshness; raises ApiError(401)."""

    def refuse(message: str) -> ApiError:
        return ApiError(401, "invalid_signature", message)

    if not signature or not timestamp:
        raise refuse("X-Signature-Ed25519 and X-Signature-Timestamp are required.")
    try:
        _verify_key(public_key_hex).verify(timestamp.encode() + body, bytes.fromhex(signature))
    except (ValueError, BadSignatureError):
        raise refuse("The request signature does not match.") from None
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise refuse("X-Signature-Timestamp is not a Unix time.") from None
    if abs(now - sent_at) > MAX_CLOCK_SKEW_SECONDS:
        raise refuse("The request is too old (or from the future); it may be a replay.")


def _channel(svc: Services) -> DiscordChannel:
    channel = svc.channels.get("discord")
    if not isinstance(channel, DiscordChannel):
        raise ApiError(404, "discord_disabled", "The Discord channel is not enabled.")
    return channel


async def interactions(request: Request) -> Response:
    svc = services(request)
    channel = _channel(svc)
    # MAX_DISCORD_INTERACTION_BYTES bounds the body before it is read (api/limits.py).
    body = await request.body()
    verify(
        svc.settings.discord_public_key,
        body,
        request.headers.get("x-signature-ed25519", ""),
        request.headers.get("x-signature-timestamp", ""),
        time.time(),
    )
    try:
        payload = parse_json(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "The body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "bad_request", "The body is not an interaction.")
    if payload.get("type") == PING:
        return JSONResponse({"type": PONG})  # a replayed ping gets a pong: it changes nothing
    interaction = Interaction(svc, channel, payload)
    if payload.get("type") in (APPLICATION_COMMAND, MESSAGE_COMPONENT, MODAL_SUBMIT):
        # Signed is not once: whoever captured an interaction may post it again within the
        # five minutes the timestamp allows. Its id is unique, so each takes effect once.
        interaction_id = payload.get("id")
        if not _snowflake(interaction_id):
            return JSONResponse(interaction.expired())
        async with inbound.once(svc, "discord", interaction_id) as fresh:
            answer = await interaction.answer() if fresh else interaction.handled_already()
        return JSONResponse(answer)
    return JSONResponse(await interaction.answer())


def _snowflake(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _flat_options(options: Any) -> list[dict[str, Any]]:
    """A command's options with its sub-commands' options, as a flat list."""
    flat: list[dict[str, Any]] = []
    for option in options if isinstance(options, list) else []:
        if isinstance(option, dict):
            flat.append(option)
            flat += _flat_options(option.get("options"))
    return flat


class Interaction:
    """One interaction: parse it, let the bot answer, render the answer for Discord."""

    def __init__(self, svc: Services, channel: DiscordChannel, payload: dict[str, Any]) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.channel = channel
        self.payload = payload
        # Signed by Discord, yet read defensively: a field of the wrong shape is absent.
        self.data = _object(payload.get("data"))
        self.token = str(payload.get("token", ""))
        self.member = _object(payload.get("member"))
        self.user = _object(self.member.get("user")) or _object(payload.get("user"))
        self.locale = normalize_locale(payload.get("locale") or payload.get("guild_locale"))
        self.in_guild = bool(payload.get("guild_id"))

    @property
    def sender(self) -> Sender:
        roles = self.member.get("roles") or []
        role = self.settings.discord_gom_role_id
        return Sender(
            channel="discord",
            address=str(self.user.get("id", "")),
            name=str(self.user.get("global_name") or self.user.get("username") or "")[:100],
            language=str(self.payload.get("locale") or ""),
            supports_forms=True,
            gom_role=bool(role) and role in roles,
            # In a server the person is member.user; the channel only says where (private
            # answers there are ephemeral).
            chat=str(self.payload.get("channel_id") or self.payload.get("guild_id"))
            if self.in_guild
            else "",
            supports_cards=True,
        )

    # -- answering -----------------------------------------------------------------------

    def expired(self) -> dict[str, Any]:
        return self.notice(gettext(self.locale, "This has expired. Send /help to start again."))

    def handled_already(self) -> dict[str, Any]:
        """The answer to a replay: private, and it changes nothing."""
        return self.notice(gettext(self.locale, "This was handled already."))

    async def answer(self) -> dict[str, Any]:
        kind = self.payload.get("type")
        if kind == AUTOCOMPLETE:
            return {"type": AUTOCOMPLETE_RESULT, "data": {"choices": await self._choices()}}
        if not self.user.get("id") or not self.token:
            return self.expired()
        line = ""
        if kind == APPLICATION_COMMAND:
            line = self._command_line()
        elif kind == MESSAGE_COMPONENT:
            line = str(self.data.get("custom_id", ""))
        sender = self.sender
        # Over a limit the answer is the same private notice each time, not silence:
        # Discord shows an unanswered interaction as failed, and this one costs nothing.
        refused = await inbound.admit(self.svc, sender, line, answer_silent=True)
        if refused is not None:
            return self.notice(refused.replies[0].text)
        if kind == APPLICATION_COMMAND:
            if not self.settings.enable_slash_commands:
                return self.notice(
                    gettext(self.locale, "Slash commands are turned off here for now.")
                )
            origin = line
            # ``/pay receipt:<file> [reference]``: the payment-proof flow.
            update = inbound.Inbound(sender, text=origin, file=self._attachment())
        elif kind == MESSAGE_COMPONENT:
            if not self.settings.enable_button_interactions:
                return self.notice(gettext(self.locale, "Buttons are turned off here for now."))
            origin = line
            update = inbound.Inbound(sender, text=origin)
        elif kind == MODAL_SUBMIT:
            if not self.settings.enable_modal_interactions:
                return self.notice(gettext(self.locale, "Forms are turned off here for now."))
            origin = ""
            form = (str(self.data.get("custom_id", "")), self._form_values())
            update = inbound.Inbound(sender, form=form)
        else:
            return self.expired()

        task = asyncio.create_task(self._run(update))
        done, _pending = await asyncio.wait(
            {task}, timeout=self.settings.discord_answer_deadline_seconds
        )
        if task in done:
            replies = task.result()
            first = replies[0] if replies else Reply(gettext(self.locale, "Done."), private=True)
            if first.form is not None and self.settings.enable_modal_interactions:
                answer = self._modal(first.form)
                later = self._render_all(replies[1:], origin)
            else:
                parts = self._render_all([first, *replies[1:]], origin)
                answer, later = self._message(CHANNEL_MESSAGE, parts[0]), parts[1:]
            if later:
                self.channel.spawn(self._follow_up(later))
            return answer
        self.channel.spawn(self._finish_deferred(task, origin))
        # Deferred answers in a server are private: what comes may be the buyer's own data.
        return {
            "type": DEFERRED_CHANNEL_MESSAGE,
            "data": {"flags": EPHEMERAL if self.in_guild else 0},
        }

    async def _choices(self) -> list[dict[str, str]]:
        """Suggestions for the option being typed, answered in the response within 3 s.

        ``order``: open orders whose title or code matches; ``reference``: the invoking
        person's own references only. Too slow or failing, or past the person's
        autocomplete budget (ratelimit.py): no suggestions, never an error.
        """
        focused = next(
            (o for o in _flat_options(self.data.get("options")) if o.get("focused")), None
        )
        if focused is None or not self.user.get("id"):
            return []
        allowed = await ratelimit.hit(
            self.svc.queue.redis, self.settings, "autocomplete", "discord", str(self.user["id"])
        )
        if allowed != "ok":
            return []  # past the person's budget: no suggestions, and no search
        typed = str(focused.get("value") or "")
        bot = self.svc.bot
        found: Awaitable[list[tuple[str, str]]]
        if focused.get("name") == "order":
            found = bot.order_choices(typed, MAX_CHOICES)
        elif focused.get("name") == "reference":
            unpaid = self.data.get("name") == "pay"
            found = bot.reference_choices(self.sender, typed, unpaid_only=unpaid, limit=MAX_CHOICES)
        else:
            return []
        try:
            async with asyncio.timeout(self.settings.discord_answer_deadline_seconds):
                pairs = await found
        except Exception:
            log.warning("discord autocomplete gave no choices: %s", self._describe(), exc_info=True)
            return []
        return [{"name": name[:100] or value, "value": value[:100]} for name, value in pairs][
            :MAX_CHOICES
        ]

    async def _run(self, update: inbound.Inbound) -> list[Reply]:
        """The pipeline's answer; Discord never retries, so a dependency away is an apology."""
        try:
            return (await inbound.run(self.svc, update)).replies
        except inbound.Unavailable:
            return [inbound.apology(self.locale)]

    async def _finish_deferred(self, task: asyncio.Task[list[Reply]], origin: str) -> None:
        parts = self._render_all(await task, origin) or [
            Rendered(content=gettext(self.locale, "Done."))
        ]
        try:
            await self.channel.edit_original(self.token, parts[0])
        except ChannelError as exc:
            log.warning("could not fill in a deferred Discord answer: %s", exc.message)
            return
        await self._follow_up(parts[1:])

    async def _follow_up(self, parts: list[Rendered]) -> None:
        for part in parts:
            try:
                await self.channel.follow_up(self.token, part)
            except ChannelError as exc:
                log.warning("Discord follow-up not sent: %s", exc.message)
                return

    # -- parsing -------------------------------------------------------------------------

    def _command_line(self) -> str:
        """``/status reference:PH-1`` -> "/status PH-1" (sub-command names included)."""
        words = [f"/{self.data.get('name', '')}"]

        def walk(options: list[dict[str, Any]]) -> None:
            for option in options:
                if option.get("options") is not None and "value" not in option:
                    words.append(str(option.get("name", "")))
                    walk(option["options"])
                elif option.get("type") == ATTACHMENT_OPTION:
                    continue  # an attachment id: the file goes to the bot separately
                elif option.get("value") not in (None, ""):
                    words.append(str(option["value"]).strip())

        walk(self.data.get("options") or [])
        return " ".join(w for w in words if w)

    def _attachment(self) -> IncomingFile | None:
        """The command's attachment option, as a file the bot can fetch from Discord's CDN."""
        ids = [
            str(option.get("value"))
            for option in self.data.get("options") or []
            if option.get("type") == ATTACHMENT_OPTION
        ]
        resolved = (self.data.get("resolved") or {}).get("attachments") or {}
        found = resolved.get(ids[0]) if ids else None
        if not isinstance(found, dict) or not found.get("url"):
            return None
        size = found.get("size")
        return IncomingFile(
            name=str(found.get("filename") or "receipt")[:200],
            mime_type=str(found.get("content_type") or ""),
            size=size if isinstance(size, int) and size >= 0 else 0,
            fetch=functools.partial(
                self.channel.download_attachment,
                str(found["url"]),
                self.settings.max_file_size,
            ),
        )

    def _form_values(self) -> dict[str, str]:
        """Text inputs of a modal: in action rows, or in labels (Discord's newer layout)."""
        values: dict[str, str] = {}

        def walk(components: list[dict[str, Any]]) -> None:
            for component in components:
                if "custom_id" in component and "value" in component:
                    values[str(component["custom_id"])] = str(component.get("value") or "")
                if isinstance(component.get("component"), dict):
                    walk([component["component"]])
                walk(component.get("components") or [])

        walk(self.data.get("components") or [])
        return values

    def _describe(self) -> str:
        what = self.data.get("name") or self.data.get("custom_id") or ""
        return f"type {self.payload.get('type')} {what}"

    # -- rendering -----------------------------------------------------------------------

    def notice(self, text: str) -> dict[str, Any]:
        return self._message(CHANNEL_MESSAGE, Rendered(content=text, ephemeral=True))

    def _message(self, kind: int, part: Rendered) -> dict[str, Any]:
        builder = InteractionMessageBuilder(
            kind,
            part.content or hikari.UNDEFINED,
            flags=EPHEMERAL if part.ephemeral else hikari.UNDEFINED,
            embeds=list(part.embeds) or hikari.UNDEFINED,
            components=list(part.rows) or hikari.UNDEFINED,
            user_mentions=False,
            role_mentions=False,
            mentions_everyone=False,
        )
        payload, _files = builder.build(self.channel.entity_factory)
        return dict(payload)

    def _modal(self, form: Form) -> dict[str, Any]:
        # hikari 2.6's InteractionModalBuilder.build() nests each row as a (payload, files)
        # pair, which Discord rejects; the rows are built one by one instead.
        rows = []
        for field in form.fields[:MAX_INPUTS]:
            row = ModalActionRowBuilder().add_text_input(
                field.id,
                field.label[:MAX_INPUT_LABEL],
                style=hikari.TextInputStyle.PARAGRAPH
                if field.multiline
                else hikari.TextInputStyle.SHORT,
                placeholder=field.placeholder[:MAX_PLACEHOLDER] or hikari.UNDEFINED,
                required=field.required,
                max_length=max(1, min(field.max_length, 4000)),
            )
            rows.append(dict(row.build()[0]))
        return {
            "type": MODAL,
            "data": {
                "custom_id": form.id,
                "title": form.title[:MAX_MODAL_TITLE],
                "components": rows,
            },
        }

    def _render_all(self, replies: list[Reply], origin: str) -> list[Rendered]:
        parts: list[Rendered] = []
        for reply in replies:
            buttons = reply.buttons
            text = reply.text
            if reply.form is not None:
                # Only a first answer can be a modal; here a button asks for the form again.
                if self.settings.enable_modal_interactions and 0 < len(origin) <= 100:
                    buttons = (
                        (Button(label(self.locale, "Open the form"), action=origin),),
                        *buttons,
                    )
                else:
                    off = gettext(self.locale, "Forms are turned off here for now.")
                    text = f"{text}\n{off}"
            if reply.cards:
                parts += render_cards(text, reply.cards, buttons, ephemeral=reply.private)
            else:
                parts += render_text(
                    text, buttons, image_url=reply.image_url, ephemeral=reply.private
                )
        return parts


def routes(settings: Settings) -> list[BaseRoute]:
    return [Route(WEBHOOK_PATH, interactions, methods=["POST"])]


def openapi_paths(settings: Settings) -> dict[str, Any]:
    """This webhook in the service's OpenAPI document."""
    return {
        WEBHOOK_PATH: openapi.webhook(
            "Discord interactions (Ed25519 X-Signature-Ed25519 over timestamp + body)",
            openapi.JSON,
            {
                "200": "The interaction's answer",
                "400": "Not an interaction",
                "401": "Signature missing, wrong, or too old",
            },
        )
    }
