"""WhatsApp through Twilio: free text inside the 24-hour window, approved templates outside.

WhatsApp lets a business send free text only within 24 hours of the buyer's last message
(`contact_addresses.last_inbound_at`); after that only an approved Content template
(``whatsapp_templates``) may go out, and without one the message is skipped
(``template_required``), never sent to fail. Buttons cannot be free-form on WhatsApp: they
become numbered choices the buyer answers with a digit (render.py), remembered per buyer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from redis.exceptions import RedisError
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from yarl import URL

from gomflow_messaging.channels.base import (
    ChannelHealth,
    DeliveredParts,
    OutboundMessage,
    SendResult,
    read_at_most,
    split_text,
)
from gomflow_messaging.channels.pacing import Limit, Pacer
from gomflow_messaging.channels.whatsapp import window
from gomflow_messaging.channels.whatsapp.render import Choices, render
from gomflow_messaging.errors import ChannelError, PermanentError, TransientError
from gomflow_messaging.phones import normalize_phone

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
#: Twilio redirects a media URL once, to its CDN; more hops than this are refused.
MAX_MEDIA_REDIRECTS = 3
PREFIX = "whatsapp:"

#: Twilio error codes we act on: our reason code, and whether the number is gone for good.
PERMANENT_CODES: dict[int, tuple[str, bool]] = {
    20003: ("bad_credentials", False),
    21211: ("invalid_number", True),
    21614: ("invalid_number", True),
    21610: ("unsubscribed", True),
    63016: ("template_required", False),
    63024: ("invalid_number", True),
}
#: The daily cap on business-initiated conversations: retry much later, not soon.
DAILY_CAP_CODE = 63018
RATE_LIMIT_CODE = 20429
#: What a failed status callback's ErrorCode means, as a message's status reason.
FAILURE_REASONS = {**PERMANENT_CODES, DAILY_CAP_CODE: ("daily_cap", False)}


class HttpStatusError(Exception):
    """Twilio answered 429 or 5xx; raised by our http client so Retry-After is not lost."""

    def __init__(self, status: int, retry_after: float | None, text: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.text = text


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _body_code(text: str) -> int:
    """Twilio's error code from an error body, or 0."""
    try:
        code = json.loads(text).get("code")
    except (ValueError, AttributeError):
        return 0
    return code if isinstance(code, int) else 0


class BaseUrlHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's async client, pointed at ``TWILIO_API_BASE_URL`` when set.

    The SDK hard-codes ``https://api.twilio.com``; tests and proxies need another host. The
    request is made here (not by the parent) to pass credentials as a header (aiohttp 3.14
    deprecates ``auth=``), send repeated form fields (``MediaUrl``) and keep Retry-After.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def rewrite(self, url: str) -> str:
        if self.base_url and url.startswith(TWILIO_API):
            return self.base_url + url[len(TWILIO_API) :]
        return url

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        form: list[tuple[str, str]] | None = None
        if data:
            form = []
            for key, value in data.items():
                for item in value if isinstance(value, list) else [value]:
                    form.append((key, str(item)))
        async with self.session.request(
            method.upper(),
            self.rewrite(url),
            params=params,
            data=form,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            allow_redirects=allow_redirects,
        ) as response:
            text = await response.text()
        if response.status == 429 or response.status >= 500:
            raise HttpStatusError(
                response.status, _retry_after(response.headers.get("Retry-After")), text
            )
        return Response(response.status, text, response.headers)


