"""Conversation state in Redis (a flow such as joining an order, step by step), never in memory.

Two replicas answer the same person: what they are in the middle of lives in Redis, keyed by
the person on their channel, and expires after CONVERSATION_TTL.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gomflow_messaging.workflows.chat.text import _, main_buttons
from gomflow_messaging.workflows.chat.types import Reply

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.workflows.chat.types import Context, Sender

CONVERSATION_TTL = 3600


class Conversation:
    """One person's conversation in one chat."""

    def __init__(self, redis: Redis, sender: Sender) -> None:
        self._redis = redis
        self._key = f"gomflow:conversation:{sender.channel}:{sender.address}"

    async def load(self) -> dict[str, Any] | None:
        raw = await self._redis.get(self._key)
        state: dict[str, Any] | None = json.loads(raw) if raw else None
        return state

    async def save(self, ctx: Context, state: dict[str, Any]) -> None:
        ctx.state = state
        await self._redis.set(self._key, json.dumps(state), ex=CONVERSATION_TTL)

    async def clear(self, ctx: Context) -> None:
        ctx.state = None
        await self._redis.delete(self._key)


async def cancel(ctx: Context, args: str = "") -> list[Reply]:
    """``/cancel``: end whatever the person was in the middle of."""
    had = ctx.state is not None
    await ctx.conversation.clear(ctx)
    text = _(ctx, "Cancelled.") if had else _(ctx, "There is nothing to cancel.")
    return [Reply(text, buttons=main_buttons(ctx))]
