"""POST /webhook/telegram: check the secret, drop repeats, parse with aiogram, answer via the bot.

The secret header is compared before the body is read, so a forged request changes
nothing. Each update id is handled once (`inbound_updates`). An aiogram router hands
messages, button presses and inline queries to `workflows.chat`; the replies are answers,
not notifications, so they go straight to the Bot API instead of through the outbox: a
single reply rides in the webhook response itself, several are sent in order after it.
Failures follow the chat pipeline's one policy (channels/inbound.py): Redis or Postgres
away answers 503 and Telegram resends the update; a bug is logged and answered 200, or
Telegram would resend the update for hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram import Dispatcher, Router
from aiogram.methods import AnswerCallbackQuery, AnswerInlineQuery, SendMessage, TelegramMethod
from aiogram.types import (
    CallbackQuery,
    Chat,
    ChatMemberUpdated,
    InlineQuery,
    InlineQueryResultArticle,
    InlineQueryResultUnion,
    InputTextMessageContent,
    Message,
    Update,
    User,
)
from aiogram.types.update import UpdateTypeLookupError
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gomflow_messaging.api import openapi
from gomflow_messaging.api.common import parse_json, services
from gomflow_messaging.channels import inbound
from gomflow_messaging.channels.telegram import WEBHOOK_PATH
from gomflow_messaging.channels.telegram.channel import TelegramChannel, keyboard
from gomflow_messaging.errors import ApiError, PermanentError, TransientError
from gomflow_messaging.i18n import gettext, normalize_locale
from gomflow_messaging.workflows.chat.types import (
    DEEP_LINK_COMMANDS,
    IncomingFile,
    Reply,
    Sender,
)

if TYPE_CHECKING:
    from aiogram import Bot as AiogramBot
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"
# A reply refused with a short 429 is tried once more after the wait; a longer wait drops it
# (the person can ask again; answers are not worth holding a request open for). Any other
# failure is not tried again: after a timeout or a 5xx the reply may well have arrived, and
# a reply shown twice is worse than one the person asks for again.
REPLY_RETRY_LIMIT = 5.0
_DISPATCHER = "telegram.dispatcher"


@dataclass
class Answer:
    """What one update produced: a call for the webhook response, and replies to send after."""

    response: TelegramMethod[Any] | None = None
    chat_id: int | str = 0
    later: list[Reply] = field(default_factory=list)
    #: Answers for the person alone (written in a group), sent to their private chat.
    person: int = 0
    private: list[Reply] = field(default_factory=list)
    #: Said in the group instead when the person has no private chat with the bot.
    fallback: str = ""


# -- the route -----------------------------------------------------------------------------


async def webhook(request: Request) -> Response:
    svc = services(request)
    expected = svc.settings.telegram_webhook_secret
    supplied = request.headers.get(SECRET_HEADER, "")
    if expected is None or not secrets.compare_digest(
        supplied.encode(), expected.get_secret_value().encode()
    ):
        raise ApiError(401, "unauthorized", "Missing or wrong X-Telegram-Bot-Api-Secret-Token.")
    # MAX_TELEGRAM_UPDATE_BYTES bounds the body before it is read (api/limits.py).
    raw = await request.body()
    try:
        data = parse_json(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "The body is not JSON.") from None
    update_id = data.get("update_id") if isinstance(data, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise ApiError(400, "bad_request", "The body is not a Telegram update.")
    channel = svc.channels["telegram"]
    assert isinstance(channel, TelegramChannel)
    async with inbound.once(svc, "telegram", str(update_id)) as fresh:
        answered = await _answer(svc, channel, data, update_id) if fresh else None
    if answered is None:
        return JSONResponse({})
    answer, body = answered
    task = BackgroundTask(send_after, channel, answer)
    return JSONResponse(body, background=task if answer.later or answer.private else None)


async def _answer(
    svc: Services, channel: TelegramChannel, data: dict[str, Any], update_id: int
) -> tuple[Answer, dict[str, Any]] | None:
    """The update through the router, and the response's body; None: nothing to answer."""
    try:
        update = Update.model_validate(data, context={"bot": channel.bot})
        try:
            update.event_type  # noqa: B018
        except UpdateTypeLookupError:
            return None  # a kind of update newer than this aiogram: nothing to do
        result = await _dispatcher(svc).feed_update(
            channel.bot, update, services=svc, channel=channel
        )
        if not isinstance(result, Answer):  # an update kind we do not handle
            return None
        response = result.response
        body = method_json(channel.bot, response) if response is not None else {}
    except inbound.UNAVAILABLE:
        raise  # the pipeline's policy: forgotten, answered 503, retried by Telegram
    except Exception:
        # A bug: logged, and the update stays handled (Telegram would resend it for hours).
        log.exception("telegram update %s failed", update_id)
        return None
    return result, body


