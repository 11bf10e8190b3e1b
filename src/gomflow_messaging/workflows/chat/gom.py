"""A GOM's commands: their orders at a glance, remind unpaid buyers, close, open a new order,
the payment proofs waiting for their review (answered by workflows/proofs), and a sign-in
link to the web console.

`remind_unpaid` and `close_order` are the one code path for those actions: the chat commands
and the web console (``place="console"``) both call them, and they write the audit row."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gomflow_messaging import orders as order_data
from gomflow_messaging.free_text import quoted
from gomflow_messaging.i18n import ngettext
from gomflow_messaging.money import format_money
from gomflow_messaging.workflows import audit, holds
from gomflow_messaging.workflows.chat.buyer import YES
from gomflow_messaging.workflows.chat.conversation import cancel
from gomflow_messaging.workflows.chat.text import (
    _,
    cancel_button,
    command,
    confirm_buttons,
    gom_only,
    label,
    status_name,
    when,
    whole_number,
)
from gomflow_messaging.workflows.chat.types import Form, FormField, Reply, button

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from redis.asyncio import Redis

    from gomflow_messaging.channels.base import Button
    from gomflow_messaging.db import Pool
    from gomflow_messaging.workflows.chat.types import Context, Handler, Proofs

    #: workflows.holds.cancel_hold with its ports: (submission id, GOM profile id, channel).
    CancelHold = Callable[[UUID, UUID, str], Awaitable[holds.CancelResult]]

_CREATE_STEPS = ("title", "price", "currency", "deadline", "max_orders", "max_per_buyer")
_SKIP = {"skip", "-", "none", "wala", "tiada"}


class GomCommands:
    def __init__(
        self,
        pool: Pool,
        redis: Redis,
        clock: Callable[[], datetime],
        proofs: Proofs,
        remind_now: Callable[[UUID], Awaitable[int]],
        cancel_hold: CancelHold,
        default_max_per_buyer: int,
        console_link: Callable[[UUID], Awaitable[str]] | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.clock = clock
        self.proofs = proofs
        #: Reminds an order's unpaid buyers now; returns how many.
        self.remind_now = remind_now
        #: workflows.holds.cancel_hold with the ports bound: (submission, GOM, where) -> result.
        self.cancel_hold = cancel_hold
        #: The per-buyer cap of an order whose GOM leaves it to us (DEFAULT_MAX_PER_BUYER).
        self.default_max_per_buyer = default_max_per_buyer
        #: A one-time sign-in link to the web console for a GOM's profile (None: no console).
        self.console_link = console_link

    def commands(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            "manage": self.manage,
            "dashboard": self.manage,
            "close": self.close,
            "remind": self.remind,
            "create": self.create,
            "payments": self.payments,
            "approve": self.approve,
            "reject": self.reject,
            "holds": self.list_holds,
            "cancelhold": self.cancel_hold_command,
            "console": self.console,
        }
        return {name: _gom_only_guard(handler) for name, handler in handlers.items()}

    async def manage(self, ctx: Context, args: str) -> list[Reply]:
        assert ctx.gom_id is not None
        entries = await order_data.gom_orders(self.pool, ctx.gom_id)
        if not entries:
            return [
                Reply(
                    _(
                        ctx,
                        "You have no orders yet. Send {command} to open one.",
                        command=command(ctx, "create"),
                    ),
                    private=True,
                )
            ]
        replies = []
        for entry in entries:
            order: order_data.Order = entry["order"]
            lines = [
                order.title if order.is_active else _(ctx, "{title} (closed)", title=order.title),
                _(
                    ctx,
                    "Paid: {paid} · Waiting for payment: {pending}",
                    paid=entry["paid"],
                    pending=entry["pending"],
                ),
                _(ctx, "Collected: {v}", v=format_money(entry["collected"], order.currency)),
                _(ctx, "Deadline: {deadline}", deadline=when(ctx, order.deadline)),
            ]
            actions: tuple[tuple[Button, ...], ...] = ()
            if order.is_active:
                row = [button(label(ctx, "Close order"), f"close {order.id}")]
                if entry["pending"]:
                    row.insert(0, button(label(ctx, "Remind unpaid buyers"), f"remind {order.id}"))
                actions = (tuple(row),)
            if entry["pending"]:
                actions += ((button(label(ctx, "Unpaid holds"), f"holds {order.id}"),),)
            replies.append(Reply("\n".join(lines), buttons=actions, private=True))
        row = [button(_(ctx, "Review payments"), "payments")]
        if self.console_link is not None:
            row.append(button(label(ctx, "Console"), "console"))
        replies.append(
            Reply(
                _(ctx, "Payment proofs waiting for your review:"),
                buttons=(tuple(row),),
                private=True,
            )
        )
        return replies

    async def console(self, ctx: Context, args: str) -> list[Reply]:
        """A one-time sign-in link to the web console, to this GOM only (never a group)."""
        assert ctx.gom_id is not None
        if self.console_link is None:
            return [Reply(_(ctx, "The web console is not available here."), private=True)]
        url = await self.console_link(ctx.gom_id)
        await audit.from_chat(self.pool, ctx, "console.link", "")
        text = _(
            ctx,
            "Your sign-in link to the web console (one use, valid for 10 minutes; do not "
            "share it):\n{url}",
            url=url,
        )
        return [Reply(text, private=True)]

    async def _own_order(self, ctx: Context, args: str) -> order_data.Order | None:
        order = await order_data.find_order(self.pool, args.split()[0]) if args else None
        return order if order is not None and order.gom_id == ctx.gom_id else None

    async def remind(self, ctx: Context, args: str) -> list[Reply]:
        """The GOM's "send reminders now": every unpaid buyer of one order, once an hour."""
        assert ctx.gom_id is not None
        order = await self._own_order(ctx, args)
        if order is None:
            return [Reply(_(ctx, "I could not find that order among yours."), private=True)]
        await audit.from_chat(self.pool, ctx, "order.remind", str(order.id))
        count = await self.remind_unpaid(ctx.gom_id, order.id, place=ctx.sender.channel)
        if count is None:
            return [
                Reply(
                    _(
                        ctx,
                        "Reminders for {title} went out less than an hour ago.",
                        title=order.title,
                    ),
                    private=True,
                )
            ]
        sent = ngettext(
            ctx.locale,
            "Reminder sent to {n} buyer who has not paid yet.",
            "Reminders sent to {n} buyers who have not paid yet.",
            count,
            n=count,
        )
        return [Reply(sent, private=True)]

    async def close(self, ctx: Context, args: str) -> list[Reply]:
        assert ctx.gom_id is not None
        order = await self._own_order(ctx, args)
        if order is None:
            return [Reply(_(ctx, "I could not find that order among yours."), private=True)]
        await self.close_order(ctx.gom_id, order.id, place=ctx.sender.channel)
        return [Reply(_(ctx, "{title} is closed to new buyers.", title=order.title), private=True)]

    async def remind_unpaid(self, gom_id: UUID, order_id: UUID, *, place: str) -> int | None:
        """Remind the order's unpaid buyers now: how many, or None when reminders for it
        went out less than an hour ago (from any chat or the console)."""
        fresh = await self.redis.set(f"gomflow:remind-now:{order_id}", "1", ex=3600, nx=True)
        if not fresh:
            return None
        count = await self.remind_now(order_id)
        await audit.admin(
            self.pool,
            actor=f"gom:{gom_id}",
            action="order.remind",
            channel=place,
            subject=str(order_id),
            result="sent",
            detail={"reminders": count},
        )
        return count

    async def close_order(self, gom_id: UUID, order_id: UUID, *, place: str) -> bool:
        """Close the GOM's own order to new buyers; False when it was closed already."""
        closed = await order_data.close_order(self.pool, order_id, gom_id)
        await audit.admin(
            self.pool,
            actor=f"gom:{gom_id}",
            action="order.close",
            channel=place,
            subject=str(order_id),
            result="closed" if closed else "already_closed",
            detail={},
        )
        return closed

    # -- unpaid holds (workflows/holds) ---------------------------------------------------

    async def list_holds(self, ctx: Context, args: str) -> list[Reply]:
        """An order's unpaid submissions, each with a button that cancels its hold."""
        assert ctx.gom_id is not None
        order = await self._own_order(ctx, args)
        if order is None:
            return [Reply(_(ctx, "I could not find that order among yours."), private=True)]
        rows = await holds.unpaid_holds(self.pool, order.id, ctx.gom_id)
        if not rows:
            text = _(ctx, "Nobody holds unpaid items in {title}.", title=order.title)
            return [Reply(text, private=True)]
        lines = [
            _(
                ctx,
                "Unpaid holds in {title}. Press a reference to cancel its hold; "
                "you will be asked to confirm.",
                title=order.title,
            )
        ]
        for r in rows:
            lines.append(
                f"{r['payment_reference']} · {quoted(r['buyer_name'])} · x{r['quantity']} · "
                f"{when(ctx, r['created_at'])}"
            )
        # The reference is the whole label: the same in every language, 11 characters.
        buttons = tuple(
            (button(r["payment_reference"], f"cancelhold {r['payment_reference']}"),) for r in rows
        )
        return [Reply("\n".join(lines), buttons=buttons, private=True)]

    async def cancel_hold_command(self, ctx: Context, args: str) -> list[Reply]:
        """``cancelhold REF`` asks; ``cancelhold REF confirm`` (its button) cancels."""
        assert ctx.gom_id is not None
        words = args.split()
        found = await holds.find_hold(self.pool, words[0], ctx.gom_id) if words else None
        if found is None:
            # Another GOM's reference reads exactly as one that does not exist.
            return [
                Reply(
                    _(ctx, "I found no submission with that reference in your orders."),
                    private=True,
                )
            ]
        what = {
            "ref": found["payment_reference"],
            "name": quoted(found["buyer_name"]),
            "n": found["quantity"],
            "title": found["title"],
        }
        if found["status"] != "pending":
            text = _(
                ctx,
                "{ref} is {status}: only an unpaid hold can be cancelled.",
                ref=what["ref"],
                status=status_name(ctx, found["status"]),
            )
            return [Reply(text, private=True)]
        if words[1:] != ["confirm"]:
            text = _(
                ctx,
                "Cancel the hold of {name} on {title} (x{n}, reference {ref})? The items go "
                "back to the order and the buyer is told.",
                **what,
            )
            if found["receipt_waiting"]:
                text += "\n" + _(
                    ctx,
                    "A receipt for it waits for your review ({command}).",
                    command=command(ctx, "payments"),
                )
            choice = (
                button(label(ctx, "Yes, cancel it"), f"cancelhold {what['ref']} confirm"),
                button(label(ctx, "Keep it"), "manage"),
            )
            return [Reply(text, buttons=(choice,), private=True)]
        result = await self.cancel_hold(found["id"], ctx.gom_id, ctx.sender.channel)
        if result == "cancelled":
            text = _(ctx, "The hold {ref} is cancelled; {name} has been told.", **what)
        elif result == "not_pending":
            text = _(ctx, "{ref} is no longer unpaid; nothing was cancelled.", ref=what["ref"])
        else:
            text = _(ctx, "I found no submission with that reference in your orders.")
        return [Reply(text, private=True)]

    # -- opening an order ----------------------------------------------------------------

    async def create(self, ctx: Context, args: str) -> list[Reply]:
        if ctx.sender.supports_forms:
            return [Reply(_(ctx, "Open a new group order"), form=_create_form(ctx))]
        await ctx.conversation.save(ctx, {"flow": "create", "step": "title", "data": {}})
        return [Reply(_(ctx, "What is the order's title?"), buttons=cancel_button(ctx))]

    async def create_form(self, ctx: Context, values: dict[str, str]) -> list[Reply]:
        """The new-order form (Discord modal) came back filled in."""
        if ctx.gom_id is None:
            return [gom_only(ctx)]
        data: dict[str, Any] = {}
        # A modal has five fields at most: "50 / 2" is the total and the per-buyer cap.
        total, _sep, per_buyer = values.get("max_orders", "").partition("/")
        values = {**values, "max_orders": total, "max_per_buyer": per_buyer or "skip"}
        for step in _CREATE_STEPS:
            problem = self._accept(ctx, step, values.get(step, ""), data)
            if problem:
                return [Reply(problem, private=True)]
        return await self._open_order(ctx, data)

    async def create_step(self, ctx: Context, text: str) -> list[Reply]:
        """The next answer in the new-order conversation."""
        state = ctx.state or {}
        data = state.get("data", {})
        step = state.get("step", "title")
        if step == "confirm":
            if text.lower() in YES:
                await ctx.conversation.clear(ctx)
                return await self._open_order(ctx, data)
            return await cancel(ctx)
        problem = self._accept(ctx, step, text, data)
        if problem:
            return [Reply(problem)]
        index = _CREATE_STEPS.index(step) + 1
        if index < len(_CREATE_STEPS):
            nxt = _CREATE_STEPS[index]
            await ctx.conversation.save(ctx, {"flow": "create", "step": nxt, "data": data})
            return [_create_prompt(ctx, nxt, self.default_max_per_buyer)]
        await ctx.conversation.save(ctx, {"flow": "create", "step": "confirm", "data": data})
        summary = "\n".join(
            [
                _(ctx, "Open this order?"),
                data["title"],
                _(
                    ctx,
                    "Price: {price}",
                    price=format_money(Decimal(data["price"]), data["currency"]),
                ),
                _(
                    ctx,
                    "Deadline: {deadline}",
                    deadline=when(ctx, datetime.fromisoformat(data["deadline"])),
                ),
                _(ctx, "Most items in total: {n}", n=data["max_orders"]),
                _(
                    ctx,
                    "Most items per buyer: {n}",
                    n=data["max_per_buyer"] or self.default_max_per_buyer,
                ),
            ]
        )
        return [Reply(summary, buttons=confirm_buttons(ctx))]

    def _accept(self, ctx: Context, step: str, text: str, data: dict[str, Any]) -> str:
        text = text.strip()
        if step == "title":
            if not 3 <= len(text) <= 100:
                return _(ctx, "Please send a title of 3 to 100 characters.")
            data["title"] = text
        elif step == "price":
            try:
                price = Decimal(text.replace(",", ""))
            except InvalidOperation:
                price = Decimal(-1)
            if not price.is_finite() or price <= 0 or price > Decimal("1000000"):
                return _(ctx, "Please send a price like 1250 or 85.50.")
            if price != price.quantize(Decimal("0.01")):
                # Prices are kept to the centavo/sen: 0.001 would be stored as a free order.
                return _(ctx, "Please send a price like 1250 or 85.50.")
            data["price"] = str(price)
        elif step == "currency":
            if text.upper() not in ("PHP", "MYR"):
                return _(ctx, "Please choose PHP or MYR.")
            data["currency"] = text.upper()
        elif step == "deadline":
            try:
                moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(
                    tzinfo=ZoneInfo(ctx.timezone)
                )
            except ValueError:
                return _(ctx, "Please send the deadline as YYYY-MM-DD HH:MM.")
            if moment <= self.clock() + timedelta(hours=1):
                return _(ctx, "The deadline must be at least an hour from now.")
            data["deadline"] = moment.isoformat()
        elif step == "max_orders":
            max_orders = whole_number(text)
            if max_orders is None or not 1 <= max_orders <= 100_000:
                return _(ctx, "Please send a whole number, like 1 or 2.")
            data["max_orders"] = max_orders
        elif step == "max_per_buyer":
            if text.lower() in _SKIP:
                data["max_per_buyer"] = None  # DEFAULT_MAX_PER_BUYER, as for the core's orders
                return ""
            cap = whole_number(text)
            if cap is None or not 1 <= cap <= data["max_orders"]:
                return _(
                    ctx,
                    "Please send a whole number from 1 to {n}, or SKIP.",
                    n=data["max_orders"],
                )
            data["max_per_buyer"] = cap
        return ""

    async def _open_order(self, ctx: Context, data: dict[str, Any]) -> list[Reply]:
        assert ctx.gom_id is not None
        slug = _slug(data["title"])
        order_id = await order_data.create_order(
            self.pool,
            gom_id=ctx.gom_id,
            title=data["title"],
            price=Decimal(data["price"]),
            currency=data["currency"],
            deadline=datetime.fromisoformat(data["deadline"]),
            slug=slug,
            max_orders=data["max_orders"],
            max_per_buyer=data.get("max_per_buyer"),
            payment_methods=["gcash", "maya", "bank_transfer"]
            if data["currency"] == "PHP"
            else ["maybank2u", "touch_n_go", "bank_transfer"],
        )
        await audit.admin(
            self.pool,
            actor=f"gom:{ctx.gom_id}",
            action="order.create",
            channel=ctx.sender.channel,
            subject=str(order_id),
            result="created",
            detail={"title": data["title"]},
        )
        return [
            Reply(
                _(
                    ctx,
                    "{title} is open! Buyers can join with the code {code}.",
                    title=data["title"],
                    code=slug,
                )
            )
        ]

    # -- payment proofs (workflows/proofs) -----------------------------------------------

    async def payments(self, ctx: Context, args: str) -> list[Reply]:
        return await self.proofs.review_list(ctx, args)

    async def approve(self, ctx: Context, args: str) -> list[Reply]:
        return await self.proofs.approve(ctx, args)

    async def reject(self, ctx: Context, args: str) -> list[Reply]:
        return await self.proofs.reject(ctx, args)


