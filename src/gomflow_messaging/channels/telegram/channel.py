"""The Telegram channel: aiogram's Bot against the Bot API (or TELEGRAM_API_BASE_URL), paced.

Our text is plain; it goes out as HTML with everything escaped, so a title such as
``<3 SVT & Carat`` arrives as written. Text above 4096 characters (Telegram counts UTF-16
units after parsing) is split, the buttons go under the last part, and the parts already
delivered are remembered in Redis so a retry after a 429 on part two does not resend
part one. Every aiogram or HTTP failure becomes our TransientError or PermanentError in
`translate_error`, the one place that knows Telegram's failure modes.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetFile, GetMe, SendMessage, SendPhoto, TelegramMethod
from aiogram.methods.base import Response
from aiogram.types import File, InlineKeyboardButton, InlineKeyboardMarkup, Message, User
from pydantic import ValidationError

from gomflow_messaging.channels.base import (
    Button,
    ChannelHealth,
    DeliveredParts,
    OutboundMessage,
    SendResult,
    read_at_most,
    split_text,
)
from gomflow_messaging.channels.pacing import Limit, Pacer
from gomflow_messaging.errors import ChannelError, PermanentError, TransientError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "telegram"

# aiogram validates every answer as Response[<the method's result>], and pydantic keeps such a
# generic model only while something refers to it: without these it rebuilt the model (its
# whole schema) for nearly every send (py-spy: 8 % of a 300/s campaign).
_RESPONSE_MODELS = (Response[Message], Response[bool], Response[User], Response[File])
MAX_TEXT = 4096
MAX_CAPTION = 1024
CLOSE_GRACE_SECONDS = 5.0
# A send's parts delivered so far, kept long enough to cover every retry of one message.
_CHAT_ID = re.compile(r"^-?\d{1,20}$")
_USERNAME = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{3,31}$")
# Bad requests that say the address itself is dead, not the message.
_DEAD_CHAT = ("chat not found", "user not found", "peer_id_invalid", "chat_id is empty")


class ChatMigrated(PermanentError):
    """The group became a supergroup with ``new_chat_id``; the send may be repeated there."""

    def __init__(self, message: str, new_chat_id: int) -> None:
        super().__init__(message, code="chat_migrated", platform=PLATFORM)
        self.new_chat_id = new_chat_id


def translate_error(exc: BaseException) -> ChannelError:
    """Every failure of a Bot API call, as our transient or permanent error."""
    if isinstance(exc, ChannelError):
        return exc
    text = str(getattr(exc, "message", "") or exc)[:300]
    if isinstance(exc, TelegramRetryAfter):
        return TransientError(
            f"rate limited: retry after {exc.retry_after}s",
            code="rate_limited",
            platform=PLATFORM,
            retry_after=float(exc.retry_after),
        )
    if isinstance(exc, TelegramMigrateToChat):
        return ChatMigrated(text, exc.migrate_to_chat_id)
    if isinstance(exc, TelegramForbiddenError):
        # Blocked by the user, user deactivated, bot kicked from the group: all final.
        return PermanentError(text, code="blocked", platform=PLATFORM, address_unreachable=True)
    if isinstance(exc, TelegramUnauthorizedError):
        return PermanentError(
            "Telegram refused the bot token (TELEGRAM_BOT_TOKEN)",
            code="bad_credentials",
            platform=PLATFORM,
        )
    if isinstance(exc, TelegramBadRequest):
        lowered = text.lower()
        if any(marker in lowered for marker in _DEAD_CHAT):
            return PermanentError(
                text, code="chat_not_found", platform=PLATFORM, address_unreachable=True
            )
        return PermanentError(text, code="rejected", platform=PLATFORM)
    if isinstance(exc, TelegramEntityTooLarge):  # a TelegramNetworkError: test it first
        return PermanentError(text, code="too_large", platform=PLATFORM)
    if isinstance(exc, TelegramNotFound):
        # The Bot API answers 404 to an unknown method or a malformed token.
        return PermanentError(text, code="not_found", platform=PLATFORM)
    if isinstance(exc, TelegramConflictError):
        return PermanentError(text, code="conflict", platform=PLATFORM)
    if isinstance(exc, TelegramServerError):
        return TransientError(text, code="server_error", platform=PLATFORM)
    if isinstance(exc, TelegramNetworkError):
        code = "timeout" if "timeout" in text.lower() else "network"
        return TransientError(text, code=code, platform=PLATFORM)
    if isinstance(exc, TimeoutError):
        return TransientError("no answer from Telegram", code="timeout", platform=PLATFORM)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransientError(f"{type(exc).__name__}: {exc}"[:300], code="network")
    if isinstance(exc, ClientDecodeError):
        # Not the Bot API answering (a proxy's HTML error page, a cut body): try again later.
        return TransientError("unreadable answer from Telegram", code="bad_response")
    if isinstance(exc, TelegramAPIError):
        if "too many requests" in text.lower():
            return TransientError(text, code="rate_limited", platform=PLATFORM)
        return PermanentError(text, code="rejected", platform=PLATFORM)
    if isinstance(exc, ValidationError):
        return PermanentError(
            f"cannot build the Telegram request: {exc.error_count()} invalid field(s)",
            code="invalid_message",
            platform=PLATFORM,
        )
    if isinstance(exc, AiogramError):
        return TransientError(f"{type(exc).__name__}: {text}", code="client_error")
    raise exc


def parse_chat_id(address: str) -> int | str:
    """A chat id (negative for groups) or a public @channel name."""
    address = address.strip()
    if _CHAT_ID.match(address):
        return int(address)
    if _USERNAME.match(address):
        return address
    raise ValueError("must be a numeric Telegram chat id or an @channelname")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_for_telegram(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Parts of at most ``limit`` UTF-16 units, the way Telegram counts."""
    done: list[str] = []
    pending = split_text(text, limit)
    while pending:
        part = pending.pop(0)
        if utf16_length(part) <= limit:
            done.append(part)
            continue
        # Characters outside the BMP (most emoji) count twice: cut this part finer. The
        # first piece always fits, so every round makes progress.
        pending[0:0] = split_text(part, _chars_within(part, limit))
    return done