def method_json(bot: AiogramBot, method: TelegramMethod[Any]) -> dict[str, Any]:
    """A Bot API call as the JSON a webhook response may carry."""
    files: dict[str, Any] = {}
    body: dict[str, Any] = {"method": method.__api_method__}
    for key, value in method.model_dump(warnings=False).items():
        prepared = bot.session.prepare_value(value, bot=bot, files=files, _dumps_json=False)
        if prepared is not None:
            body[key] = prepared
    if files:
        raise ValueError("a webhook response cannot carry files")
    return body


async def send_replies(channel: TelegramChannel, chat_id: int | str, replies: list[Reply]) -> bool:
    """Send replies in order; stop at the first one that cannot go, so none arrives out of turn.

    False when Telegram refused one for good (blocked, or a person who never started the bot).
    """
    for reply in replies:
        for attempt in (1, 2):
            try:
                await channel.send_reply(chat_id, reply.text, reply.buttons, reply.image_url)
                break
            except TransientError as exc:
                wait = exc.retry_after or 0.0
                refused = exc.code == "rate_limited" and wait <= REPLY_RETRY_LIMIT
                if attempt == 2 or not refused:
                    log.warning("telegram reply to %s dropped: %s", chat_id, exc.code)
                    return True
                await asyncio.sleep(wait)
            except PermanentError as exc:
                log.warning("telegram reply to %s refused: %s", chat_id, exc.code)
                return False
    return True


async def send_after(channel: TelegramChannel, answer: Answer) -> None:
    """The replies that did not ride in the webhook response: the group's, then the person's."""
    if answer.later:
        await send_replies(channel, answer.chat_id, answer.later)
    if answer.private and not await send_replies(channel, answer.person, answer.private):
        await send_replies(channel, answer.chat_id, [Reply(answer.fallback)])


# -- the router ----------------------------------------------------------------------------


def _dispatcher(svc: Services) -> Dispatcher:
    """One dispatcher per app (a router can belong to only one), built on first use."""
    dispatcher = svc.extras.get(_DISPATCHER)
    if dispatcher is None:
        router = Router(name="gomflow")
        router.message.register(on_message)
        router.callback_query.register(on_callback_query)
        router.inline_query.register(on_inline_query)
        router.my_chat_member.register(on_my_chat_member)
        # Conversation state lives in Redis through workflows.chat; aiogram keeps none.
        dispatcher = Dispatcher(disable_fsm=True)
        dispatcher.include_router(router)
        svc.extras[_DISPATCHER] = dispatcher
    assert isinstance(dispatcher, Dispatcher)
    return dispatcher


def _sender(user: User, chat: Chat | None = None) -> Sender:
    """The person is ``from``, never the chat: in a group every member writes from its id.

    A user's private chat with the bot has their user id, so their answers go there.
    """
    return Sender(
        channel="telegram",
        address=str(user.id),
        name=user.full_name,
        language=user.language_code or "",
        chat=str(chat.id) if chat is not None and chat.type != "private" else "",
    )


def _for_the_person(answer: Answer, user: User, replies: list[Reply], deep_link: str) -> Answer:
    """A group's answer: the private replies go to the person, with a fallback for the group."""
    answer.person = user.id
    answer.private = [r for r in replies if r.private]
    answer.fallback = gettext(
        normalize_locale(user.language_code),
        "{name}, I answer that in a private chat, so your details stay yours. Open a chat "
        "with me and press Start: {link}",
        name=user.full_name,
        link=deep_link,
    )
    return answer


async def _deep_link(channel: TelegramChannel, command: str) -> str:
    """t.me link to the bot; pressing Start there runs ``command`` when it may be carried."""
    me = await channel.me()
    link = f"https://t.me/{me.username or ''}"
    return f"{link}?start={command}" if command in DEEP_LINK_COMMANDS else link


def _command_name(text: str) -> str:
    """``/status@bot PH-1`` or a button's ``status PH-1`` -> "status"."""
    return text.split(maxsplit=1)[0].lstrip("/").partition("@")[0].lower() if text else ""