def _gom_only_guard(handler: Handler) -> Handler:
    """Only a GOM's chat may use the GOM commands; anyone else hears how to become one."""

    async def guarded(ctx: Context, args: str) -> list[Reply]:
        if ctx.gom_id is None:
            return [gom_only(ctx)]
        return await handler(ctx, args)

    return guarded


def _create_form(ctx: Context) -> Form:
    return Form(
        id="create:new",
        title=_(ctx, "Open a new group order")[:45],
        fields=(
            FormField("title", _(ctx, "Title"), max_length=100),
            FormField("price", _(ctx, "Price per item"), max_length=12, placeholder="1250"),
            FormField("currency", _(ctx, "Currency (PHP or MYR)"), max_length=3, placeholder="PHP"),
            FormField(
                "deadline",
                _(ctx, "Deadline (YYYY-MM-DD HH:MM)"),
                max_length=16,
                placeholder="2026-12-24 18:00",
            ),
            FormField(
                "max_orders",
                _(ctx, "Most items: in total / per buyer"),
                max_length=13,
                placeholder="50 / 2",
            ),
        ),
    )


def _create_prompt(ctx: Context, step: str, default_cap: int) -> Reply:
    cancel_row = (button(label(ctx, "Cancel"), "/cancel"),)
    if step == "max_per_buyer":
        text = _(
            ctx,
            "How many items may one buyer hold at most? Skip for {n}.",
            n=default_cap,
        )
        return Reply(text, buttons=((button(label(ctx, "Skip"), "skip"),), cancel_row))
    if step == "currency":
        return Reply(
            _(ctx, "Which currency?"),
            buttons=((button("PHP (₱)", "PHP"), button("MYR (RM)", "MYR")), cancel_row),
        )
    texts = {
        "price": _(ctx, "Price per item? (e.g. 1250 or 85.50)"),
        "deadline": _(ctx, "Deadline? Send it as YYYY-MM-DD HH:MM, your time."),
        "max_orders": _(ctx, "How many items at most in total?"),
    }
    return Reply(texts[step], buttons=(cancel_row,))


def _slug(title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:30] or "order"
    return f"{base}-{secrets.token_hex(2)}"
