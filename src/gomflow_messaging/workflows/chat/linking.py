"""Linking a chat to a buyer's orders or a GOM's profile with a one-use code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gomflow_messaging import contacts
from gomflow_messaging.i18n import LOCALES
from gomflow_messaging.workflows import linking
from gomflow_messaging.workflows.chat.text import _, command
from gomflow_messaging.workflows.chat.types import Reply

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from gomflow_messaging.db import Pool
    from gomflow_messaging.workflows.chat.types import Context, GomChat, Handler


class LinkCommands:
    def __init__(self, pool: Pool, clock: Callable[[], datetime], gom_chat: GomChat) -> None:
        self.pool = pool
        self.clock = clock
        self.gom_chat = gom_chat

    def commands(self) -> dict[str, Handler]:
        return {"link": self.link}

    async def link(self, ctx: Context, args: str) -> list[Reply]:
        if not args:
            return [
                Reply(
                    _(
                        ctx,
                        "Send {command} followed by the code from GOMFLOW, e.g. {example}.",
                        command=command(ctx, "link"),
                        example=command(ctx, "link", "AB12CD34"),
                    ),
                    private=True,
                )
            ]
        return [await self.use(ctx, args.split()[0])]

    async def use(self, ctx: Context, code: str) -> Reply:
        redeemed = await linking.redeem(
            self.pool,
            code,
            contact_id=ctx.contact_id,
            used_by=f"{ctx.sender.channel}:{ctx.sender.address}",
            now=self.clock(),
        )
        if redeemed is None:
            return Reply(
                _(ctx, "That link code is not valid any more. Ask for a new one."), private=True
            )
        ctx.contact_id = redeemed.contact_id
        if redeemed.gom_id is not None:
            ctx.gom_id = redeemed.gom_id
        linked_locale = await contacts.locale_of(self.pool, ctx.contact_id)
        if linked_locale in LOCALES:
            ctx.locale = linked_locale  # answer in the language of the linked person
        if ctx.gom_id is not None:
            await self.gom_chat(ctx.sender, True)
            return Reply(
                _(
                    ctx,
                    "This chat is now linked to your GOM profile. Send {command} to see your "
                    "orders.",
                    command=command(ctx, "manage"),
                )
            )
        return Reply(_(ctx, "This chat is now linked to your GOMFLOW orders."))
