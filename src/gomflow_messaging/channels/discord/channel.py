"""The Discord channel: DMs with embeds and buttons over hikari's REST client, one error map.

Discord is reached over HTTP only: messages go out through the REST API and interactions
come in at ``POST /webhook/discord`` (``webhook.py``), so there is no gateway
connection and any number of replicas serve it. hikari follows Discord's per-route
buckets; the global 50 requests/s is shared by every replica through `Pacer`.

hikari's own patience is bounded so that a hanging or failing Discord gives the
dispatcher an answer well inside its lease: one request waits at most
``DISCORD_REQUEST_TIMEOUT_SECONDS``, 5xx and network errors are retried
``DISCORD_MAX_RETRIES`` times (0 by default: the outbox retries with backoff and records
every attempt), and a rate limit longer than ``DISCORD_MAX_RATE_LIMIT_WAIT_SECONDS`` comes
back as a `TransientError` carrying Discord's retry-after instead of a silent sleep.

Every message part carries a nonce made from the message's id and the part's place, with
``enforce_nonce``: a retry of a send whose answer was lost (Discord created the message,
the request timed out) gets the first message back from Discord instead of a second one,
within the few minutes Discord remembers a nonce.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import hikari
import httpx
from redis.exceptions import RedisError

from gomflow_messaging.channels.base import (
    ChannelHealth,
    DeliveredParts,
    OutboundMessage,
    SendResult,
    on_hosts,
    read_at_most,
)
from gomflow_messaging.channels.discord.commands import (
    CommandLike,
    command_builders,
    describe_command,
)
from gomflow_messaging.channels.discord.render import (
    EPHEMERAL,
    MAX_DESCRIPTION,
    Rendered,
    render_outbound,
)
from gomflow_messaging.channels.pacing import Limit, Pacer
from gomflow_messaging.errors import ChannelError, PermanentError, TransientError
from gomflow_messaging.settings import Environment

if TYPE_CHECKING:
    from hikari.impl.rest import RESTClientImpl
    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

PLATFORM = "discord"
DM_CACHE_TTL = 30 * 24 * 3600
GLOBAL_SCOPE = "discord:global"
HEALTH_CACHE_SECONDS = 60.0
CLOSE_GRACE_SECONDS = 5.0


def message_nonce(message_id: object, part: int) -> str:
    """The nonce of one part of one message: the same on every retry, at most Discord's 25
    characters (100 bits of a hash of both)."""
    return hashlib.sha256(f"{message_id}:{part}".encode()).hexdigest()[:25]


# Discord's JSON error codes we act on.
CANNOT_DM = 50007
INVALID_RECIPIENT = 50033
UNKNOWN_CHANNEL = 10003
UNKNOWN_WEBHOOK = 10015
UNKNOWN_USER = 10013
UNKNOWN_INTERACTION = 10062


def map_error(exc: BaseException) -> ChannelError | None:
    """THE translation of hikari, aiohttp and network failures into our two errors.

    Returns None for anything else (a bug of ours), which the caller lets propagate.
    """

    def permanent(text: str, code: str, *, unreachable: bool = False) -> PermanentError:
        return PermanentError(text, code=code, platform=PLATFORM, address_unreachable=unreachable)

    def transient(text: str, code: str, retry_after: float | None = None) -> TransientError:
        return TransientError(text, code=code, platform=PLATFORM, retry_after=retry_after)

    if isinstance(exc, hikari.RateLimitTooLongError):
        scope = "global" if exc.is_global else "route"
        return transient(
            f"Discord {scope} rate limit: retry in {exc.retry_after:.1f}s",
            "rate_limited",
            max(exc.retry_after, 0.0),
        )
    if isinstance(exc, hikari.HTTPResponseError):
        status = int(exc.status)
        # Never str(exc): it carries the URL, and a follow-up's URL holds the interaction token.
        text = f"Discord {status}" + (f" ({exc.code})" if exc.code else "")
        if exc.message:
            text += f": {exc.message[:200]}"
        if isinstance(exc, hikari.UnauthorizedError):
            return permanent(text, "bad_credentials")
        if isinstance(exc, hikari.ForbiddenError):
            if exc.code == CANNOT_DM:
                return permanent(text, "cannot_dm", unreachable=True)
            return permanent(text, "forbidden")
        if isinstance(exc, hikari.NotFoundError):
            if exc.code == UNKNOWN_USER:
                return permanent(text, "unknown_user", unreachable=True)
            if exc.code == UNKNOWN_CHANNEL:
                return permanent(text, "unknown_channel")
            if exc.code in (UNKNOWN_WEBHOOK, UNKNOWN_INTERACTION):
                return permanent(text, "interaction_expired")
            return permanent(text, "not_found")
        if isinstance(exc, hikari.BadRequestError):
            if exc.code == INVALID_RECIPIENT:
                return permanent(text, "invalid_recipient", unreachable=True)
            return permanent(text, "rejected")
        if status == 429:  # a 429 hikari could not read (no JSON retry_after): Cloudflare
            return transient(text, "rate_limited", _retry_after_header(exc.headers) or 60.0)
        if status == 408 or status >= 500:
            return transient(text, f"http_{status}", _retry_after_header(exc.headers))
        return permanent(text, f"http_{status}")
    if isinstance(exc, hikari.HTTPError):  # no response: hikari wraps timeouts and resets
        return transient(f"Discord unreachable: {exc.message[:200]}", "network")
    if isinstance(exc, hikari.ComponentStateConflictError):
        return transient("Discord client is not running", "not_started")
    if isinstance(exc, TimeoutError):
        return transient("no answer from Discord in time", "timeout")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return transient(f"Discord unreachable: {type(exc).__name__}", "network")
    # Attachments come from Discord's CDN over plain HTTP (httpx). Never str(exc) here
    # either: an attachment URL carries its signature.
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (408, 429) or status >= 500:
            return transient(f"Discord CDN {status}", f"http_{status}")
        return permanent(f"Discord CDN {status}", f"http_{status}")
    if isinstance(exc, httpx.TimeoutException):
        return transient("no answer from Discord's CDN in time", "timeout")
    if isinstance(exc, httpx.HTTPError):
        return transient(f"Discord CDN unreachable: {type(exc).__name__}", "network")
    return None


def _retry_after_header(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# -- the REST client ---------------------------------------------------------------------


class DiscordRest:
    """hikari's REST client with our time limits, global pacing and error map."""

    def __init__(
        self,
        *,
        token: str,
        application_id: str,
        api_base_url: str,
        request_timeout: float,
        max_retries: int,
        max_rate_limit_wait: float,
        pacer: Pacer | None = None,
        requests_per_second: float = 50.0,
    ) -> None:
        self.application_id = application_id
        self._token = token
        self._app = hikari.RESTApp(
            url=api_base_url.rstrip("/"),
            max_retries=max_retries,
            max_rate_limit=max_rate_limit_wait,
            http_settings=hikari.impl.HTTPSettings(
                timeouts=hikari.impl.HTTPTimeoutSettings(total=request_timeout)
            ),
        )
        self._rest: RESTClientImpl | None = None
        self._pacer = pacer
        self._global = Limit(GLOBAL_SCOPE, requests_per_second, 1.0, burst=5)

    @classmethod
    def from_settings(cls, settings: Settings, pacer: Pacer | None = None) -> DiscordRest:
        assert settings.discord_token is not None
        return cls(
            token=settings.discord_token.get_secret_value(),
            application_id=settings.discord_client_id,
            api_base_url=settings.discord_api_base_url,
            request_timeout=settings.discord_request_timeout_seconds,
            max_retries=settings.discord_max_retries,
            max_rate_limit_wait=settings.discord_max_rate_limit_wait_seconds,
            pacer=pacer,
            requests_per_second=settings.discord_requests_per_second,
        )

    @property
    def rest(self) -> RESTClientImpl:
        if self._rest is None:
            raise TransientError("Discord client is not running", code="not_started")
        return self._rest

    async def start(self) -> None:
        if self._rest is not None:
            return
        await self._app.start()
        self._rest = self._app.acquire(self._token, hikari.TokenType.BOT)
        self._rest.start()

    async def close(self) -> None:
        rest, self._rest = self._rest, None
        if rest is not None:
            await rest.close()
            await self._app.close()

    async def call(
        self, operation: Callable[[RESTClientImpl], Awaitable[T]], *, paced: bool = True
    ) -> T:
        """Run one REST call; every failure leaves as TransientError or PermanentError."""
        try:
            if paced and self._pacer is not None:
                async with self._pacer.slot([self._global]):
                    return await operation(self.rest)
            return await operation(self.rest)
        except Exception as exc:
            error = map_error(exc)
            if error is None:
                raise
            if (
                isinstance(exc, hikari.RateLimitTooLongError)
                and exc.is_global
                and self._pacer is not None
            ):
                await self._pacer.hold_back(GLOBAL_SCOPE, exc.retry_after)
            raise error from None

    async def set_commands(
        self, commands: Sequence[CommandLike], guild_id: str = ""
    ) -> list[dict[str, Any]]:
        """Bulk overwrite: the application's commands become exactly these."""
        builders = command_builders(commands)
        guild: Any = guild_id or hikari.UNDEFINED
        result = await self.call(
            lambda rest: rest.set_application_commands(int(self.application_id), builders, guild)
        )
        return [describe_command(c) for c in result]

    async def fetch_commands(self, guild_id: str = "") -> list[dict[str, Any]]:
        guild: Any = guild_id or hikari.UNDEFINED
        result = await self.call(
            lambda rest: rest.fetch_application_commands(int(self.application_id), guild)
        )
        return [describe_command(c) for c in result]

    async def application_id_of_token(self) -> str:
        application = await self.call(lambda rest: rest.fetch_application())
        return str(application.id)


