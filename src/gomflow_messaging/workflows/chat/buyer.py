"""A buyer's commands: browse open orders, join one (step by step or as a form), status, pay."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging import contacts
from gomflow_messaging import orders as order_data
from gomflow_messaging.channels import registry
from gomflow_messaging.free_text import one_line
from gomflow_messaging.i18n import example_mobile, ngettext
from gomflow_messaging.money import format_money
from gomflow_messaging.phones import normalize_phone
from gomflow_messaging.workflows.chat.conversation import cancel
from gomflow_messaging.workflows.chat.text import (
    _,
    cancel_button,
    command,
    confirm_buttons,
    data_label,
    label,
    order_card,
    order_fields,
    payment_instructions,
    status_name,
    whole_number,
)
from gomflow_messaging.workflows.chat.types import Card, Form, FormField, Reply, button, no_nul

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from gomflow_messaging.db import Pool
    from gomflow_messaging.workflows.chat.types import Context, Handler, Sender

log = logging.getLogger(__name__)

PAGE_SIZE = 5
CARD_PAGE_SIZE = 10
YES = {"confirm", "yes", "y", "oo", "opo", "ya", "ok"}
NO = {"no", "n", "hindi", "tidak", "cancel"}
_STEPS = ("name", "phone", "quantity", "address", "notes")


class BuyerCommands:
    def __init__(
        self,
        pool: Pool,
        clock: Callable[[], datetime],
        on_submission: Callable[[UUID], Awaitable[None]],
        default_max_per_buyer: int,
    ) -> None:
        self.pool = pool
        self.clock = clock
        #: Called after a submission is created (GOM alert, confirmation notifications).
        self.on_submission = on_submission
        #: Items one buyer may hold in an order whose GOM set no cap (DEFAULT_MAX_PER_BUYER).
        self.default_max_per_buyer = default_max_per_buyer

    def commands(self) -> dict[str, Handler]:
        return {
            "orders": self.orders,
            "order": self.order,
            "submit": self.submit,
            "status": self.status,
            "pay": self.pay,
        }

    # -- browsing ------------------------------------------------------------------------

    async def orders(self, ctx: Context, args: str) -> list[Reply]:
        # Anything but a page that exists (0, -1, "abc", a huge number) shows the first page.
        page = whole_number(args) or 1
        # A chat with cards shows a page as one message: up to 10 (Discord's embeds).
        size = CARD_PAGE_SIZE if ctx.sender.supports_cards else PAGE_SIZE
        found, total = await order_data.open_orders(
            self.pool, self.clock(), offset=(page - 1) * size, limit=size
        )
        if not found and page > 1:
            return await self.orders(ctx, "1")
        if not found:
            return [Reply(_(ctx, "There are no open orders right now. Check again soon!"))]
        pages = (total + size - 1) // size
        header = _(ctx, "Open orders (page {page} of {pages}):", page=page, pages=pages)
        nav = []
        if page > 1:
            nav.append(button(label(ctx, "Previous"), f"orders {page - 1}"))
        if page < pages:
            nav.append(button(label(ctx, "Next"), f"orders {page + 1}"))
        if ctx.sender.supports_cards:
            cards = tuple(
                Card(
                    order.title,
                    tuple(order_fields(ctx, order)),
                    # A card's button (Discord's, up to 80 characters) names the order.
                    button(_(ctx, "Join {title}", title=order.title)[:80], f"submit {order.id}"),
                )
                for order in found
            )
            return [Reply(header, buttons=(tuple(nav),) if nav else (), cards=cards)]
        replies = [Reply(header)]
        for order in found:
            replies.append(
                Reply(
                    order_card(ctx, order),
                    buttons=((button(label(ctx, "Join this order"), f"submit {order.id}"),),),
                )
            )
        if nav:
            replies.append(Reply(_(ctx, "More orders:"), buttons=(tuple(nav),)))
        return replies

    async def order(self, ctx: Context, args: str) -> list[Reply]:
        order = await order_data.find_order(self.pool, args) if args else None
        if order is None:
            return [_not_found(ctx)]
        text = order_card(ctx, order)
        if order.description:
            text += "\n\n" + order.description
        actions = ((button(label(ctx, "Join this order"), f"submit {order.id}"),),)
        return [Reply(text, buttons=actions if order.is_open(self.clock()) else ())]

    async def order_cards(self, ctx: Context, query: str, limit: int) -> list[Reply]:
        """Open orders matching ``query`` as cards with a join button, changing nothing."""
        found, _total = await order_data.open_orders(self.pool, self.clock(), limit=100)
        words = no_nul(query).lower().split()
        cards = []
        for order in found:
            text = order_card(ctx, order)
            if all(word in text.lower() for word in words):
                join = button(label(ctx, "Join this order"), f"submit {order.id}")
                cards.append(Reply(text, buttons=((join,),)))
        return cards[:limit]

    async def order_choices(self, typed: str, limit: int) -> list[tuple[str, str]]:
        """Open orders whose title or code holds what is being typed: (shown, value) pairs."""
        found = await order_data.search_open_orders(
            self.pool, self.clock(), no_nul(typed)[:100], limit
        )
        return [
            (f"{o.title} · {format_money(o.price, o.currency)}"[:100], o.slug or str(o.id))
            for o in found
        ]

    async def reference_choices(
        self, sender: Sender, typed: str, *, unpaid_only: bool, limit: int
    ) -> list[tuple[str, str]]:
        """The sender's OWN payment references holding what is being typed, never others'."""
        known = await contacts.chat_address(self.pool, sender.channel, sender.address)
        rows = await order_data.contact_submissions(
            self.pool, known["contact_id"] if known else UUID(int=0), sender.channel, sender.address
        )
        wanted = no_nul(typed).strip().lower()
        choices = []
        for r in rows:
            if unpaid_only and r["status"] != "pending":
                continue
            reference = r["payment_reference"]
            if wanted and wanted not in f"{reference} {r['title']}".lower():
                continue
            choices.append((f"{reference} · {r['title']}"[:100], reference))
        return choices[:limit]

    # -- joining an order ----------------------------------------------------------------

    async def submit(self, ctx: Context, args: str) -> list[Reply]:
        if not args:
            found, _total = await order_data.open_orders(self.pool, self.clock(), limit=10)
            if not found:
                return [Reply(_(ctx, "There are no open orders right now. Check again soon!"))]
            # A button holds at most 20 characters: a long title is cut there (numbered when
            # two cut titles would read the same), and the text then says each title whole.
            titles = [one_line(o.title, 200) for o in found]
            marks = ["•"] * len(found)
            labels = [data_label(t) for t in titles]
            if len(set(labels)) < len(labels):
                marks = [f"{n}." for n in range(1, len(found) + 1)]
                labels = [data_label(f"{m} {t}") for m, t in zip(marks, titles, strict=True)]
            rows = tuple((button(t, f"submit {o.id}"),) for t, o in zip(labels, found, strict=True))
            lines = [_(ctx, "Which order would you like to join?")]
            if labels != titles:
                lines += [f"{m} {t}" for m, t in zip(marks, titles, strict=True)]
            return [Reply("\n".join(lines), buttons=rows)]
        order = await order_data.find_order(self.pool, args.split()[0])
        if order is None:
            return [_not_found(ctx)]
        refusal = self._refusal_before_start(ctx, order)
        if refusal:
            return [Reply(refusal)]
        if ctx.sender.supports_forms:
            return [Reply(_(ctx, "Join {title}", title=order.title), form=_submit_form(ctx, order))]
        data: dict[str, Any] = {"order_id": str(order.id)}
        if ctx.sender.channel == registry.phone_channel():
            data["phone"] = ctx.sender.address  # the person's address here is their phone
        await ctx.conversation.save(ctx, {"flow": "submit", "step": "name", "data": data})
        return [
            Reply(order_card(ctx, order)),
            Reply(_prompt(ctx, "name", order, self._cap(order)), buttons=cancel_button(ctx)),
        ]

    def _cap(self, order: order_data.Order) -> int:
        return order.buyer_cap(self.default_max_per_buyer)

    def _refusal_before_start(self, ctx: Context, order: order_data.Order) -> str:
        now = self.clock()
        if not order.is_active:
            return _(ctx, "Sorry, {title} is closed.", title=order.title)
        if order.deadline <= now:
            return _(ctx, "Sorry, the deadline for {title} has passed.", title=order.title)
        if order.remaining == 0:
            return _(ctx, "Sorry, {title} is full.", title=order.title)
        return ""

    async def submit_form(self, ctx: Context, ref: str, values: dict[str, str]) -> list[Reply]:
        """The join form (Discord modal) came back filled in."""
        order = await order_data.find_order(self.pool, ref)
        if order is None:
            return [Reply(_(ctx, "That order no longer exists."), private=True)]
        data: dict[str, Any] = {"order_id": str(order.id)}
        for step in _STEPS:
            problem = _accept(ctx, step, values.get(step, ""), data, order, self._cap(order))
            if problem:
                return [Reply(problem, private=True)]
        return await self._finish(ctx, data)

    async def step(self, ctx: Context, text: str) -> list[Reply]:
        """The next answer in the join conversation."""
        state = ctx.state or {}
        data = state.get("data", {})
        order = await order_data.find_order(self.pool, data.get("order_id", ""))
        if order is None:
            await ctx.conversation.clear(ctx)
            return [Reply(_(ctx, "That order no longer exists."))]
        step = state.get("step", "name")
        if step == "confirm":
            answer = text.lower()
            if answer in YES:
                await ctx.conversation.clear(ctx)
                return await self._finish(ctx, data)
            if answer in NO:
                return await cancel(ctx)
            return [Reply(_(ctx, "Please press Confirm or Cancel."), buttons=confirm_buttons(ctx))]
        problem = _accept(ctx, step, text, data, order, self._cap(order))
        if problem:
            return [Reply(problem, buttons=cancel_button(ctx))]
        remaining = [s for s in _STEPS[_STEPS.index(step) + 1 :] if s not in data]
        if remaining:
            nxt = remaining[0]
            await ctx.conversation.save(ctx, {"flow": "submit", "step": nxt, "data": data})
            extra = ((button(label(ctx, "Skip"), "skip"),),) if nxt == "notes" else ()
            prompt = _prompt(ctx, nxt, order, self._cap(order))
            return [Reply(prompt, buttons=extra + cancel_button(ctx))]
        await ctx.conversation.save(ctx, {"flow": "submit", "step": "confirm", "data": data})
        total = format_money(order.price * data["quantity"], order.currency)
        summary = "\n".join(
            [
                _(ctx, "Please check your order:"),
                order.title,
                _(ctx, "Name: {v}", v=data["name"]),
                _(ctx, "Mobile: {v}", v=data["phone"]),
                _(ctx, "Quantity: {v}", v=data["quantity"]),
                _(ctx, "Address: {v}", v=data["address"]),
                _(ctx, "Notes: {v}", v=data.get("notes") or "-"),
                _(ctx, "Total: {v}", v=total),
            ]
        )
        return [Reply(summary, buttons=confirm_buttons(ctx))]

    async def _finish(self, ctx: Context, data: dict[str, Any]) -> list[Reply]:
        async with self.pool.acquire() as conn:
            try:
                submission = await order_data.create_submission(
                    conn,
                    order_id=UUID(data["order_id"]),
                    contact_id=ctx.contact_id,
                    buyer_name=data["name"],
                    buyer_phone=data["phone"],
                    quantity=int(data["quantity"]),
                    platform=ctx.sender.channel,
                    platform_id=ctx.sender.address,
                    now=self.clock(),
                    default_max_per_buyer=self.default_max_per_buyer,
                )
            except order_data.SubmissionRefused as refused:
                return [Reply(_refusal_text(ctx, refused), private=True)]
            await order_data.add_submission_details(
                conn, submission["id"], data.get("address"), data.get("notes") or None
            )
            await contacts.remember_buyer(conn, ctx.contact_id, data["name"], data["phone"])
        order = await order_data.find_order(self.pool, data["order_id"])
        assert order is not None
        try:
            await self.on_submission(submission["id"])
        except Exception:  # the buyer's answer must not fail because an alert did
            log.exception("on_submission hook failed for %s", submission["id"])
        text = "\n".join(
            [
                _(ctx, "You joined {title}!", title=order.title),
                _(ctx, "Payment reference: {ref}", ref=submission["payment_reference"]),
                _(
                    ctx,
                    "Total: {v}",
                    v=format_money(submission["total_amount"], submission["currency"]),
                ),
                "",
                payment_instructions(
                    ctx, order, submission["payment_reference"], submission["total_amount"]
                ),
            ]
        )
        return [Reply(text, buttons=((button(label(ctx, "My orders"), "status"),),))]

    # -- after joining -------------------------------------------------------------------

    async def status(self, ctx: Context, args: str) -> list[Reply]:
        rows = await order_data.contact_submissions(
            self.pool, ctx.contact_id, ctx.sender.channel, ctx.sender.address
        )
        if args:
            wanted = args.split()[0].upper()
            rows = [r for r in rows if r["payment_reference"] == wanted]
            if not rows:
                # Never say whether someone else's reference exists.
                return [
                    Reply(
                        _(ctx, "I found no order of yours with reference {ref}.", ref=wanted),
                        private=True,
                    )
                ]
        if not rows:
            return [
                Reply(
                    _(
                        ctx,
                        "You have not joined any order yet. Send {command} to browse.",
                        command=command(ctx, "orders"),
                    ),
                    buttons=((button(label(ctx, "Open orders"), "orders"),),),
                )
            ]
        lines = [_(ctx, "Your orders:")]
        for r in rows:
            lines.append(
                f"{r['payment_reference']} · {r['title']} · x{r['quantity']} · "
                f"{format_money(r['total_amount'], r['currency'])} · "
                f"{status_name(ctx, r['status'])}"
            )
        pending = any(r["status"] == "pending" for r in rows)
        actions = ((button(label(ctx, "Pay"), "pay"),),) if pending else ()
        return [Reply("\n".join(lines), buttons=actions, private=True)]

    async def pay(self, ctx: Context, args: str) -> list[Reply]:
        rows = await order_data.contact_submissions(
            self.pool, ctx.contact_id, ctx.sender.channel, ctx.sender.address
        )
        pending = [r for r in rows if r["status"] == "pending"]
        if args:
            pending = [r for r in pending if r["payment_reference"] == args.split()[0].upper()]
        if not pending:
            return [Reply(_(ctx, "You have nothing waiting for payment."), private=True)]
        replies = []
        for r in pending:
            order = await order_data.find_order(self.pool, str(r["order_id"]))
            if order is None:
                continue
            replies.append(
                Reply(
                    f"{r['payment_reference']} · {r['title']}\n"
                    + payment_instructions(ctx, order, r["payment_reference"], r["total_amount"]),
                    private=True,
                )
            )
        return replies


def _not_found(ctx: Context) -> Reply:
    return Reply(
        _(
            ctx,
            "I could not find that order. Send {command} to see open ones.",
            command=command(ctx, "orders"),
        )
    )


def _submit_form(ctx: Context, order: order_data.Order) -> Form:
    return Form(
        id=f"submit:{order.id}",
        title=_(ctx, "Join the order")[:45],
        fields=(
            FormField("name", _(ctx, "Your name"), max_length=100),
            FormField(
                "phone",
                _(ctx, "Mobile number"),
                max_length=20,
                placeholder=example_mobile(ctx.locale, ctx.timezone),
            ),
            FormField("quantity", _(ctx, "Quantity"), max_length=3, placeholder="1"),
            FormField("address", _(ctx, "Delivery address"), max_length=300, multiline=True),
            FormField(
                "notes",
                _(ctx, "Notes (optional)"),
                required=False,
                max_length=300,
                multiline=True,
            ),
        ),
    )


def _prompt(ctx: Context, step: str, order: order_data.Order, cap: int) -> str:
    most = cap if order.remaining is None else min(cap, order.remaining)
    prompts = {
        "name": _(ctx, "What name should the GOM put on your order?"),
        "phone": _(
            ctx,
            "What is your mobile number? (e.g. {example})",
            example=example_mobile(ctx.locale, ctx.timezone),
        ),
        "quantity": _(ctx, "How many would you like? (up to {n})", n=most),
        "address": _(ctx, "Where should it be delivered? (full address)"),
        "notes": _(ctx, "Any notes for the GOM? Send SKIP if none."),
    }
    return prompts[step]


def _accept(
    ctx: Context, step: str, text: str, data: dict[str, Any], order: order_data.Order, cap: int
) -> str:
    """Validate one answer into ``data``; returns the problem, or "" when accepted."""
    # One line, no control or bidi characters, whatever the chat allows (a Discord modal
    # or a Telegram message can hold line breaks that would forge lines for the GOM).
    text = one_line(text, 1000)
    if step == "name":
        if not 2 <= len(text) <= 100:
            return _(ctx, "Please send a name of 2 to 100 characters.")
        data["name"] = text
    elif step == "phone":
        try:
            data["phone"] = normalize_phone(text)
        except ValueError:
            return _(
                ctx,
                "That does not look like a mobile number. Try e.g. {example}.",
                example=example_mobile(ctx.locale, ctx.timezone),
            )
    elif step == "quantity":
        quantity = whole_number(text)
        if quantity is None or quantity < 1:
            return _(ctx, "Please send a whole number, like 1 or 2.")
        left = order.remaining
        # The tighter bound is the one named: the buyer's cap, or what is left.
        if left is not None and quantity > left and left < cap:
            return _(ctx, "Only {n} left; please send a smaller number.", n=left)
        if quantity > cap:
            return _over_cap(ctx, cap)
        data["quantity"] = quantity
    elif step == "address":
        if not 5 <= len(text) <= 300:
            return _(ctx, "Please send the full delivery address (5 to 300 characters).")
        data["address"] = text
    elif step == "notes":
        data["notes"] = "" if text.lower() in ("skip", "-", "none", "wala", "tiada") else text[:300]
    return ""


def _refusal_text(ctx: Context, refused: order_data.SubmissionRefused) -> str:
    texts = {
        "closed": _(ctx, "Sorry, this order is closed."),
        "deadline_passed": _(ctx, "Sorry, the deadline for this order has passed."),
        "quantity_too_low": _(ctx, "Please send a whole number, like 1 or 2."),
        "quantity_too_high": _(
            ctx, "Only {n} left; please send a smaller number.", n=refused.values.get("left", 0)
        ),
        "over_buyer_cap": _over_cap(ctx, refused.values.get("cap", 0)),
        "duplicate": _(
            ctx,
            "You already joined this order (reference {ref}). Send {command} to see it.",
            ref=refused.values.get("reference", ""),
            command=command(ctx, "status"),
        ),
    }
    return texts.get(refused.reason, refused.reason)


def _over_cap(ctx: Context, cap: int) -> str:
    return ngettext(
        ctx.locale,
        "One buyer can take at most {n} item of this order; please send a smaller number.",
        "One buyer can take at most {n} items of this order; please send a smaller number.",
        cap,
        n=cap,
    )