class WhatsAppChannel:
    """One Twilio WhatsApp sender; many workers share its pace through Redis."""

    name = "whatsapp"
    #: Twilio refuses a longer body.
    max_text_length = 1600

    def __init__(self, settings: Settings, pool: Pool, redis: Redis) -> None:
        assert settings.twilio_auth_token is not None
        self._settings = settings
        self._pool = pool
        self._redis = redis
        self._sid = settings.twilio_account_sid
        self._token = settings.twilio_auth_token.get_secret_value()
        number = settings.twilio_whatsapp_number.strip()
        self.sender = number.removeprefix(PREFIX)
        self._from = PREFIX + self.sender
        self._callback = settings.public_base_url + "/webhook/status"
        self._prefix = f"gomflow:{settings.queue_name}"
        self._parts = DeliveredParts(redis, f"{self._prefix}:whatsapp")
        self._pacer = Pacer(redis, self._prefix)
        #: The numbered choices last shown to each buyer (also by the webhook's answers).
        self.choices = Choices(redis, settings.queue_name)
        self._scope = f"whatsapp:{self.sender}"
        self._limit = Limit(self._scope, settings.whatsapp_messages_per_second)
        self._http: BaseUrlHttpClient | None = None
        self._client: Any = None
        self._healthy_until = 0.0

    async def start(self) -> None:
        self._http = BaseUrlHttpClient(
            self._settings.twilio_api_base_url, self._settings.twilio_timeout_seconds
        )
        self._client = Client(self._sid, self._token, http_client=self._http)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None

    def validate_address(self, address: str) -> str:
        return normalize_phone(address)

    # -- sending -------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        actions: tuple[str, ...] = ()
        try:
            if await window.in_window(self._pool, message.address):
                requests, actions = self._free_text(message)
            else:
                requests = [await self._template(message)]
            sids = [
                await self._send_part(message, index, len(requests), fields)
                for index, fields in enumerate(requests)
            ]
        except ChannelError:
            raise
        except Exception as exc:
            raise self._error(exc) from None
        if actions:
            try:
                await self.choices.remember(message.address, actions)
            except RedisError as exc:
                # Sent already: failing now would send it again. A digit the buyer answers
                # with then reaches the bot as typed, which tells them what it understands.
                log.warning("numbered choices of %s not remembered: %r", message.message_id, exc)
        return SendResult(provider_message_id=sids[0])

    def _free_text(self, message: OutboundMessage) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """The requests that send it, and the actions of its numbered choices."""
        rendered = render(message.text, message.buttons, message.locale, numbered=True)
        parts = split_text(rendered.text, self.max_text_length) or [""]
        requests: list[dict[str, Any]] = [{"body": part} for part in parts]
        if message.image_url:
            requests[0]["media_url"] = [message.image_url]
        return requests, rendered.actions

    async def _template(self, message: OutboundMessage) -> dict[str, Any]:
        """The approved Content template (window.py), as Twilio takes it."""
        template = await window.template_for(self._pool, message, window.TWILIO_CONTENT_SID)
        return {
            "content_sid": template.name,
            "content_variables": json.dumps(template.variables, ensure_ascii=False),
        }

    async def _send_part(
        self, message: OutboundMessage, index: int, total: int, fields: dict[str, Any]
    ) -> str:
        # A retry after part 2 failed must not send part 1 again.
        if total > 1:
            done = await self._parts.load(message.message_id)
            if index in done:
                return done[index]
        try:
            async with self._pacer.slot([self._limit]):
                result = await self._client.messages.create_async(
                    to=PREFIX + message.address,
                    from_=self._from,
                    status_callback=f"{self._callback}?message_id={message.message_id}",
                    **fields,
                )
        except Exception as exc:
            error = self._error(exc)
            if isinstance(error, TransientError) and error.code == "rate_limited":
                await self._pacer.hold_back(self._scope, error.retry_after or 1.0)
            raise error from None
        sid = str(result.sid)
        if total > 1:
            await self._parts.mark(message.message_id, index, sid)
        return sid

    # -- media and health ----------------------------------------------------------------

    async def download_media(self, url: str) -> tuple[str, bytes]:
        """A buyer's attachment (``MediaUrl0``): Twilio serves it only with our credentials.

        Twilio answers with a redirect to its media CDN; each hop is followed by hand, only to
        TWILIO_MEDIA_HOSTS, and the credentials go to the first (Twilio's API) alone.
        """
        assert self._http is not None
        limit = self._settings.max_file_size
        too_large = PermanentError(
            f"attachment larger than {limit} bytes", code="too_large", platform=self.name
        )
        target = self._http.rewrite(url)
        headers = {"Authorization": aiohttp.encode_basic_auth(self._sid, self._token)}
        timeout = aiohttp.ClientTimeout(total=self._settings.twilio_timeout_seconds * 2)
        try:
            for _hop in range(MAX_MEDIA_REDIRECTS + 1):
                async with self._http.session.get(
                    target, headers=headers, timeout=timeout, allow_redirects=False
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        target = str(response.url.join(URL(response.headers.get("Location", ""))))
                        if not self._media_host(target):
                            raise PermanentError(
                                "attachment redirected off Twilio's hosts",
                                code="untrusted_url",
                                platform=self.name,
                            )
                        headers = {}
                        continue
                    if response.status == 429 or response.status >= 500:
                        raise HttpStatusError(
                            response.status,
                            _retry_after(response.headers.get("Retry-After")),
                            "media download",
                        )
                    if response.status >= 400:
                        raise TwilioRestException(response.status, url, "media download failed")
                    if (response.content_length or 0) > limit:
                        raise too_large
                    chunks = response.content.iter_chunked(65536)
                    return response.content_type, await read_at_most(chunks, limit, too_large)
            raise PermanentError(
                "attachment redirected too many times", code="untrusted_url", platform=self.name
            )
        except ChannelError:
            raise
        except Exception as exc:
            raise self._error(exc) from None

    def _media_host(self, url: str) -> bool:
        """Twilio's media hosts (TWILIO_MEDIA_HOSTS), or the API base tests point elsewhere."""
        parts = urlsplit(url)
        allowed = {h.strip().lower() for h in self._settings.twilio_media_hosts.split(",")}
        base = urlsplit(self._http.base_url) if self._http and self._http.base_url else None
        if base is not None and (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
            return True
        return parts.scheme == "https" and (parts.hostname or "").lower() in allowed

    async def health(self) -> ChannelHealth:
        """Fetches the account (cached a minute): wrong credentials make the channel unusable."""
        if time.monotonic() < self._healthy_until:
            return ChannelHealth(ok=True, detail="Twilio account active")
        try:
            account = await self._client.api.v2010.accounts(self._sid).fetch_async()
        except Exception as exc:
            error = self._error(exc)
            if isinstance(error, TransientError):
                # Messages wait in the outbox: degraded, not down.
                return ChannelHealth(
                    ok=False, detail=f"Twilio unreachable now: {error.code}", away=True
                )
            return ChannelHealth(ok=False, detail=f"{error.code}: {error.message}")
        status = str(getattr(account, "status", "") or "active")
        if status != "active":
            return ChannelHealth(ok=False, detail=f"Twilio account is {status}")
        self._healthy_until = time.monotonic() + 60
        return ChannelHealth(ok=True, detail="Twilio account active")

    # -- errors --------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> ChannelError:
        """Every failure of Twilio, the network, Redis or Postgres as our own error."""
        name = self.name
        if isinstance(exc, ChannelError):
            return exc
        if isinstance(exc, HttpStatusError):
            if _body_code(exc.text) == DAILY_CAP_CODE:
                return TransientError(
                    f"Twilio error {DAILY_CAP_CODE}: daily limit of business-initiated chats",
                    code="daily_cap",
                    platform=name,
                    retry_after=self._settings.whatsapp_daily_cap_retry_seconds,
                )
            code = "rate_limited" if exc.status == 429 else f"http_{exc.status}"
            return TransientError(
                f"Twilio answered HTTP {exc.status}",
                code=code,
                platform=name,
                retry_after=exc.retry_after,
            )
        if isinstance(exc, TwilioRestException):
            number = int(exc.code) if exc.code else 0
            text = f"Twilio error {number or exc.status}: {exc.msg}"[:500]
            if number == RATE_LIMIT_CODE or exc.status == 429:
                return TransientError(text, code="rate_limited", platform=name)
            if number == DAILY_CAP_CODE:
                return TransientError(
                    text,
                    code="daily_cap",
                    platform=name,
                    retry_after=self._settings.whatsapp_daily_cap_retry_seconds,
                )
            if exc.status >= 500:
                return TransientError(text, code=f"http_{exc.status}", platform=name)
            if number in PERMANENT_CODES:
                reason, gone = PERMANENT_CODES[number]
                return PermanentError(text, code=reason, platform=name, address_unreachable=gone)
            if exc.status == 401:
                return PermanentError(text, code="bad_credentials", platform=name)
            return PermanentError(
                text, code=f"twilio_{number}" if number else f"http_{exc.status}", platform=name
            )
        if isinstance(exc, TimeoutError):
            return TransientError("no answer from Twilio in time", code="timeout", platform=name)
        if isinstance(exc, aiohttp.ClientError):
            return TransientError(f"network: {type(exc).__name__}", code="network", platform=name)
        if isinstance(exc, RedisError | asyncpg.PostgresError | OSError):
            return TransientError(
                f"store unavailable: {type(exc).__name__}", code="unavailable", platform=name
            )
        if isinstance(exc, TwilioException):
            return PermanentError(f"Twilio: {exc}"[:500], code="twilio_error", platform=name)
        log.error("unexpected error from the WhatsApp adapter: %r", exc)
        return TransientError(f"unexpected: {type(exc).__name__}", code="internal", platform=name)


def build(settings: Settings, pool: Pool, redis: Redis) -> WhatsAppChannel:
    return WhatsAppChannel(settings, pool, redis)
