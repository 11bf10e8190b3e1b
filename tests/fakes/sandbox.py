"""The sandbox's 'platform' is its own table: the harness reads what it stored."""

from __future__ import annotations

from typing import Any

import asyncpg

from gomflow_messaging.channels.base import Channel
from gomflow_messaging.channels.sandbox.channel import SandboxChannel
from tests.contract import Fault, Received, Unsupported


class SandboxHarness:
    name = "sandbox"
    duplicates_after_lost_answer = 0  # a send and its record are one write
    max_text = 0  # no limit: one row holds any text

    def __init__(self, pool: Any, run: str) -> None:
        self._pool = pool
        self._run = run

    async def start(self) -> Channel:
        channel = SandboxChannel(self._pool)
        await channel.start()
        return channel

    def address(self, n: int) -> str:
        return f"contract-{self._run}-{n}"

    def blocked_address(self) -> str:
        return f"fail:contract-{self._run}"

    async def received(self, address: str) -> list[Received]:
        rows: list[asyncpg.Record] = await self._pool.fetch(
            "SELECT address, payload FROM sandbox_messages WHERE address = $1 ORDER BY id",
            address,
        )
        return [
            Received(
                address=r["address"],
                text=r["payload"]["text"],
                buttons=[b["label"] for row in r["payload"]["buttons"] for b in row],
                image_url=r["payload"]["image_url"],
            )
            for r in rows
        ]

    async def fail_next(self, fault: Fault, retry_after: float = 2.0) -> None:
        raise Unsupported(fault)

    async def close(self) -> None:
        return None