async def on_message(message: Message, services: Services, channel: TelegramChannel) -> Answer:
    user = message.from_user
    if user is None or user.is_bot:
        return Answer()
    text = message.text or message.caption or ""
    # In groups, only commands meant for us: everything else is people talking.
    if message.chat.type != "private" and not await _for_us(text, channel, services):
        return Answer()
    sender = _sender(user, message.chat)
    chat_id = message.chat.id
    refused = await inbound.admit(services, sender, text)
    if refused is not None:
        return _refusal(chat_id, refused)
    upload = _incoming_file(message, channel, services.settings.max_file_size)
    if upload is not None and not sender.in_group:
        # A receipt (the caption may name the reference): the payment-proof flow.
        update = inbound.Inbound(sender, text=message.caption or "", file=upload)
    else:
        update = inbound.Inbound(sender, text=text)
    replies = (await inbound.run(services, update)).replies
    if not sender.in_group:
        return _replies_answer(channel, chat_id, replies)
    answer = _replies_answer(channel, chat_id, [r for r in replies if not r.private])
    if any(r.private for r in replies):
        link = await _deep_link(channel, _command_name(text))
        _for_the_person(answer, user, replies, link)
    return answer


def _incoming_file(message: Message, channel: TelegramChannel, limit: int) -> IncomingFile | None:
    """A photo (its largest size) or a document, fetched through getFile when needed."""
    if message.photo:
        photo = message.photo[-1]
        file_id, name, mime, size = (
            photo.file_id,
            f"{photo.file_unique_id}.jpg",
            "image/jpeg",
            photo.file_size or 0,
        )
    elif message.document is not None:
        document = message.document
        file_id, name, mime, size = (
            document.file_id,
            document.file_name or "receipt",
            document.mime_type or "",
            document.file_size or 0,
        )
    else:
        return None

    async def fetch() -> bytes:
        return await channel.download(file_id, limit)

    return IncomingFile(name=name[:200], mime_type=mime, size=size, fetch=fetch)


async def on_callback_query(
    query: CallbackQuery, services: Services, channel: TelegramChannel
) -> Answer:
    done = AnswerCallbackQuery(callback_query_id=query.id)
    chat = query.message.chat if query.message is not None else None
    sender = _sender(query.from_user, chat)
    refused = await inbound.admit(services, sender, query.data or "")
    if refused is not None or not query.data:
        if refused is not None and refused.replies:
            done = AnswerCallbackQuery(callback_query_id=query.id, text=refused.replies[0].text)
        return Answer(response=done)
    if query.message is None:
        # A button under an inline-mode message in someone else's chat: answer in private.
        return await _inline_message_press(query, services, channel)
    chat_id = query.message.chat.id
    replies = (await inbound.run(services, inbound.Inbound(sender, text=query.data))).replies
    if not sender.in_group:
        return Answer(response=done, chat_id=chat_id, later=replies)
    # Pressed in a group: it acts as the presser, and what is theirs goes to them alone.
    public = [r for r in replies if not r.private]
    private = [r for r in replies if r.private]
    if private and await send_replies(channel, query.from_user.id, private):
        done = AnswerCallbackQuery(
            callback_query_id=query.id,
            text=gettext(
                normalize_locale(query.from_user.language_code),
                "I answered you in our private chat.",
            ),
        )
    elif private:
        # Telegram opens a t.me link given as the answer's url: the bot's chat, Start.
        link = await _deep_link(channel, _command_name(query.data))
        done = AnswerCallbackQuery(
            callback_query_id=query.id,
            text=await _open_a_chat(channel, query.from_user),
            show_alert=True,
            url=link,
        )
    return Answer(response=done, chat_id=chat_id, later=public)


async def _inline_message_press(
    query: CallbackQuery, services: Services, channel: TelegramChannel
) -> Answer:
    assert query.data is not None
    user = query.from_user
    replies = (await inbound.run(services, inbound.Inbound(_sender(user), text=query.data))).replies
    try:
        for reply in replies:
            await channel.send_reply(user.id, reply.text, reply.buttons, reply.image_url)
    except PermanentError:
        # They never opened a chat with the bot: a bot cannot write first.
        text = await _open_a_chat(channel, user)
        return Answer(
            response=AnswerCallbackQuery(callback_query_id=query.id, text=text, show_alert=True)
        )
    except TransientError as exc:
        log.warning("telegram reply to %s failed: %s", user.id, exc.code)
    return Answer(response=AnswerCallbackQuery(callback_query_id=query.id))


