"""Facebook Messenger through the Graph API's Send API (httpx; Meta keeps no Python SDK).

Messenger allows free-form messages only within 24 hours of the person's last message
(`contact_addresses.last_inbound_at`). Outside it, updates about a purchase still go with
``messaging_type: MESSAGE_TAG`` and ``tag: POST_PURCHASE_UPDATE`` (TAGGED_EVENTS); anything
else (reminders, broadcasts, custom text) is skipped with reason ``outside_window`` so the
next route is tried, never sent to fail. Every Graph failure becomes our own error in
`map_error`; the Page's pace is shared by every worker through the Pacer.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from gomflow_messaging.channels.base import (
    ChannelHealth,
    DeliveredParts,
    OutboundMessage,
    SendResult,
    on_hosts,
    read_at_most,
)
from gomflow_messaging.channels.messenger.profile import FIELDS, profile_body
from gomflow_messaging.channels.messenger.render import render_message
from gomflow_messaging.channels.meta_graph import GraphClient, GraphError, transport_error
from gomflow_messaging.channels.pacing import Limit, Pacer
from gomflow_messaging.errors import ChannelError, PermanentError, SkipMessage, TransientError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from gomflow_messaging.channels.messenger.settings import MessengerSettings
    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "messenger"
#: Events about a purchase the person made: allowed outside the window with this tag.
TAGGED_EVENTS = frozenset(
    {
        "order_confirmation",
        "payment_confirmed",
        "payment_rejected",
        "order_status_update",
        "hold_expired",
        "hold_cancelled",
    }
)
TAG = "POST_PURCHASE_UPDATE"
#: Graph error codes meaning "too many calls": wait, then retry. 80006 is the Send API's
#: business (Page) rate limit, the one a busy Page meets; it names its wait, if at all, in
#: X-Business-Use-Case-Usage, else the pause (MESSENGER_RATE_LIMIT_PAUSE_SECONDS) applies.
RATE_LIMIT_CODES = frozenset({4, 32, 613, 80006})
#: Graph error codes worth retrying at once: unknown error, service temporarily unavailable.
SERVER_CODES = frozenset({1, 2})
UNAVAILABLE_CODE = 551
BAD_TOKEN_CODE = 190
WINDOW_CODE, WINDOW_SUBCODE = 10, 2018278
#: Meta's CDN redirects an attachment URL once or twice; more hops are refused.
MAX_REDIRECTS = 3


def map_error(exc: BaseException, pause: float = 60.0) -> ChannelError:
    """Every failure of Graph, the network, Redis or Postgres as our own error.

    ``pause`` is the wait after a rate-limit error that names none (Graph usually doesn't).
    """
    if isinstance(exc, GraphError):
        text = exc.describe()
        if exc.code in RATE_LIMIT_CODES or exc.status == 429:
            return TransientError(
                text,
                code="rate_limited",
                platform=PLATFORM,
                retry_after=exc.retry_after if exc.retry_after is not None else pause,
            )
        if exc.code == UNAVAILABLE_CODE:
            return PermanentError(
                text, code="unreachable", platform=PLATFORM, address_unreachable=True
            )
        if exc.code == BAD_TOKEN_CODE or (exc.status == 401 and not exc.code):
            return PermanentError(text, code="bad_credentials", platform=PLATFORM)
        if exc.code == WINDOW_CODE and exc.subcode == WINDOW_SUBCODE:
            return SkipMessage(text, code="outside_window", platform=PLATFORM)
        if exc.status >= 500 or exc.code in SERVER_CODES:
            return TransientError(
                text, code=f"http_{exc.status}", platform=PLATFORM, retry_after=exc.retry_after
            )
        return PermanentError(
            text, code=f"graph_{exc.code}" if exc.code else f"http_{exc.status}", platform=PLATFORM
        )
    return transport_error(exc, PLATFORM)


class MessengerChannel:
    """One Facebook Page; its workers share one pace through Redis."""

    name = PLATFORM
    #: The standard messaging window, less a margin: a message queued at the very edge
    #: would otherwise fail later with code 10 / 2018278.
    window_seconds = 24 * 3600 - 300

    def __init__(
        self,
        config: MessengerSettings | Settings,
        pool: Pool | None,
        redis: Redis | None,
        *,
        queue_name: str,
        max_file_size: int,
        allow_http_downloads: bool = False,
    ) -> None:
        assert config.messenger_page_access_token is not None
        self.config = config
        self._pool = pool
        self.client = GraphClient(
            config.messenger_api_base_url,
            config.messenger_page_access_token.get_secret_value(),
            config.messenger_timeout_seconds,
        )
        self._max_file_size = max_file_size
        self._allow_http = allow_http_downloads
        prefix = f"gomflow:{queue_name}"
        self._parts = DeliveredParts(redis, f"{prefix}:messenger")
        self._pacer = Pacer(redis, prefix) if redis is not None else None
        self._scope = "messenger:page"
        self._limit = Limit(self._scope, config.messenger_rate_per_second)
        self._healthy_until = 0.0
        self._page: dict[str, Any] = {}

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    def validate_address(self, address: str) -> str:
        """A page-scoped id (PSID): digits only, as Meta gives them."""
        value = address.strip()
        if not (value.isdigit() and 5 <= len(value) <= 25):
            raise ValueError("must be a Messenger page-scoped id (PSID): digits only")
        return value

    # -- Graph calls ---------------------------------------------------------------------

    async def graph(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One Graph API call with the Page token (as a Bearer header: never in a URL that
        could be logged); any failure raised as our own error."""
        try:
            return await self.client.call(method, path, body=body, params=params)
        except Exception as exc:
            raise map_error(exc, self.config.messenger_rate_limit_pause_seconds) from None

    async def post_message(
        self, psid: str, message: dict[str, Any], messaging: dict[str, str]
    ) -> str:
        """Send one ``message`` object at the Page's pace; the Graph message id."""
        body = {"recipient": {"id": psid}, **messaging, "message": message}
        try:
            if self._pacer is None:
                answer = await self.graph("POST", "/me/messages", body=body)
            else:
                # The send counts in the Page's window from when it leaves until it is done.
                async with self._pacer.slot([self._limit]):
                    answer = await self.graph("POST", "/me/messages", body=body)
        except TransientError as error:
            if error.code == "rate_limited" and self._pacer is not None:
                await self._pacer.hold_back(self._scope, error.retry_after or 1.0)
            raise
        return str(answer.get("message_id") or "")

    # -- sending -------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            messaging = await self._messaging(message)
            parts = render_message(message)
            ids = []
            done = await self._parts.load(message.message_id) if len(parts) > 1 else {}
            for index, part in enumerate(parts):
                # A retry after part 2 failed must not send part 1 again.
                if index in done:
                    ids.append(done[index])
                    continue
                ids.append(await self.post_message(message.address, part, messaging))
                if len(parts) > 1:
                    await self._parts.mark(message.message_id, index, ids[-1])
        except Exception as exc:
            raise map_error(exc, self.config.messenger_rate_limit_pause_seconds) from None
        return SendResult(provider_message_id=ids[0])

    async def _messaging(self, message: OutboundMessage) -> dict[str, str]:
        """RESPONSE/UPDATE inside the window, the purchase tag outside it, else skip."""
        if await self.in_window(message.address):
            return {"messaging_type": "UPDATE"}
        if message.event in TAGGED_EVENTS:
            return {"messaging_type": "MESSAGE_TAG", "tag": TAG}
        raise SkipMessage(
            f"outside Messenger's 24-hour window, and {message.event} is not a purchase update",
            code="outside_window",
            platform=PLATFORM,
        )

    async def in_window(self, psid: str) -> bool:
        assert self._pool is not None, "a channel without a database sends nothing"
        inside: bool | None = await self._pool.fetchval(
            """
            SELECT last_inbound_at > now() - make_interval(secs => $2)
              FROM contact_addresses WHERE channel = 'messenger' AND address = $1
            """,
            psid,
            self.window_seconds,
        )
        return bool(inside)

    async def send_reply(self, psid: str, messages: list[dict[str, Any]]) -> None:
        """Answers to what the person just wrote (inside the window by definition)."""
        for message in messages:
            await self.post_message(psid, message, {"messaging_type": "RESPONSE"})

    # -- attachments, profile, health ----------------------------------------------------

    async def download_attachment(self, url: str) -> bytes:
        """A buyer's image from Meta's CDN, each redirect hop on the allowed hosts, bounded."""
        limit = self._max_file_size
        too_large = PermanentError(
            f"attachment larger than {limit} bytes", code="too_large", platform=PLATFORM
        )
        hosts = tuple(
            h.strip().lower()
            for h in self.config.messenger_attachment_hosts.split(",")
            if h.strip()
        )
        target = url
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                if not on_hosts(target, hosts, allow_http=self._allow_http):
                    raise PermanentError(
                        "attachment is not on Meta's CDN", code="untrusted_url", platform=PLATFORM
                    )
                # No token here: the CDN URL is signed by Meta itself.
                async with self.client.http.stream("GET", target) as response:
                    if response.is_redirect:
                        target = urljoin(target, response.headers.get("location", ""))
                        continue
                    if response.status_code >= 400:
                        raise GraphError(response.status_code, message="attachment download")
                    if int(response.headers.get("content-length") or 0) > limit:
                        raise too_large
                    return await read_at_most(response.aiter_bytes(), limit, too_large)
            raise PermanentError(
                "attachment redirected too many times", code="untrusted_url", platform=PLATFORM
            )
        except Exception as exc:
            raise map_error(exc, self.config.messenger_rate_limit_pause_seconds) from None

    async def page(self) -> dict[str, Any]:
        """The Page the token belongs to (``GET /me``): id and name."""
        if not self._page:
            self._page = await self.graph("GET", "/me", params={"fields": "id,name"})
        return self._page

    async def command_status(self, expected: Sequence[object]) -> dict[str, Any]:
        """The Page's menu and Get Started as Meta holds them, and whether they are ours.

        Messenger keeps no command list: the persistent menu is what people see; they type
        the rest (``expected``, the bot's commands) as words.
        """
        wanted = profile_body()
        try:
            answer = await self.graph(
                "GET", "/me/messenger_profile", params={"fields": ",".join(FIELDS)}
            )
        except ChannelError as exc:
            return {
                "source": "local",
                "note": "Graph could not be asked; this is what messenger-profile set would set",
                "error": exc.code,
                "menu": _menu(wanted),
                "in_sync": None,
            }
        data = answer.get("data") or [{}]
        held: dict[str, Any] = data[0] if isinstance(data, list) and data else {}
        return {
            "source": "messenger_profile",
            "note": "fetched from Meta just now; people type the bot's commands as words",
            "get_started": held.get("get_started"),
            "menu": _menu(held),
            "commands": [getattr(c, "name", "") for c in expected],
            "in_sync": all(held.get(name) == wanted[name] for name in FIELDS),
        }

    async def health(self) -> ChannelHealth:
        """``GET /me`` with the token (cached): a bad token makes the channel unusable."""
        if time.monotonic() < self._healthy_until:
            return ChannelHealth(ok=True, detail="Messenger Page token valid")
        try:
            self._page = await self.graph("GET", "/me", params={"fields": "id,name"})
        except TransientError as error:
            # Messages wait in the outbox: degraded, not down.
            return ChannelHealth(ok=False, detail=f"Graph unreachable now: {error.code}", away=True)
        except ChannelError as error:
            return ChannelHealth(ok=False, detail=f"{error.code}: {error.message}")
        self._healthy_until = time.monotonic() + self.config.messenger_health_cache_seconds
        return ChannelHealth(ok=True, detail="Messenger Page token valid")


def _menu(profile: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Locale -> the persistent menu's items (title, payload)."""
    return {
        str(menu.get("locale")): [
            {"title": str(item.get("title")), "payload": str(item.get("payload", ""))}
            for item in menu.get("call_to_actions") or []
        ]
        for menu in profile.get("persistent_menu") or []
    }


def build(settings: Settings, pool: Pool, redis: Redis) -> MessengerChannel:
    from gomflow_messaging.settings import Environment

    return MessengerChannel(
        settings,
        pool,
        redis,
        queue_name=settings.queue_name,
        max_file_size=settings.max_file_size,
        # Meta's CDN is https; plain http only for a fake on loopback outside production.
        allow_http_downloads=settings.environment is not Environment.production,
    )
