"""Wording the chat bot's commands share: orders as lines or cards, menus, payment how-to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gomflow_messaging import i18n
from gomflow_messaging.free_text import one_line
from gomflow_messaging.i18n import format_moment, gettext
from gomflow_messaging.money import format_money
from gomflow_messaging.workflows.chat.types import Reply, button, command_menu

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from gomflow_messaging import orders as order_data
    from gomflow_messaging.channels.base import Button
    from gomflow_messaging.workflows.chat.types import Context

Buttons = tuple[tuple["Button", ...], ...]


def _(ctx: Context, message: str, **values: Any) -> str:
    return gettext(ctx.locale, message, **values)


def label(ctx: Context, message: str, **values: Any) -> str:
    """A button's text in this person's language (at most 20 characters in every one)."""
    return i18n.label(ctx.locale, message, **values)


def data_label(value: str) -> str:
    """A button's text made of data (an order's title): one line, cut to `i18n.MAX_LABEL`
    characters with an ellipsis, as Messenger and WhatsApp would cut it anyway; the reply's
    text should say the whole of it."""
    value = one_line(value, 200)
    if len(value) <= i18n.MAX_LABEL:
        return value
    return value[: i18n.MAX_LABEL - 1].rstrip() + "…"


def command(ctx: Context, name: str, argument: str = "") -> str:
    """A command as this chat's people type it: ``/orders`` or, in a keyword chat, ``ORDERS``."""
    word = name.upper() if ctx.sender.keywords else f"/{name}"
    return f"{word} {argument}" if argument else word


def when(ctx: Context, moment: datetime) -> str:
    return format_moment(ctx.locale, moment, ctx.timezone)


def order_fields(ctx: Context, order: order_data.Order) -> list[tuple[str, str]]:
    taken = (
        f"{order.filled} / {order.max_orders}"
        if order.max_orders is not None
        else str(order.filled)
    )
    fields = [
        (_(ctx, "Price"), format_money(order.price, order.currency)),
        (_(ctx, "Deadline"), when(ctx, order.deadline)),
        (_(ctx, "Taken"), taken),
    ]
    if order.slug:
        fields.append((_(ctx, "Code"), order.slug))
    return fields


def order_card(ctx: Context, order: order_data.Order) -> str:
    taken = (
        _(ctx, "{filled} of {max} taken", filled=order.filled, max=order.max_orders)
        if order.max_orders is not None
        else _(ctx, "{filled} taken", filled=order.filled)
    )
    lines = [
        order.title,
        _(ctx, "Price: {price}", price=format_money(order.price, order.currency)),
        _(ctx, "Deadline: {deadline}", deadline=when(ctx, order.deadline)),
        taken,
    ]
    if order.slug:
        lines.append(_(ctx, "Code: {code}", code=order.slug))
    return "\n".join(lines)


def status_name(ctx: Context, status: str) -> str:
    names = {
        "pending": _(ctx, "waiting for payment"),
        "paid": _(ctx, "paid"),
        "failed": _(ctx, "payment failed"),
        "expired": _(ctx, "expired"),
        "cancelled": _(ctx, "cancelled"),
    }
    return names.get(status, status)


def main_buttons(ctx: Context) -> Buttons:
    return (
        (button(label(ctx, "Open orders"), "orders"), button(label(ctx, "My orders"), "status")),
        (button(label(ctx, "Pay"), "pay"), button(label(ctx, "Settings"), "settings")),
    )


def confirm_buttons(ctx: Context) -> Buttons:
    return ((button(label(ctx, "Confirm"), "confirm"), button(label(ctx, "Cancel"), "/cancel")),)


def cancel_button(ctx: Context) -> Buttons:
    return ((button(label(ctx, "Cancel"), "/cancel"),),)


def unknown(ctx: Context) -> Reply:
    return Reply(
        _(ctx, "Sorry, I did not understand that.") + "\n\n" + help_text(ctx),
        buttons=main_buttons(ctx),
    )


def gom_only(ctx: Context) -> Reply:
    return Reply(
        _(
            ctx,
            "Only a GOM can do that. If you are one, link this chat to your GOMFLOW "
            "profile with the link code from your dashboard.",
        ),
        private=True,
    )


def help_text(ctx: Context) -> str:
    lines = [_(ctx, "Here is what I can do:")]
    # A group sees the buyer's menu: who is a GOM there is nobody else's business.
    for info in command_menu(ctx.locale, gom=ctx.gom_id is not None and not ctx.sender.in_group):
        argument = ""
        if ctx.sender.keywords and info.name in ("submit", "link"):
            # What follows the keyword, as people type it: "SUBMIT <code>".
            argument = "<" + _(ctx, "code") + ">"
        lines.append(f"{command(ctx, info.name, argument)} - {info.description}")
    return "\n".join(lines)


def whole_number(text: str) -> int | None:
    """A non-negative whole number as typed, or None.

    Digits of any script count (int() reads them), but not "²" (a digit int() refuses), a
    sign, or more than 9 digits (no page or quantity is that big, and int() refuses
    thousands of digits).
    """
    text = text.strip()
    if not 0 < len(text) <= 9 or not all(c.isdecimal() for c in text):
        return None
    return int(text)


_METHOD_NAMES = {
    "gcash": "GCash",
    "maya": "Maya",
    "paymaya": "Maya",
    "grabpay": "GrabPay",
    "shopeepay": "ShopeePay",
    "bpi": "BPI",
    "bdo": "BDO",
    "maybank2u": "Maybank2u",
    "cimb": "CIMB",
    "touch_n_go": "Touch 'n Go",
    "tng": "Touch 'n Go",
}


def method_name(ctx: Context, method: str) -> str:
    if str(method).lower() == "bank_transfer":
        return _(ctx, "bank transfer")
    return _METHOD_NAMES.get(str(method).lower(), str(method))


def payment_instructions(
    ctx: Context, order: order_data.Order, reference: str, amount: Decimal
) -> str:
    methods = ", ".join(method_name(ctx, m) for m in order.payment_methods) or _(
        ctx, "bank transfer"
    )
    return _(
        ctx,
        "How to pay: send {amount} via {methods} and write {ref} in the notes. Then send a "
        "screenshot of your receipt here.",
        amount=format_money(amount, order.currency),
        methods=methods,
        ref=reference,
    )
