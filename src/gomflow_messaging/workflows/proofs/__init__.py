"""Payment proofs: a receipt from any chat, to the Smart Agent or the GOM, and the answer back.

`intake` (the buyer's file: checks, which of their orders it pays), `agent` (the Smart
Agent's job and reading its answer), `review` (the GOM's list, approve, reject with a
reason; deciding), `urls` (signed image URLs). `PaymentProofs` is what the chat bot is
given (`workflows.chat.types.Proofs`): each answers with Replies and never calls the bot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomflow_messaging.workflows.proofs.intake import Intake
from gomflow_messaging.workflows.proofs.review import Review

if TYPE_CHECKING:
    from gomflow_messaging.workflows.chat.types import Context, IncomingFile, Reply
    from gomflow_messaging.workflows.ports import Ports


class PaymentProofs:
    """The proofs as the chat bot sees them: the buyer's intake and the GOM's review."""

    def __init__(self, ports: Ports) -> None:
        self.intake = Intake(ports)
        self.review = Review(ports)

    async def receive(self, ctx: Context, file: IncomingFile, caption: str) -> list[Reply]:
        return await self.intake.receive(ctx, file, caption)

    async def choose(self, ctx: Context, args: str) -> list[Reply]:
        return await self.intake.choose(ctx, args)

    async def review_list(self, ctx: Context, args: str = "") -> list[Reply]:
        return await self.review.review_list(ctx, args)

    async def approve(self, ctx: Context, args: str) -> list[Reply]:
        return await self.review.approve(ctx, args)

    async def reject(self, ctx: Context, args: str) -> list[Reply]:
        return await self.review.reject(ctx, args)