# -- the channel -------------------------------------------------------------------------


class DiscordChannel:
    """DMs to buyers and GOMs; also answers interactions' follow-ups for webhook.py."""

    name = PLATFORM
    max_text_length = MAX_DESCRIPTION

    def __init__(
        self,
        rest: DiscordRest,
        redis: Redis | None,
        prefix: str,
        *,
        guild_id: str = "",
        attachment_hosts: tuple[str, ...] = ("cdn.discordapp.com", "media.discordapp.net"),
        attachment_http: bool = False,
        download_timeout: float = 10.0,
    ) -> None:
        self.rest = rest
        self.guild_id = guild_id
        #: Hosts (or host:port) an attachment may come from, in every environment.
        self._attachment_hosts = attachment_hosts
        #: Plain http too (a fake CDN on loopback in tests); https only in production.
        self._attachment_http = attachment_http
        self._download_timeout = download_timeout
        self._redis = redis
        self._prefix = f"{prefix}:discord"
        self._parts = DeliveredParts(redis, self._prefix)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._health: tuple[float, ChannelHealth] | None = None

    @property
    def application_id(self) -> str:
        return self.rest.application_id

    @property
    def entity_factory(self) -> hikari.api.EntityFactory:
        """hikari's serializer, for building interaction answers with its builders."""
        return self.rest.rest.entity_factory

    async def start(self) -> None:
        await self.rest.start()

    async def close(self) -> None:
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.rest.close()

    def validate_address(self, address: str) -> str:
        address = address.strip()
        if not (address.isdigit() and 15 <= len(address) <= 21):
            raise ValueError("must be a Discord user id (a number of 15 to 21 digits)")
        return address

    # -- sending -------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            user_id = self.validate_address(message.address)
        except ValueError as exc:
            raise PermanentError(
                f"not a Discord user id: {exc}",
                code="invalid_address",
                platform=PLATFORM,
                address_unreachable=True,
            ) from None
        parts = render_outbound(message)
        done = await self._parts.load(message.message_id) if len(parts) > 1 else {}
        last_id = done.get(len(parts) - 1, "")
        if last_id:
            return SendResult(provider_message_id=last_id)
        channel_id = await self._dm_channel(user_id)
        for index, part in enumerate(parts):
            if index in done:
                continue
            nonce = message_nonce(message.message_id, index)
            try:
                sent = await self._create_message(channel_id, part, nonce)
            except PermanentError as exc:
                if exc.code != "unknown_channel":
                    raise
                # A cached DM channel that Discord no longer knows: open a new one, once.
                channel_id = await self._dm_channel(user_id, fresh=True)
                sent = await self._create_message(channel_id, part, nonce)
            last_id = str(sent.id)
            if len(parts) > 1:
                await self._parts.mark(message.message_id, index, last_id)
        return SendResult(provider_message_id=last_id)

    async def _create_message(self, channel_id: str, part: Rendered, nonce: str) -> hikari.Message:
        return await self.rest.call(
            lambda rest: rest.create_message(
                int(channel_id),
                part.content or hikari.UNDEFINED,
                nonce=nonce,  # hikari adds enforce_nonce: true
                embeds=list(part.embeds) or hikari.UNDEFINED,
                components=list(part.rows) or hikari.UNDEFINED,
                user_mentions=False,
                role_mentions=False,
                mentions_everyone=False,
            )
        )

    async def _dm_channel(self, user_id: str, *, fresh: bool = False) -> str:
        key = f"{self._prefix}:dm:{user_id}"
        if self._redis is not None and not fresh:
            with contextlib.suppress(RedisError, OSError):
                cached = await self._redis.get(key)
                if cached:
                    return cached.decode() if isinstance(cached, bytes) else str(cached)
        channel = await self.rest.call(lambda rest: rest.create_dm_channel(int(user_id)))
        channel_id = str(channel.id)
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.set(key, channel_id, ex=DM_CACHE_TTL)
        return channel_id

    async def health(self) -> ChannelHealth:
        """Whether the bot token works, asked of Discord at most once a minute.

        Discord being unreachable is degraded, not down: the outbox keeps the messages, and
        restarting this service would not bring Discord back.
        """
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_CACHE_SECONDS:
            return self._health[1]
        try:
            async with asyncio.timeout(1.5):
                me = await self.rest.call(lambda rest: rest.fetch_my_user())
        except PermanentError as exc:
            result = ChannelHealth(False, f"Discord refused the bot token: {exc.message}")
        except (TransientError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, TransientError) else "timeout"
            self._health = None  # ask again next time
            return ChannelHealth(
                False, f"Discord API not answering ({reason}); messages wait", away=True
            )
        else:
            result = ChannelHealth(True, f"bot {me.username} ({me.id}); interactions over HTTP")
        self._health = (now, result)
        return result

    # -- interactions (used by webhook.py) -------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run work after an interaction is answered; close() waits for it a little."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("discord interaction follow-up failed", exc_info=task.exception())

    async def edit_original(self, token: str, part: Rendered) -> None:
        """Fill in a deferred interaction answer (the token lasts 15 minutes)."""
        await self.rest.call(
            lambda rest: rest.edit_interaction_response(
                int(self.application_id),
                token,
                part.content or None,
                embeds=list(part.embeds) or None,
                components=list(part.rows) or None,
                user_mentions=False,
                role_mentions=False,
                mentions_everyone=False,
            ),
            paced=False,  # interaction webhooks are outside the bot's global limit
        )

    async def follow_up(self, token: str, part: Rendered) -> None:
        await self.rest.call(
            lambda rest: rest.execute_webhook(
                int(self.application_id),
                token,
                part.content or hikari.UNDEFINED,
                embeds=list(part.embeds) or hikari.UNDEFINED,
                components=list(part.rows) or hikari.UNDEFINED,
                flags=EPHEMERAL if part.ephemeral else hikari.UNDEFINED,
                user_mentions=False,
                role_mentions=False,
                mentions_everyone=False,
            ),
            paced=False,
        )

    async def download_attachment(self, url: str, limit: int) -> bytes:
        """A file attached to a slash command, from Discord's CDN, at most ``limit`` bytes."""
        if not on_hosts(url, self._attachment_hosts, allow_http=self._attachment_http):
            raise PermanentError(
                "attachment is not on Discord's CDN", code="untrusted_url", platform=PLATFORM
            )
        too_large = PermanentError(
            f"attachment larger than {limit} bytes", code="too_large", platform=PLATFORM
        )
        try:
            async with (
                httpx.AsyncClient(
                    timeout=self._download_timeout, follow_redirects=False, trust_env=False
                ) as client,
                client.stream("GET", url) as response,
            ):
                response.raise_for_status()
                if int(response.headers.get("content-length") or 0) > limit:
                    raise too_large
                return await read_at_most(response.aiter_bytes(), limit, too_large)
        except ChannelError:
            raise
        except Exception as exc:
            error = map_error(exc)
            if error is None:
                raise
            raise error from None

    async def command_status(self, expected: Sequence[CommandLike]) -> dict[str, Any]:
        """What the application has registered, fetched from Discord; else what we would."""
        scope = f"guild {self.guild_id}" if self.guild_id else "global"
        wanted = [describe_command(b) for b in command_builders(expected)]
        try:
            async with asyncio.timeout(5):
                registered = await self.rest.fetch_commands(self.guild_id)
        except (ChannelError, TimeoutError) as exc:
            return {
                "source": "local",
                "note": "Discord could not be asked; these are the commands sync would register",
                "error": exc.message if isinstance(exc, ChannelError) else "timeout",
                "scope": scope,
                "commands": wanted,
                "in_sync": None,
            }
        return {
            "source": "discord_api",
            "note": "fetched from Discord just now",
            "scope": scope,
            "commands": registered,
            "expected": [c["name"] for c in wanted],
            "in_sync": _same_commands(registered, wanted),
        }


def _same_commands(registered: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    def key(commands: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
        return sorted(
            (c["name"], c["description"], tuple(o["name"] for o in c["options"])) for c in commands
        )

    return key(registered) == key(wanted)


def build(settings: Settings, pool: Pool, redis: Redis) -> DiscordChannel:
    pacer = Pacer(redis, settings.queue_name)
    return DiscordChannel(
        DiscordRest.from_settings(settings, pacer),
        redis,
        settings.queue_name,
        guild_id=settings.discord_guild_id,
        attachment_hosts=tuple(
            host.strip().lower()
            for host in settings.discord_attachment_hosts.split(",")
            if host.strip()
        ),
        attachment_http=settings.environment is not Environment.production,
        download_timeout=settings.discord_request_timeout_seconds,
    )
