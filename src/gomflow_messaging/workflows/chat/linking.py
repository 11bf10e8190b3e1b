"""Linking a chat to a buyer's order or a GOM's profile with a one-use code, by consent.

A code (``/start CODE`` from a deep link or an ``m.me`` referral, ``/link CODE``, ``LINK
CODE``, or the code alone) first shows what it links, with Confirm / Cancel; the code waits
in Redis under the PERSON (their channel and address) with the chat it was sent from, and
nothing changes until that person presses Confirm there (or in their own chat, where a
group's private answers go). Every offer, confirm and cancel is audited.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gomflow_messaging.workflows import audit, linking
from gomflow_messaging.workflows.chat.text import _, command, label, main_buttons
from gomflow_messaging.workflows.chat.types import Reply, button

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from redis.asyncio import Redis

    from gomflow_messaging.db import Pool
    from gomflow_messaging.workflows.chat.types import Context, GomChat, Handler

#: How long a shown code waits for its Confirm.
PENDING_TTL = 900
CONFIRM = "confirm"
CANCEL = "cancel"


def pending_key(channel: str, address: str) -> str:
    """Where the code a person was shown waits for their Confirm (erasing them forgets it)."""
    return f"gomflow:link-pending:{channel}:{address}"


def is_answer(args: str) -> bool:
    """``/link confirm`` or ``/link cancel``: a button press, not a code to try."""
    return args.strip().lower() in (CONFIRM, CANCEL)


class LinkCommands:
    def __init__(
        self, pool: Pool, redis: Redis, clock: Callable[[], datetime], gom_chat: GomChat
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.clock = clock
        self.gom_chat = gom_chat

    def commands(self) -> dict[str, Handler]:
        return {"link": self.link}

    async def link(self, ctx: Context, args: str) -> list[Reply]:
        word = args.split()[0] if args else ""
        if word.lower() == CONFIRM:
            return [await self.confirm(ctx)]
        if word.lower() == CANCEL:
            return [await self.cancel(ctx)]
        if not word:
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
        return [await self.offer(ctx, word)]

    async def offer(self, ctx: Context, code: str) -> Reply:
        """Show what ``code`` links, with Confirm / Cancel; nothing changes yet."""
        found = await linking.offer(self.pool, code, self.clock())
        if isinstance(found, str):
            await self._audit(ctx, "link.offer", "", found)
            return Reply(_unusable(ctx, found), private=True)
        key = pending_key(ctx.sender.channel, ctx.sender.address)
        pending = {"code": found.code, "chat": ctx.sender.chat}
        await self.redis.set(key, json.dumps(pending), ex=PENDING_TTL)
        if found.gom_id is not None:
            subject = f"gom:{found.gom_id}"
            text = _(
                ctx,
                "This links this chat to the GOM account of {name}: its orders, buyers and "
                "payments would be managed from here. Confirm only if you are this GOM.",
                name=found.name,
            )
        else:
            subject = ",".join(reference for reference, _title in found.orders)
            # Translators: {name} is the buyer's initials ("A. C."), {orders} one or more
            # "PH-AB12CD34 (order title)".
            text = _(
                ctx,
                "This links this chat to the order of {name}, {orders}: its reminders and "
                "updates would come here. Confirm only if this order is yours.",
                name=found.name,
                orders=", ".join(f"{ref} ({title})" for ref, title in found.orders),
            )
        await self._audit(ctx, "link.offer", subject, "shown")
        buttons = (
            (
                button(label(ctx, "Confirm"), f"link {CONFIRM}"),
                button(label(ctx, "Cancel"), f"link {CANCEL}"),
            ),
        )
        return Reply(text, buttons=buttons, private=True)

    async def _take_pending(self, ctx: Context) -> str | None:
        """The code this person was shown, if they answer in the chat it was shown for."""
        key = pending_key(ctx.sender.channel, ctx.sender.address)
        raw = await self.redis.get(key)
        if raw is None:
            return None
        pending = json.loads(raw)
        # The chat it was sent from, or the person's own chat (where a group's private
        # answers go): a press anywhere else does nothing, not even forget the code.
        if ctx.sender.chat not in (pending.get("chat"), ""):
            return None
        if not await self.redis.delete(key):
            return None  # a second press of the same button, answered by the first
        code: str = pending["code"]
        return code

    async def confirm(self, ctx: Context) -> Reply:
        code = await self._take_pending(ctx)
        if code is None:
            await self._audit(ctx, "link.confirm", "", "nothing_pending")
            return Reply(
                _(
                    ctx,
                    "No link is waiting for your confirmation here. Send the link code again.",
                ),
                private=True,
            )
        linked = await linking.confirm(
            self.pool,
            code,
            contact_id=ctx.contact_id,
            channel=ctx.sender.channel,
            address=ctx.sender.address,
            now=self.clock(),
        )
        if isinstance(linked, str):
            await self._audit(ctx, "link.confirm", "", linked)
            return Reply(_unusable(ctx, linked), private=True)
        ctx.contact_id = linked.contact_id
        await self._audit(ctx, "link.confirm", linked.subject, linked.result)
        if linked.result == "elsewhere":
            text = _(
                ctx,
                "This order is followed in another chat already, so it stays there: nothing "
                "was linked here.",
            )
            return Reply(text, private=True)
        if linked.result == "other_gom":
            text = _(
                ctx,
                "This chat is linked to another GOM account already: nothing was changed.",
            )
            return Reply(text, private=True)
        if linked.gom_id is not None:
            ctx.gom_id = linked.gom_id
            if linked.result == "linked":
                await self.gom_chat(ctx.sender, True)
            return Reply(
                _(
                    ctx,
                    "This chat is now linked to your GOM profile. Send {command} to see your "
                    "orders.",
                    command=command(ctx, "manage"),
                ),
                private=True,
            )
        return Reply(
            _(ctx, "This chat is now linked to your GOMFLOW orders."),
            buttons=main_buttons(ctx),
            private=True,
        )

    async def cancel(self, ctx: Context) -> Reply:
        code = await self._take_pending(ctx)
        await self._audit(ctx, "link.cancel", "", "cancelled" if code else "nothing_pending")
        return Reply(_(ctx, "Cancelled: nothing was linked."), buttons=main_buttons(ctx))

    async def _audit(self, ctx: Context, action: str, subject: str, result: str) -> None:
        await audit.link(self.pool, ctx, action, subject, result)


def _unusable(ctx: Context, why: linking.Unusable) -> str:
    if why == "used":
        return _(ctx, "That link code was used already. Ask for a new one if you need it.")
    if why == "expired":
        return _(ctx, "That link code has expired. Ask for a new one.")
    return _(ctx, "That link code is not valid. Check it, or ask for a new one.")