def _chars_within(text: str, limit: int) -> int:
    """How many leading characters of ``text`` fit in ``limit`` UTF-16 units."""
    units = 0
    for count, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return max(count, 1)
    return len(text)


def keyboard(rows: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup | None:
    """Our buttons as an inline keyboard: a URL opens, an action comes back as callback data."""
    if not rows:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=b.label, url=b.url)
                if b.url
                else InlineKeyboardButton(text=b.label, callback_data=b.action or b.label)
                for b in row
            ]
            for row in rows
            if row
        ]
    )


@dataclass(frozen=True)
class TelegramLimits:
    """Telegram's published send limits; tune them through settings, not code."""

    per_second: float = 30.0
    chat_per_second: float = 1.0
    group_per_minute: float = 20.0
    #: Telegram tolerates short bursts in one chat (a reply of three messages).
    chat_burst: int = 3


def make_bot(token: str, api_base_url: str, *, request_timeout: float = 10.0) -> Bot:
    """aiogram's Bot pointed at the Bot API (or another server speaking it)."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base_url), timeout=request_timeout)
    return Bot(token, session=session)


class TelegramChannel:
    """Sends through aiogram's Bot; raises only TransientError or PermanentError."""

    name = PLATFORM
    max_text_length = MAX_TEXT

    def __init__(
        self,
        *,
        token: str,
        api_base_url: str,
        pool: Pool,
        redis: Redis,
        limits: TelegramLimits | None = None,
        request_timeout: float = 10.0,
        pace_max_wait: float = 30.0,
        health_ttl: float = 30.0,
    ) -> None:
        self.bot = make_bot(token, api_base_url, request_timeout=request_timeout)
        self._pool = pool
        self._redis = redis
        self._limits = limits or TelegramLimits()
        self._prefix = f"gomflow:telegram:{self.bot.id}"
        self._parts = DeliveredParts(redis, self._prefix)
        self._pacer = Pacer(redis, self._prefix, max_wait=pace_max_wait)
        self._health_ttl = health_ttl
        self._health: tuple[float, ChannelHealth] | None = None
        self._me: User | None = None
        self._download_timeout = max(int(request_timeout * 3), 10)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # No network here: start-up must not fail because Telegram is slow right now.
        return None

    async def close(self) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.bot.session.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run work after an answer has gone (a chat's menu); close() waits for it a little."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def validate_address(self, address: str) -> str:
        parse_chat_id(address)
        return address.strip()

    # -- sending -------------------------------------------------------------------------

    def limits_for(self, chat_id: int | str) -> list[Limit]:
        limits = [Limit("bot", self._limits.per_second)]
        if isinstance(chat_id, int) and chat_id < 0:
            limits.append(
                Limit(
                    f"group:{chat_id}",
                    self._limits.group_per_minute,
                    60.0,
                    burst=self._limits.chat_burst,
                )
            )
        else:
            limits.append(
                Limit(
                    f"chat:{chat_id}",
                    self._limits.chat_per_second,
                    burst=self._limits.chat_burst,
                )
            )
        return limits

    def _scope(self, chat_id: int | str) -> str:
        """The pacing scope a 429 for this chat holds back."""
        return self.limits_for(chat_id)[-1].scope

    def render(
        self,
        chat_id: int | str,
        text: str,
        buttons: Sequence[Sequence[Button]] = (),
        image_url: str = "",
    ) -> list[TelegramMethod[Message]]:
        """The Bot API calls that show this message: a photo and/or text parts, in order."""
        markup = keyboard(buttons)
        methods: list[TelegramMethod[Message]] = []
        if image_url:
            fits = utf16_length(text) <= MAX_CAPTION
            methods.append(
                SendPhoto(
                    chat_id=chat_id,
                    photo=image_url,
                    caption=html.escape(text, quote=False) if fits and text else None,
                    parse_mode="HTML" if fits and text else None,
                    reply_markup=markup if fits else None,
                )
            )
            if fits:
                return methods
        if not text.strip():
            if methods:
                return methods
            raise PermanentError("the message has no text", code="empty", platform=PLATFORM)
        parts = split_for_telegram(text)
        for n, part in enumerate(parts, start=1):
            methods.append(
                SendMessage(
                    chat_id=chat_id,
                    text=html.escape(part, quote=False),
                    parse_mode="HTML",
                    reply_markup=markup if n == len(parts) else None,
                )
            )
        return methods

    async def call(self, method: TelegramMethod[Any]) -> Any:
        """One Bot API call; failures come out as our errors only."""
        try:
            return await self.bot(method)
        except Exception as exc:
            raise translate_error(exc) from None

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            chat_id = parse_chat_id(message.address)
        except ValueError as exc:
            raise PermanentError(
                f"bad address: {exc}", code="bad_address", platform=PLATFORM
            ) from None
        methods = self.render(chat_id, message.text, message.buttons, message.image_url)
        try:
            ids = await self._deliver(chat_id, methods, str(message.message_id))
        except ChatMigrated as migrated:
            # Once only: a second migration is a permanent failure like any other.
            await self.migrate_address(message.address, migrated.new_chat_id)
            methods = self.render(
                migrated.new_chat_id, message.text, message.buttons, message.image_url
            )
            ids = await self._deliver(migrated.new_chat_id, methods, str(message.message_id))
            chat_id = migrated.new_chat_id
        return SendResult(provider_message_id=f"{chat_id}:{','.join(ids)}")

    async def send_reply(
        self,
        chat_id: int | str,
        text: str,
        buttons: Sequence[Sequence[Button]] = (),
        image_url: str = "",
    ) -> list[str]:
        """An answer to someone who just wrote: paced like any send, not kept in the outbox."""
        return await self._deliver(chat_id, self.render(chat_id, text, buttons, image_url), None)

    async def _deliver(
        self, chat_id: int | str, methods: list[TelegramMethod[Message]], key: str | None
    ) -> list[str]:
        remember = key is not None and len(methods) > 1
        done = await self._parts.load(key) if remember and key is not None else {}
        ids: list[str] = []
        for index, method in enumerate(methods):
            if index in done:
                ids.append(done[index])
                continue
            try:
                async with self._pacer.slot(self.limits_for(chat_id)):
                    sent: Message = await self.call(method)
            except TransientError as exc:
                if exc.code == "rate_limited" and exc.retry_after:
                    await self._pacer.hold_back(self._scope(chat_id), exc.retry_after)
                raise
            ids.append(str(sent.message_id))
            if remember and key is not None and index < len(methods) - 1:
                await self._parts.mark(key, index, ids[-1])
        return ids

    async def migrate_address(self, old: str, new_chat_id: int) -> None:
        """A group became a supergroup: its contact address follows it."""
        new = str(new_chat_id)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                taken = await conn.fetchval(
                    "SELECT 1 FROM contact_addresses WHERE channel = $1 AND address = $2",
                    PLATFORM,
                    new,
                )
                if taken:
                    await conn.execute(
                        "DELETE FROM contact_addresses WHERE channel = $1 AND address = $2",
                        PLATFORM,
                        old,
                    )
                else:
                    await conn.execute(
                        "UPDATE contact_addresses SET address = $3"
                        " WHERE channel = $1 AND address = $2",
                        PLATFORM,
                        old,
                        new,
                    )
        except (OSError, asyncpg.PostgresError) as exc:
            raise TransientError(
                f"cannot record the chat migration: {type(exc).__name__}",
                code="unavailable",
                platform=PLATFORM,
            ) from None
        log.info("telegram chat %s migrated to %s", old, new)

    # -- receiving files -----------------------------------------------------------------

    async def download(self, file_id: str, limit: int) -> bytes:
        """A file someone sent us (getFile, then the file), refused past ``limit`` bytes."""
        too_large = PermanentError(
            f"file larger than {limit} bytes", code="too_large", platform=PLATFORM
        )
        found: File = await self.call(GetFile(file_id=file_id))
        if found.file_size and found.file_size > limit:
            raise too_large
        if not found.file_path:
            raise PermanentError("Telegram gave no file path", code="unavailable")
        api = self.bot.session.api
        url = api.file_url(self.bot.token, found.file_path)
        # Files come from the Bot API server (TELEGRAM_API_BASE_URL) and nowhere else: not
        # from a path that names another host, and not through a redirect (aiogram's own
        # download_file follows redirects and buffers the whole file).
        if urlsplit(url).netloc != urlsplit(api.base).netloc:
            raise PermanentError("file is not on the Bot API server", code="untrusted_url")
        try:
            assert isinstance(self.bot.session, AiohttpSession)
            session = await self.bot.session.create_session()
            async with session.get(
                url,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._download_timeout),
            ) as response:
                if response.status == 429 or response.status >= 500:
                    raise TransientError(
                        f"file download: HTTP {response.status}",
                        code=f"http_{response.status}",
                        platform=PLATFORM,
                    )
                if response.status != 200:
                    raise PermanentError(
                        f"file download: HTTP {response.status}",
                        code="unavailable",
                        platform=PLATFORM,
                    )
                if (response.content_length or 0) > limit:
                    raise too_large
                return await read_at_most(response.content.iter_chunked(65536), limit, too_large)
        except Exception as exc:
            raise translate_error(exc) from None

    # -- health --------------------------------------------------------------------------

    async def me(self) -> User:
        """The bot's own user (getMe), fetched once."""
        if self._me is None:
            self._me = await self.call(GetMe())
        return self._me

    async def health(self) -> ChannelHealth:
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < self._health_ttl:
            return self._health[1]
        try:
            user: User = await self.call(GetMe())
        except TransientError as exc:
            # Messages wait in the outbox: degraded, not down (restarting this service would
            # not bring Telegram back).
            result = ChannelHealth(
                ok=False, detail=f"Telegram unreachable now: {exc.code}", away=True
            )
        except ChannelError as exc:
            result = ChannelHealth(ok=False, detail=f"getMe: {exc.code}: {exc.message}")
        else:
            self._me = user
            result = ChannelHealth(ok=True, detail=f"@{user.username}")
        self._health = (now, result)
        return result


def build(settings: Settings, pool: Pool, redis: Redis) -> TelegramChannel:
    assert settings.telegram_bot_token is not None
    lease = settings.dispatch_lease_seconds
    return TelegramChannel(
        token=settings.telegram_bot_token.get_secret_value(),
        api_base_url=settings.telegram_api_base_url,
        pool=pool,
        redis=redis,
        limits=TelegramLimits(
            per_second=settings.telegram_rate_per_second,
            chat_per_second=settings.telegram_chat_rate_per_second,
            group_per_minute=settings.telegram_group_rate_per_minute,
            chat_burst=settings.telegram_chat_burst,
        ),
        # A request must end (in a transient error) well before the dispatcher's lease does,
        # and a long pacing wait is better rescheduled than slept through inside the lease.
        request_timeout=min(settings.telegram_request_timeout_seconds, lease * 0.5),
        pace_max_wait=min(30.0, lease * 0.4),
        health_ttl=settings.telegram_health_cache_seconds,
    )