async def _open_a_chat(channel: TelegramChannel, user: User) -> str:
    me = await channel.me()
    return gettext(
        normalize_locale(user.language_code),
        "Open a chat with @{bot} and press Start, then try again.",
        bot=me.username or "",
    )


async def on_inline_query(
    query: InlineQuery, services: Services, channel: TelegramChannel
) -> Answer:
    """``@bot <words>`` in any chat: open orders as cards anyone there can join."""
    nothing = AnswerInlineQuery(inline_query_id=query.id, results=[], cache_time=60)
    if not services.settings.enable_inline_payments:
        return Answer(response=nothing)
    if await inbound.admit(services, _sender(query.from_user)) is not None:
        return Answer(response=nothing)
    cards = await services.bot.order_cards(_sender(query.from_user), query.query[:64], limit=20)
    results: list[InlineQueryResultUnion] = []
    for card in cards:
        title, _sep, rest = card.text.partition("\n")
        action = next((b.action for row in card.buttons for b in row if b.action), card.text)
        results.append(
            InlineQueryResultArticle(
                id=hashlib.sha256(action.encode()).hexdigest()[:32],
                title=title[:100],
                description=rest.replace("\n", " · ")[:200],
                input_message_content=InputTextMessageContent(
                    message_text=html.escape(card.text, quote=False), parse_mode="HTML"
                ),
                reply_markup=keyboard(card.buttons),
            )
        )
    # Personal: a buyer's language and time zone shape the cards.
    return Answer(
        response=AnswerInlineQuery(
            inline_query_id=query.id, results=results, cache_time=30, is_personal=True
        )
    )


async def on_my_chat_member(event: ChatMemberUpdated, services: Services) -> Answer:
    """Someone blocked or unblocked the bot (or removed it from a group, or added it back).

    Knowing at once spares failed sends; and an unblock is the only sign that a chat
    marked unreachable by a 403 may be written to again.
    """
    status = event.new_chat_member.status
    if status in ("kicked", "left"):
        reachable, reason = False, "blocked" if event.chat.type == "private" else "removed"
    elif status in ("member", "administrator", "creator"):
        reachable, reason = True, None
    else:
        return Answer()
    await services.pool.execute(
        "UPDATE contact_addresses SET reachable = $2, unreachable_reason = $3"
        " WHERE channel = 'telegram' AND address = $1",
        str(event.chat.id),
        reachable,
        reason,
    )
    return Answer()


def _replies_answer(channel: TelegramChannel, chat_id: int, replies: list[Reply]) -> Answer:
    if len(replies) == 1:
        reply = replies[0]
        methods = channel.render(chat_id, reply.text, reply.buttons, reply.image_url)
        if len(methods) == 1:
            return Answer(response=methods[0], chat_id=chat_id)
    # Several messages: all sent in order by us; the webhook response could overtake them.
    return Answer(chat_id=chat_id, later=replies)


async def _for_us(text: str, channel: TelegramChannel, services: Services) -> bool:
    if not text.startswith("/"):
        return False
    command = text.split(maxsplit=1)[0]
    _name, at, bot_name = command.partition("@")
    if not at:
        # A bare command may be another bot's: answer only the ones we have.
        return services.bot.understands(text)
    me = await channel.me()
    return bot_name.lower() == (me.username or "").lower()


def _text(chat_id: int, text: str) -> SendMessage:
    return SendMessage(chat_id=chat_id, text=html.escape(text, quote=False), parse_mode="HTML")


def _refusal(chat_id: int, refused: inbound.Handled) -> Answer:
    """Past a limit: the one polite answer, or nothing."""
    if not refused.replies:
        return Answer()
    return Answer(response=_text(chat_id, refused.replies[0].text))


def routes(settings: Settings) -> list[BaseRoute]:
    return [Route(WEBHOOK_PATH, webhook, methods=["POST"])]


def openapi_paths(settings: Settings) -> dict[str, Any]:
    """This webhook in the service's OpenAPI document."""
    return {
        WEBHOOK_PATH: openapi.webhook(
            "Telegram updates (X-Telegram-Bot-Api-Secret-Token); each update_id handled once",
            openapi.JSON,
            {
                "200": "Handled; the body may carry one Bot API call as the answer",
                "400": "Not a Telegram update",
                "401": "Missing or wrong secret token",
            },
        )
    }
