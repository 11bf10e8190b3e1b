"""The sandbox channel: records every message in Postgres, for local use, demos and drills."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import asyncpg

from gomflow_messaging.channels.base import ChannelHealth, OutboundMessage, SendResult
from gomflow_messaging.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings


class SandboxChannel:
    """Stores what it receives; an address starting with ``fail:`` or ``flaky:`` misbehaves.

    ``fail:...`` is refused permanently and ``flaky:...`` fails once transiently, so the
    error paths can be seen without a real platform. A repeated delivery of one message
    is counted (``deliveries``) instead of shown twice, as a platform honouring an
    idempotency key would.
    """

    name = "sandbox"
    max_text_length = 65_536

    def __init__(self, pool: Pool, *, delay_ms: int = 0) -> None:
        self._pool = pool
        self._delay = delay_ms / 1000

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

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
        payload = _payload(message)
        try:
            async with self._pool.acquire() as conn:
                if message.address.startswith("flaky:"):
                    seen = await conn.fetchval(
                        "SELECT count(*) FROM delivery_attempts WHERE message_id = $1",
                        message.message_id,
                    )
                    if seen <= 1:
                        raise TransientError(
                            "sandbox flaky address",
                            code="http_503",
                            platform=self.name,
                            retry_after=0.2,
                        )
                row_id = await conn.fetchval(
                    """
                    INSERT INTO sandbox_messages (message_id, address, payload)
                    VALUES ($1, $2, $3)
                    ON CONFLICT (message_id)
                    DO UPDATE SET deliveries = sandbox_messages.deliveries + 1
                    RETURNING id
                    """,
                    message.message_id,
                    message.address,
                    payload,
                )
        except (OSError, asyncpg.PostgresError) as exc:
            raise TransientError(
                f"sandbox store unavailable: {type(exc).__name__}",
                code="unavailable",
                platform=self.name,
            ) from None
        return SendResult(provider_message_id=f"sandbox-{row_id}")

    async def health(self) -> ChannelHealth:
        return ChannelHealth(ok=True, detail="records to Postgres")


def _payload(message: OutboundMessage) -> dict[str, Any]:
    data = asdict(message)
    data.pop("message_id")
    data.pop("address")
    return data


def build(settings: Settings, pool: Pool, redis: Redis) -> SandboxChannel:
    return SandboxChannel(pool, delay_ms=settings.sandbox_delay_ms)
