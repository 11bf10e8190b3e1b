"""The Channel protocol: a channel-agnostic message in, a platform call out, our errors only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit
from uuid import UUID

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redis.asyncio import Redis


@dataclass(frozen=True)
class Button:
    """A button under a message: opens ``url`` or sends ``action`` back to the bot."""

    label: str
    action: str = ""
    url: str = ""


class CardLike(Protocol):
    """An order card as channels render it (``workflows.chat.types.Card``), without
    importing workflows."""

    @property
    def title(self) -> str: ...

    @property
    def fields(self) -> tuple[tuple[str, str], ...]: ...

    @property
    def button(self) -> Button | None: ...


@dataclass(frozen=True)
class TemplateRef:
    """An approved platform template (WhatsApp Content API) and its variables."""

    name: str
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    """What the dispatcher hands an adapter. ``message_id`` doubles as an idempotency key."""

    message_id: UUID
    address: str
    text: str
    event: str = "custom"
    locale: str = "en"
    buttons: tuple[tuple[Button, ...], ...] = ()
    image_url: str = ""
    template: TemplateRef | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, message_id: UUID, address: str, body: dict[str, Any]) -> OutboundMessage:
        """Rebuild a message from the JSON body stored in the outbox."""
        rows = tuple(tuple(Button(**button) for button in row) for row in body.get("buttons") or ())
        template = body.get("template")
        if template is None and body.get("template_variables"):
            template = {
                "name": body.get("event", "custom"),
                "variables": body["template_variables"],
            }
        return cls(
            message_id=message_id,
            address=address,
            text=body.get("text", ""),
            event=body.get("event", "custom"),
            locale=body.get("locale", "en"),
            buttons=rows,
            image_url=body.get("image_url", ""),
            template=TemplateRef(**template) if template else None,
            extra=body.get("extra") or {},
        )


@dataclass(frozen=True)
class SendResult:
    """A platform accepted the message."""

    provider_message_id: str = ""


@dataclass(frozen=True)
class ChannelHealth:
    """``ok`` False makes the service degraded (messages wait in the outbox); ``away`` says the
    platform is unreachable now (network, 5xx, timeout) rather than refusing our settings, so
    `doctor` warns instead of failing."""

    ok: bool
    detail: str = ""
    away: bool = False


@runtime_checkable
class Channel(Protocol):
    """Every platform adapter. ``send`` raises only `TransientError` or `PermanentError`."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def health(self) -> ChannelHealth: ...

    def validate_address(self, address: str) -> str:
        """Return the normalised address or raise ValueError with a reason."""
        ...


async def read_at_most(chunks: AsyncIterator[bytes], limit: int, too_large: Exception) -> bytes:
    """A downloaded file, refused (``too_large``) the moment it passes ``limit`` bytes."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise too_large
    return bytes(data)


def split_text(text: str, limit: int) -> list[str]:
    """Cut text into parts of at most ``limit`` characters, at line breaks where possible."""
    parts: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(text[:cut])
        text = text[cut:].lstrip("\n") if text[cut : cut + 1] == "\n" else text[cut:]
    if text:
        parts.append(text)
    return parts


class DeliveredParts:
    """Which parts of a split message the platform already accepted, kept in Redis for a day.

    A retry after part 2 failed must not send part 1 again: adapters skip what `load`
    returns and `mark` each part once accepted. Redis trouble only loses the memory (a
    retry might then repeat a part); it never fails a send.
    """

    TTL = 24 * 3600

    def __init__(self, redis: Redis | None, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, message_id: UUID | str) -> str:
        return f"{self._prefix}:parts:{message_id}"

    async def load(self, message_id: UUID | str) -> dict[int, str]:
        """Part index -> the platform's id for it."""
        if self._redis is None:
            return {}
        try:
            stored = await self._redis.hgetall(self._key(message_id))  # type: ignore[misc]
        except (RedisError, OSError):
            return {}
        return {int(k): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in stored.items()}

    async def mark(self, message_id: UUID | str, index: int, provider_id: str) -> None:
        if self._redis is None:
            return
        key = self._key(message_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, str(index), provider_id)
                pipe.expire(key, self.TTL)
                await pipe.execute()
        except (RedisError, OSError):
            pass


# -- for the channels' settings models (channels/<name>/settings.py) ----------------------


def empty_is_none(value: Any) -> Any:
    """``TELEGRAM_BOT_TOKEN=`` (as .env.example has it) means "not set", not an empty secret."""
    return None if value == "" else value


def http_url(value: str) -> str:
    """A base URL setting: http(s), without its trailing slash."""
    if urlsplit(value).scheme not in ("http", "https"):
        raise ValueError("must be an http(s):// URL")
    return value.rstrip("/")


def optional_http_url(value: str) -> str:
    """``http_url``, where "" means the platform's own (not set)."""
    return http_url(value) if value else value


#: While `collecting_credential_problems` runs, missing credentials are gathered here instead
#: of raised: pydantic stops at the first model validator that raises, so a second look with
#: this set names every channel's in one line (settings.load_settings).
_credential_problems: ContextVar[list[str] | None] = ContextVar("credential_problems", default=None)


@contextmanager
def collecting_credential_problems() -> Iterator[list[str]]:
    found: list[str] = []
    token = _credential_problems.set(found)
    try:
        yield found
    finally:
        _credential_problems.reset(token)


def missing_credentials(problem: str) -> None:
    """A channel switched on without what it needs: raise, or note it while collecting."""
    found = _credential_problems.get()
    if found is None:
        raise ValueError(problem)
    found.append(problem)


def require_when_enabled(settings: Any, name: str, variables: tuple[str, ...]) -> None:
    """A channel switched on without credentials stops start-up, naming every one missing."""
    if not getattr(settings, f"enable_{name}"):
        return
    missing = [variable.upper() for variable in variables if not getattr(settings, variable)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        missing_credentials(
            f"{' and '.join(missing)} {verb} required when ENABLE_{name.upper()} is true"
        )


def on_hosts(url: str, hosts: tuple[str, ...], *, allow_http: bool = False) -> bool:
    """``url`` is on one of ``hosts``: ``host`` (any port), ``host:port``, or ``*.domain``.

    The one check every channel's download passes (and each redirect hop it follows), so a
    file is fetched only from the platform's own hosts (tests name a loopback host).
    """
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        return False
    try:
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None:
        return False
    for allowed in hosts:
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                return True
        elif host == allowed or (port is not None and f"{host}:{port}" == allowed):
            return True
    return False


def choices_key(queue_name: str, channel: str, address: str) -> str:
    """Where a chat remembers the numbered choices it last showed a person (Redis): a
    person's state like a conversation's, so erasing the person forgets it too."""
    return f"gomflow:{queue_name}:choices:{channel}:{address}"
