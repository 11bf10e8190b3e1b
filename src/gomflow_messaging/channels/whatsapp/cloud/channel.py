"""WhatsApp through Meta's Cloud API (the Graph API, over httpx, as Messenger speaks it).

Sends ``POST /{phone number id}/messages`` with the access token: free text, reply buttons
and lists inside the 24-hour window, the mapped approved template outside it (window.py).
Every Graph failure becomes our own error in `map_error`, by Meta's error code (Graph
answers 400 whatever the cause). Sends are paced through the shared Pacer at
WHATSAPP_CLOUD_RATE_PER_SECOND for the number, and at Meta's pair rate for each person.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import TYPE_CHECKING, Any

from gomflow_messaging.channels.base import (
    ChannelHealth,
    DeliveredParts,
    OutboundMessage,
    SendResult,
    on_hosts,
    read_at_most,
)
from gomflow_messaging.channels.meta_graph import GraphClient, GraphError, transport_error
from gomflow_messaging.channels.pacing import Limit, Pacer
from gomflow_messaging.channels.whatsapp import window
from gomflow_messaging.channels.whatsapp.cloud.render import render
from gomflow_messaging.errors import ChannelError, PermanentError, SkipMessage, TransientError
from gomflow_messaging.phones import normalize_phone

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

PLATFORM = "whatsapp"
#: A business-scoped user id (2026): how WhatsApp names a person who took a username and
#: shows no number (``"from_user_id"`` on their messages, ``"recipient"`` on a send).
USER_ID = re.compile(r"[A-Z]{2}\.[0-9A-Za-z]{4,64}")

#: Meta's codes that mean "too fast": the scope to hold back and for how long by default.
#: 130429 the number's throughput, 131056 the pair rate to one person, 80007 the account's.
RATE_LIMITS: dict[int, tuple[str, float]] = {
    130429: ("number", 1.0),
    131056: ("pair", 6.0),
    80007: ("number", 60.0),
}
#: Worth retrying soon: generic error, service unavailable, maintenance (a minute).
RETRY_CODES: dict[int, float | None] = {131000: None, 131016: None, 131057: 60.0, 1: None, 2: None}
OUTSIDE_WINDOW = 131047
BAD_TOKEN = 190
#: Permanent, with the reason a message's status records (and whether the number is gone).
PERMANENT: dict[int, tuple[str, bool]] = {
    131026: ("unreachable", True),
    100: ("bad_parameter", False),
    132000: ("template_parameters", False),
    132001: ("template_missing", False),
    368: ("policy_blocked", False),
    131048: ("spam_limited", False),
    131049: ("not_delivered_marketing", False),
}
#: Meta's pair rate to one person: a burst, then one message per 6 s.
PAIR_BURST = 10
PAIR_INTERVAL = 6.0


def failure_reason(code: int) -> tuple[str, bool]:
    """A failed status's error code as a message's status reason, and whether it is gone."""
    if code == OUTSIDE_WINDOW:
        return "outside_window", False
    if code in RATE_LIMITS:
        return "rate_limited", False
    return PERMANENT.get(code, (f"graph_{code}" if code else "failed", False))


def map_error(exc: BaseException) -> ChannelError:
    """Every failure of Graph, the network, Redis or Postgres as our own error."""
    if not isinstance(exc, GraphError):
        return transport_error(exc, PLATFORM)
    text = exc.describe()
    code = exc.code
    if code in RATE_LIMITS or exc.status == 429:
        _scope, pause = RATE_LIMITS.get(code, ("number", 1.0))
        return TransientError(
            text,
            code="pair_rate_limited" if code == 131056 else "rate_limited",
            platform=PLATFORM,
            retry_after=exc.retry_after if exc.retry_after is not None else pause,
        )
    if code == OUTSIDE_WINDOW:
        return SkipMessage(text, code="outside_window", platform=PLATFORM)
    if code == BAD_TOKEN or (exc.status == 401 and not code):
        return PermanentError(text, code="bad_credentials", platform=PLATFORM)
    if code in PERMANENT:
        reason, gone = PERMANENT[code]
        return PermanentError(text, code=reason, platform=PLATFORM, address_unreachable=gone)
    if exc.status >= 500 or code in RETRY_CODES:
        return TransientError(
            text,
            code=f"graph_{code}" if code else f"http_{exc.status}",
            platform=PLATFORM,
            retry_after=exc.retry_after if exc.retry_after is not None else RETRY_CODES.get(code),
        )
    return PermanentError(
        text, code=f"graph_{code}" if code else f"http_{exc.status}", platform=PLATFORM
    )


class CloudChannel:
    """One WhatsApp Business phone number on Meta's Cloud API; workers share its pace."""

    name = PLATFORM
    max_text_length = 4096

    def __init__(
        self,
        settings: Settings,
        pool: Pool | None,
        redis: Redis | None,
        *,
        allow_http_downloads: bool = False,
    ) -> None:
        assert settings.whatsapp_cloud_access_token is not None
        self.settings = settings
        self._pool = pool
        self.phone_number_id = settings.whatsapp_cloud_phone_number_id
        self.client = GraphClient(
            settings.whatsapp_cloud_api_base_url,
            settings.whatsapp_cloud_access_token.get_secret_value(),
            settings.whatsapp_cloud_timeout_seconds,
        )
        prefix = f"gomflow:{settings.queue_name}"
        self._parts = DeliveredParts(redis, f"{prefix}:whatsapp-cloud")
        self._pacer = Pacer(redis, prefix) if redis is not None else None
        self._scope = f"whatsapp-cloud:{self.phone_number_id}"
        self._limit = Limit(self._scope, settings.whatsapp_cloud_rate_per_second)
        self._allow_http = allow_http_downloads
        self._healthy_until = 0.0

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    def validate_address(self, address: str) -> str:
        """A phone number (E.164), or a business-scoped user id as WhatsApp wrote it."""
        if USER_ID.fullmatch(address.strip()):
            return address.strip()
        return normalize_phone(address)

    # -- sending -------------------------------------------------------------------------

    def _pair_scope(self, address: str) -> str:
        # Hashed: a Redis key never holds the person's number.
        digest = hashlib.sha256(address.encode()).hexdigest()[:20]
        return f"{self._scope}:pair:{digest}"

    async def post(self, address: str, message: dict[str, Any]) -> str:
        """One message object to ``address`` at the number's and the pair's pace; its wamid."""
        # A number goes as "to" (digits); a person known only by their user id, as "recipient".
        to = {"to": address[1:]} if address.startswith("+") else {"recipient": address}
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", **to, **message}
        path = f"/{self.phone_number_id}/messages"
        pair = self._pair_scope(address)
        try:
            if self._pacer is None:
                answer = await self.client.call("POST", path, body=body)
            else:
                limits = [self._limit, Limit(pair, 1, PAIR_INTERVAL, burst=PAIR_BURST)]
                async with self._pacer.slot(limits):
                    answer = await self.client.call("POST", path, body=body)
        except Exception as exc:
            error = map_error(exc)
            if isinstance(error, TransientError) and self._pacer is not None:
                if error.code == "pair_rate_limited":
                    await self._pacer.hold_back(pair, error.retry_after or 6.0)
                elif error.code == "rate_limited":
                    await self._pacer.hold_back(self._scope, error.retry_after or 1.0)
            raise error from None
        messages = answer.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else {}
        return str(first.get("id") or "") if isinstance(first, dict) else ""

    async def send(self, message: OutboundMessage) -> SendResult:
        assert self._pool is not None, "a channel without a database sends nothing"
        try:
            if await window.in_window(self._pool, message.address):
                parts = render(message.text, message.buttons, message.locale, message.image_url)
            else:
                parts = [await self._template(message)]
            ids = []
            done = await self._parts.load(message.message_id) if len(parts) > 1 else {}
            for index, part in enumerate(parts):
                # A retry after part 2 failed must not send part 1 again.
                if index in done:
                    ids.append(done[index])
                    continue
                ids.append(await self.post(message.address, part))
                if len(parts) > 1:
                    await self._parts.mark(message.message_id, index, ids[-1])
        except Exception as exc:
            raise map_error(exc) from None
        return SendResult(provider_message_id=ids[0])

    async def _template(self, message: OutboundMessage) -> dict[str, Any]:
        """The approved template (window.py) as Meta takes it: name, language, body values."""
        assert self._pool is not None
        template = await window.template_for(self._pool, message, window.META_TEMPLATE_NAME)
        body: dict[str, Any] = {
            "name": template.name,
            "language": {"code": template.locale},
        }
        if template.variables:
            body["components"] = [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": value} for value in template.variables.values()
                    ],
                }
            ]
        return {"type": "template", "template": body}

    async def send_reply(self, address: str, messages: list[dict[str, Any]]) -> None:
        """Answers to what the person just wrote (inside the window by definition)."""
        for message in messages:
            await self.post(address, message)

    # -- media, the number, health -------------------------------------------------------

    async def download_media(self, media_id: str) -> tuple[str, bytes]:
        """A buyer's image or document: ``GET /{media id}`` for its URL, then the URL with
        the token, only on Meta's hosts (WHATSAPP_CLOUD_MEDIA_HOSTS), bounded."""
        limit = self.settings.max_file_size
        too_large = PermanentError(
            f"attachment larger than {limit} bytes", code="too_large", platform=PLATFORM
        )
        hosts = tuple(
            h.strip().lower()
            for h in self.settings.whatsapp_cloud_media_hosts.split(",")
            if h.strip()
        )
        try:
            info = await self.client.call("GET", f"/{media_id}")
            url = str(info.get("url") or "")
            declared = str(info.get("file_size") or "0")
            if declared.isdigit() and int(declared) > limit:
                raise too_large
            # The token goes to Meta's media host and nowhere else.
            if not on_hosts(url, hosts, allow_http=self._allow_http):
                raise PermanentError(
                    "media URL is not on Meta's hosts", code="untrusted_url", platform=PLATFORM
                )
            async with self.client.http.stream("GET", url, headers=self.client.bearer) as response:
                if response.status_code >= 400:
                    raise GraphError(response.status_code, message="media download")
                if int(response.headers.get("content-length") or 0) > limit:
                    raise too_large
                data = await read_at_most(response.aiter_bytes(), limit, too_large)
                return str(info.get("mime_type") or response.headers.get("content-type", "")), data
        except Exception as exc:
            raise map_error(exc) from None

    async def number(self) -> dict[str, Any]:
        """The phone number as Meta holds it: display number, verified name, quality."""
        try:
            return await self.client.call(
                "GET",
                f"/{self.phone_number_id}",
                params={"fields": "display_phone_number,verified_name,quality_rating"},
            )
        except Exception as exc:
            raise map_error(exc) from None

    async def health(self) -> ChannelHealth:
        """The number with the token (cached a minute): a bad token makes it unusable."""
        if time.monotonic() < self._healthy_until:
            return ChannelHealth(ok=True, detail="WhatsApp Cloud API number reachable")
        try:
            await self.number()
        except TransientError as error:
            # Messages wait in the outbox; Graph being slow does not stop the service.
            return ChannelHealth(ok=True, detail=f"Graph unreachable now: {error.code}")
        except ChannelError as error:
            return ChannelHealth(ok=False, detail=f"{error.code}: {error.message}")
        self._healthy_until = time.monotonic() + 60
        return ChannelHealth(ok=True, detail="WhatsApp Cloud API number reachable")


def build(settings: Settings, pool: Pool, redis: Redis) -> CloudChannel:
    from gomflow_messaging.settings import Environment

    return CloudChannel(
        settings,
        pool,
        redis,
        # Meta's media hosts are https; plain http only for a fake on loopback outside
        # production.
        allow_http_downloads=settings.environment is not Environment.production,
    )
