"""The sandbox channel: records every message in Postgres, for local use, demos and drills."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from gomflow_messaging.channels.base import ChannelHealth, OutboundMessage, SendResult
from gomflow_messaging.errors import PermanentError, TransientError
from gomflow_messaging.group_commit import GroupCommit

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

# Messages sent at the same moment are stored in one statement; a repeat of one message
# (two sends in one write included) counts as a further delivery of its row.
_RECORD = """
    INSERT INTO sandbox_messages (message_id, address, payload, deliveries)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[])
    ON CONFLICT (message_id)
    DO UPDATE SET deliveries = sandbox_messages.deliveries + excluded.deliveries
    RETURNING id, message_id
"""


class SandboxChannel:
    """Stores what it receives; an address starting with ``fail:`` or ``flaky:`` misbehaves.

    ``fail:...`` is refused permanently and ``flaky:...`` fails once transiently, so the
    error paths can be seen without a real platform. A repeated delivery of one message
    is counted (``deliveries``) instead of shown twice, as a platform honouring an
    idempotency key would.

    Sends are stored by group commit (`GroupCommit`, as the dispatcher records their
    outcomes), so a campaign's sends cost a statement per few messages rather than one each.
    """

    name = "sandbox"
    max_text_length = 65_536

    def __init__(self, pool: Pool, *, delay_ms: int = 0) -> None:
        self._pool = pool
        self._delay = delay_ms / 1000
        self._stored: GroupCommit[OutboundMessage, int] = GroupCommit(self._store)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self._stored.close()

    def validate_address(self, address: str) -> str:
        address = address.strip()
        if not address or len(address) > 200:
            raise ValueError("must be 1 to 200 characters")
        return address

    async def send(self, message: OutboundMessage) -> SendResult:
        if self._delay:
            await asyncio.sleep(self._delay)
        if message.address.startswith("fail:"):
            raise PermanentError(
                "sandbox address refuses messages",
                code="rejected",
                platform=self.name,
                address_unreachable=True,
            )
        if message.address.startswith("flaky:"):
            await self._fail_the_first_attempt(message.message_id)
        # A send given up meanwhile (its timeout) stops only its own wait: the row may still
        # be written, as a platform may still deliver a message nobody waited for.
        row_id = await self._stored.add(message)
        return SendResult(provider_message_id=f"sandbox-{row_id}")

    async def _fail_the_first_attempt(self, message_id: UUID) -> None:
        try:
            seen = await self._pool.fetchval(
                "SELECT count(*) FROM delivery_attempts WHERE message_id = $1", message_id
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise _unavailable(exc) from None
        if seen <= 1:
            raise TransientError(
                "sandbox flaky address", code="http_503", platform=self.name, retry_after=0.2
            )

    async def _store(self, messages: list[OutboundMessage]) -> list[int | BaseException]:
        """Each message's row id, or why it could not be stored."""
        try:
            ids = await self._record(messages)
        except asyncpg.DataError as exc:
            if len(messages) > 1:
                # One message Postgres refuses must not fail those written with it.
                return [outcome for m in messages for outcome in await self._store([m])]
            return [
                PermanentError(
                    f"sandbox cannot store this message: {type(exc).__name__}",
                    code="rejected",
                    platform=self.name,
                )
            ]
        except (OSError, asyncpg.PostgresError) as exc:
            return [_unavailable(exc)] * len(messages)
        return [ids[m.message_id] for m in messages]

    async def _record(self, messages: list[OutboundMessage]) -> dict[UUID, int]:
        count: dict[UUID, int] = {}
        first: dict[UUID, OutboundMessage] = {}
        for message in messages:
            count[message.message_id] = count.get(message.message_id, 0) + 1
            first.setdefault(message.message_id, message)
        rows = await self._pool.fetch(
            _RECORD,
            list(first),
            [m.address for m in first.values()],
            [_payload(m) for m in first.values()],
            list(count.values()),
        )
        return {row["message_id"]: row["id"] for row in rows}

    async def health(self) -> ChannelHealth:
        return ChannelHealth(ok=True, detail="records to Postgres")


def _unavailable(exc: BaseException) -> TransientError:
    return TransientError(
        f"sandbox store unavailable: {type(exc).__name__}", code="unavailable", platform="sandbox"
    )


def _payload(message: OutboundMessage) -> dict[str, Any]:
    """The message as the platform would hold it: every field but the id and the address
    (built by hand: `dataclasses.asdict` deep-copies, a twentieth of a sandbox send)."""
    template = message.template
    return {
        "text": message.text,
        "event": message.event,
        "locale": message.locale,
        "buttons": [
            [{"label": b.label, "action": b.action, "url": b.url} for b in row]
            for row in message.buttons
        ],
        "image_url": message.image_url,
        "template": None
        if template is None
        else {"name": template.name, "variables": dict(template.variables)},
        "extra": message.extra,
    }


def build(settings: Settings, pool: Pool, redis: Redis) -> SandboxChannel:
    return SandboxChannel(pool, delay_ms=settings.sandbox_delay_ms)
