"""The event catalogue: each event's documented data fields and how it renders.

A message body is channel-agnostic: a title and text in the recipient's language, buttons,
an optional image, a colour hint (``extra.color``) and the template variables a platform
that needs approved templates (WhatsApp outside 24 h) fills in. Adapters render it: Telegram
HTML with a bold title, a Discord embed, WhatsApp text or a Content template.

A field's value comes from the request's ``data``, else from the recipient's own submission
and order (so one fan-out call gives every buyer their own reference and amount). A field
that is still missing is reported as ``data.<field>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from gomflow_messaging import i18n
from gomflow_messaging.free_text import quoted
from gomflow_messaging.i18n import format_moment, gettext, ngettext
from gomflow_messaging.money import format_money

# What every channel can carry in one message; longer text is refused up front.
MAX_TEXT_LENGTH = 4096


class MissingData(Exception):
    """An event's data lacks a field, or a field is malformed; names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Field:
    name: str
    doc: str
    #: Where the value comes from when ``data`` lacks it: "submission.<column>" etc.
    source: str = ""
    required: bool = True
    choices: tuple[str, ...] = ()


@dataclass
class RenderContext:
    """Who the message is for: their language and time zone, and their submission/order."""

    locale: str = "en"
    timezone: str = "Asia/Manila"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    submission: Mapping[str, Any] | None = None
    order: Mapping[str, Any] | None = None

    def when(self, moment: datetime) -> str:
        return format_moment(self.locale, moment, self.timezone)


def _(ctx: RenderContext, message: str, **values: Any) -> str:
    """Translate into the recipient's language (extracted by `make i18n` like the chat bot's)."""
    return gettext(ctx.locale, message, **values)


def label(ctx: RenderContext, message: str) -> str:
    """A button's text (at most 20 characters in every language; see `i18n.label`)."""
    return i18n.label(ctx.locale, message)


Values = dict[str, Any]
Renderer = Callable[[Values, RenderContext], dict[str, Any]]


@dataclass(frozen=True)
class EventSpec:
    name: str
    audience: str  # "buyer", "gom" or "any"
    #: The preference kind a contact can turn off ("transactional" cannot be turned off).
    kind: str
    #: Sent even during the recipient's quiet hours.
    urgent: bool
    fields: tuple[Field, ...]
    render: Renderer
    doc: str = ""

    @property
    def transactional(self) -> bool:
        return self.kind == "transactional"


def _resolve(spec: EventSpec, data: Mapping[str, Any], ctx: RenderContext) -> Values:
    values: Values = {}
    for f in spec.fields:
        value = data.get(f.name)
        if value is None and f.source:
            holder_name, _, column = f.source.partition(".")
            holder = ctx.submission if holder_name == "submission" else ctx.order
            value = holder.get(column) if holder else None
        if value is None or (isinstance(value, str) and not value.strip()):
            if f.required:
                raise MissingData(f"data.{f.name}", f"is required: {f.doc}")
            continue
        if f.choices and value not in f.choices:
            raise MissingData(f"data.{f.name}", f"must be one of: {', '.join(f.choices)}")
        values[f.name] = value
    return values


def _money(values: Values, amount: str = "amount") -> str:
    try:
        number = Decimal(str(values[amount]))
    except (InvalidOperation, ValueError):
        raise MissingData(f"data.{amount}", 'must be a decimal amount, e.g. "1250.00"') from None
    currency = str(values.get("currency", ""))
    if currency not in ("PHP", "MYR"):
        raise MissingData("data.currency", "must be PHP or MYR")
    return format_money(number, currency)


def _moment(values: Values, name: str) -> datetime:
    value = values[name]
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise MissingData(f"data.{name}", "must be an ISO-8601 time with offset") from None
    if moment.tzinfo is None:
        raise MissingData(f"data.{name}", "must include a time zone offset")
    return moment


def _count(values: Mapping[str, Any], name: str) -> int:
    """A count that picks a plural form: a whole number, from JSON as 2 or "2"."""
    value = values.get(name)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise MissingData(f"data.{name}", "must be a whole number")
    return int(value)


def _body(
    title: str,
    text: str,
    *,
    color: str = "info",
    buttons: list[list[dict[str, str]]] | None = None,
    template: Values | None = None,
    image_url: str = "",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "text": f"{title}\n{text}" if title else text,
        "buttons": buttons or [],
        "extra": {"title": title, "color": color},
    }
    if template is not None:
        body["template_variables"] = {k: str(v) for k, v in template.items()}
    if image_url:
        body["image_url"] = image_url
    return body


def _pay_button(ctx: RenderContext, reference: str) -> list[list[dict[str, str]]]:
    return [[{"label": label(ctx, "Pay"), "action": f"pay {reference}"}]]


# -- buyer events --------------------------------------------------------------------------

REFERENCE = Field(
    "reference", "the payment reference, e.g. PH-7KQ2M9XA", "submission.payment_reference"
)
ORDER_TITLE = Field("order_title", "the order's title", "order.title")
AMOUNT = Field("amount", "the amount due, a decimal string", "submission.total_amount")
CURRENCY = Field("currency", "PHP or MYR", "submission.currency")
DEADLINE = Field("deadline", "the order's deadline, ISO-8601 with offset", "order.deadline")
BUYER_NAME = Field("buyer_name", "the buyer's name", "submission.buyer_name")
QUANTITY = Field("quantity", "how many items", "submission.quantity")


def _order_confirmation(v: Values, ctx: RenderContext) -> dict[str, Any]:
    amount, deadline = _money(v), ctx.when(_moment(v, "deadline"))
    text = _(
        ctx,
        "You joined {order_title} (x{quantity}). Your payment reference is {reference}. "
        "Please pay {amount} before {deadline}.",
        order_title=v["order_title"],
        quantity=v["quantity"],
        reference=v["reference"],
        amount=amount,
        deadline=deadline,
    )
    return _body(
        _(ctx, "Order confirmed"),
        text,
        color="success",
        buttons=_pay_button(ctx, v["reference"]),
        template={
            "order_title": v["order_title"],
            "reference": v["reference"],
            "amount": amount,
            "deadline": deadline,
        },
    )


def _payment_reminder(v: Values, ctx: RenderContext) -> dict[str, Any]:
    amount, moment = _money(v), _moment(v, "deadline")
    deadline = ctx.when(moment)
    text = _(
        ctx,
        "Please pay {amount} for {order_title} (reference {reference}) before {deadline}. "
        "Already paid? Send your receipt screenshot here.",
        amount=amount,
        order_title=v["order_title"],
        reference=v["reference"],
        deadline=deadline,
    )
    urgent_soon = (moment - ctx.now).total_seconds() < 24 * 3600
    return _body(
        _(ctx, "Payment reminder"),
        text,
        color="warning" if urgent_soon else "info",
        buttons=_pay_button(ctx, v["reference"]),
        template={
            "order_title": v["order_title"],
            "reference": v["reference"],
            "amount": amount,
            "deadline": deadline,
        },
    )


def _payment_confirmed(v: Values, ctx: RenderContext) -> dict[str, Any]:
    amount = _money(v)
    text = _(
        ctx,
        "We received your payment of {amount} for {order_title} (reference {reference}). "
        "Thank you!",
        amount=amount,
        order_title=v["order_title"],
        reference=v["reference"],
    )
    return _body(
        _(ctx, "Payment confirmed"),
        text,
        color="success",
        template={"order_title": v["order_title"], "reference": v["reference"], "amount": amount},
    )


def _payment_rejected(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = _(
        ctx,
        "We could not confirm your payment for {order_title} (reference {reference}): "
        "{reason}. Please send a clear screenshot of your receipt again, or message your GOM.",
        order_title=v["order_title"],
        reference=v["reference"],
        reason=v["reason"],
    )
    return _body(
        _(ctx, "Payment not confirmed"),
        text,
        color="danger",
        buttons=_pay_button(ctx, v["reference"]),
        template={
            "order_title": v["order_title"],
            "reference": v["reference"],
            "reason": v["reason"],
        },
    )


def _hold_expiring(v: Values, ctx: RenderContext) -> dict[str, Any]:
    amount, expires_at = _money(v), ctx.when(_moment(v, "expires_at"))
    text = _(
        ctx,
        "Your items in {order_title} (x{quantity}, reference {reference}) are not paid yet. "
        "Please pay {amount} before {expires_at}, or your hold expires and the items go to "
        "other buyers. Already paid? Send your receipt screenshot here.",
        order_title=v["order_title"],
        quantity=v["quantity"],
        reference=v["reference"],
        amount=amount,
        expires_at=expires_at,
    )
    return _body(
        _(ctx, "Last payment reminder"),
        text,
        color="warning",
        buttons=_pay_button(ctx, v["reference"]),
        template={
            "order_title": v["order_title"],
            "reference": v["reference"],
            "quantity": v["quantity"],
            "amount": amount,
            "expires_at": expires_at,
        },
    )


def _hold_expired(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = _(
        ctx,
        "Your unpaid hold on {order_title} (x{quantity}, reference {reference}) has expired, "
        "and the items are free for other buyers. Already paid? Message your GOM with your "
        "receipt.",
        order_title=v["order_title"],
        quantity=v["quantity"],
        reference=v["reference"],
    )
    return _body(
        _(ctx, "Hold expired"),
        text,
        color="danger",
        template={
            "order_title": v["order_title"],
            "reference": v["reference"],
            "quantity": v["quantity"],
        },
    )


def _hold_cancelled(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = _(
        ctx,
        "Your GOM cancelled your unpaid hold on {order_title} (x{quantity}, reference "
        "{reference}). Already paid, or think this is a mistake? Message your GOM.",
        order_title=v["order_title"],
        quantity=v["quantity"],
        reference=v["reference"],
    )
    return _body(
        _(ctx, "Hold cancelled"),
        text,
        color="danger",
        template={
            "order_title": v["order_title"],
            "reference": v["reference"],
            "quantity": v["quantity"],
        },
    )


STATUSES = ("quota_reached", "closed", "cancelled", "paid_to_supplier", "shipped", "arrived")


def _order_status_update(v: Values, ctx: RenderContext) -> dict[str, Any]:
    status, title = v["status"], v["order_title"]
    if status == "shipped" and not v.get("tracking_number"):
        raise MissingData("data.tracking_number", "is required when status is shipped")
    texts = {
        "quota_reached": _(
            ctx, "{order_title} has reached its quota. Thank you for joining!", order_title=title
        ),
        "closed": _(ctx, "{order_title} is now closed to new buyers.", order_title=title),
        "cancelled": _(
            ctx,
            "{order_title} has been cancelled. Your GOM will contact you about refunds.",
            order_title=title,
        ),
        "paid_to_supplier": _(
            ctx, "Good news: the GOM has paid the supplier for {order_title}.", order_title=title
        ),
        "shipped": _(
            ctx,
            "{order_title} has shipped! Tracking number: {tracking_number}.",
            order_title=title,
            tracking_number=v.get("tracking_number", ""),
        ),
        "arrived": _(
            ctx,
            "{order_title} has arrived! Your GOM will send details for delivery or pick-up.",
            order_title=title,
        ),
    }
    text = texts[status]
    if v.get("note"):
        text += "\n" + str(v["note"])
    color = {"cancelled": "danger", "arrived": "success", "shipped": "success"}.get(status, "info")
    return _body(
        _(ctx, "Order update"),
        text,
        color=color,
        template={
            "order_title": title,
            "status": status,
            "tracking_number": v.get("tracking_number", ""),
        },
    )


# -- GOM events ----------------------------------------------------------------------------


def _new_submission(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = _(
        ctx,
        "{buyer_name} joined {order_title}: x{quantity}, {amount} (reference {reference}).",
        buyer_name=quoted(v["buyer_name"]),
        order_title=v["order_title"],
        quantity=v["quantity"],
        amount=_money(v),
        reference=v["reference"],
    )
    if v.get("possible_duplicate_of"):
        text += "\n" + _(
            ctx,
            "Possible duplicate: the same mobile number as {references}. Check before you "
            "count it twice.",
            references=v["possible_duplicate_of"],
        )
    return _body(_(ctx, "New submission"), text)


def _submissions_digest(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = ngettext(
        ctx.locale,
        "{count} new submission in the last few minutes: {orders}.",
        "{count} new submissions in the last few minutes: {orders}.",
        _count(v, "count"),
        count=v["count"],
        orders=v["orders"],
    )
    return _body(_(ctx, "New submissions"), text)


def _payment_received(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = _(
        ctx,
        "{buyer_name} paid {amount} for {order_title} (reference {reference}).",
        buyer_name=quoted(v["buyer_name"]),
        amount=_money(v),
        order_title=v["order_title"],
        reference=v["reference"],
    )
    return _body(_(ctx, "Payment received"), text, color="success")


def _payment_needs_review(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = _(
        ctx,
        "{buyer_name} sent a payment proof for {order_title} (reference {reference}, "
        "{amount} expected). Please review it.",
        buyer_name=quoted(v["buyer_name"]),
        order_title=v["order_title"],
        reference=v["reference"],
        amount=_money(v),
    )
    return _body(
        _(ctx, "Payment proof to review"),
        text,
        color="warning",
        buttons=[[{"label": label(ctx, "Review payments"), "action": "payments"}]],
    )


def _quota_alert(v: Values, ctx: RenderContext) -> dict[str, Any]:
    # Translators: put % only before ) or at the end; "% f" breaks msgfmt.
    text = _(
        ctx,
        "{order_title}: {filled} of {max_orders} taken ({percent}%).",
        order_title=v["order_title"],
        percent=v["percent"],
        filled=v["filled"],
        max_orders=v["max_orders"],
    )
    return _body(
        _(ctx, "Quota update"), text, color="success" if int(v["percent"]) >= 100 else "info"
    )


def _deadline_alert(v: Values, ctx: RenderContext) -> dict[str, Any]:
    # "under 5 hours" with 4 h 59 min left: never more time than there is.
    text = ngettext(
        ctx.locale,
        "{order_title} closes in under {hours} hour ({deadline}). Paid: {paid}, waiting for "
        "payment: {pending}.",
        "{order_title} closes in under {hours} hours ({deadline}). Paid: {paid}, waiting for "
        "payment: {pending}.",
        _count(v, "hours"),
        order_title=v["order_title"],
        hours=v["hours"],
        deadline=ctx.when(_moment(v, "deadline")),
        paid=v["paid"],
        pending=v["pending"],
    )
    return _body(_(ctx, "Deadline soon"), text, color="warning")


def _gom_summary(v: Values, ctx: RenderContext) -> dict[str, Any]:
    title = _(ctx, "Daily summary") if v["period"] == "daily" else _(ctx, "Weekly summary")
    lines = []
    if v.get("since") and v.get("until"):
        lines.append(
            _(
                ctx,
                "From {since} to {until}",
                since=ctx.when(_moment(v, "since")),
                until=ctx.when(_moment(v, "until")),
            )
        )
    lines += [
        _(ctx, "New submissions: {n}", n=v["new_submissions"]),
        _(ctx, "Payments: {n}", n=v["payments"]),
    ]
    if v["collected"] and v["collected"] != "-":
        lines.append(_(ctx, "Collected: {v}", v=v["collected"]))
    if v.get("attention"):
        lines.append(_(ctx, "Needs attention: {v}", v=v["attention"]))
    # Where each open order stands now: a quiet period still shows the buyers it has.
    standing = v.get("open_orders") or []
    if not isinstance(standing, list):
        raise MissingData("data.open_orders", "must be a list of orders")
    if standing:
        lines.append(_(ctx, "Open orders now:"))
    for order in standing:
        if not isinstance(order, Mapping):
            raise MissingData("data.open_orders", "must be a list of orders")
        buyers = _count(order, "buyers")
        lines.append(
            ngettext(
                ctx.locale,
                "{title}: {n} buyer, {paid} paid, {pending} waiting for payment",
                "{title}: {n} buyers, {paid} paid, {pending} waiting for payment",
                buyers,
                title=order.get("title", ""),
                n=buyers,
                paid=_count(order, "paid"),
                pending=_count(order, "pending"),
            )
        )
    return _body(title, "\n".join(lines))


# -- anyone --------------------------------------------------------------------------------


def _custom(v: Values, ctx: RenderContext) -> dict[str, Any]:
    text = v["text"]
    if not isinstance(text, str):
        raise MissingData("data.text", "must be a string")
    if len(text) > MAX_TEXT_LENGTH:
        raise MissingData("data.text", f"is longer than {MAX_TEXT_LENGTH} characters")
    image_url = v.get("image_url", "")
    if image_url and (not isinstance(image_url, str) or not image_url.startswith("https://")):
        raise MissingData("data.image_url", "must be an https:// URL")
    return {"text": text, "buttons": [], "extra": {}, "image_url": image_url or ""}


def _test(v: Values, ctx: RenderContext) -> dict[str, Any]:
    return {
        "text": _(
            ctx, "GOMFLOW test message: this channel works. Sent {at}.", at=ctx.when(ctx.now)
        ),
        "buttons": [],
        "extra": {},
    }


EVENTS: dict[str, EventSpec] = {
    spec.name: spec
    for spec in (
        EventSpec(
            "order_confirmation",
            "buyer",
            "transactional",
            True,
            (REFERENCE, ORDER_TITLE, QUANTITY, AMOUNT, CURRENCY, DEADLINE),
            _order_confirmation,
            "a submission was created",
        ),
        EventSpec(
            "payment_reminder",
            "buyer",
            "reminders",
            False,
            (REFERENCE, ORDER_TITLE, AMOUNT, CURRENCY, DEADLINE),
            _payment_reminder,
            "an unpaid submission before the deadline",
        ),
        EventSpec(
            "payment_confirmed",
            "buyer",
            "transactional",
            True,
            (REFERENCE, ORDER_TITLE, AMOUNT, CURRENCY),
            _payment_confirmed,
            "a payment was verified",
        ),
        EventSpec(
            "payment_rejected",
            "buyer",
            "transactional",
            True,
            (
                REFERENCE,
                ORDER_TITLE,
                Field("reason", "why the proof was not accepted, shown to the buyer"),
            ),
            _payment_rejected,
            "a payment proof was rejected",
        ),
        EventSpec(
            "hold_expiring",
            "buyer",
            "transactional",
            # Its expiry waits HOLD_NOTICE_HOURS for it: quiet hours must not push it later.
            True,
            (
                REFERENCE,
                ORDER_TITLE,
                QUANTITY,
                AMOUNT,
                CURRENCY,
                Field("expires_at", "when the unpaid hold expires, ISO-8601 with offset"),
            ),
            _hold_expiring,
            "the last reminder before an unpaid hold expires",
        ),
        EventSpec(
            "hold_expired",
            "buyer",
            "transactional",
            False,
            (REFERENCE, ORDER_TITLE, QUANTITY),
            _hold_expired,
            "an unpaid hold expired past the order's payment deadline",
        ),
        EventSpec(
            "hold_cancelled",
            "buyer",
            "transactional",
            False,
            (REFERENCE, ORDER_TITLE, QUANTITY),
            _hold_cancelled,
            "the GOM cancelled an unpaid hold",
        ),
        EventSpec(
            "order_status_update",
            "buyer",
            "order_updates",
            False,
            (
                ORDER_TITLE,
                Field("status", "the new status", choices=STATUSES),
                Field("tracking_number", "the courier's tracking number (shipped)", required=False),
                Field("note", "a line from the GOM", required=False),
            ),
            _order_status_update,
            "the order's status changed",
        ),
        EventSpec(
            "new_submission",
            "gom",
            "gom_alerts",
            False,
            (
                BUYER_NAME,
                ORDER_TITLE,
                QUANTITY,
                AMOUNT,
                CURRENCY,
                REFERENCE,
                Field(
                    "possible_duplicate_of",
                    "references of the order's other submissions with the same mobile number",
                    required=False,
                ),
            ),
            _new_submission,
            "a buyer joined one of the GOM's orders",
        ),
        EventSpec(
            "submissions_digest",
            "gom",
            "gom_alerts",
            False,
            (Field("count", "how many submissions"), Field("orders", "the orders they joined")),
            _submissions_digest,
            "many submissions folded into one alert",
        ),
        EventSpec(
            "payment_received",
            "gom",
            "gom_alerts",
            False,
            (BUYER_NAME, ORDER_TITLE, AMOUNT, CURRENCY, REFERENCE),
            _payment_received,
            "a buyer's payment was confirmed",
        ),
        EventSpec(
            "payment_needs_review",
            "gom",
            "gom_alerts",
            True,
            (BUYER_NAME, ORDER_TITLE, AMOUNT, CURRENCY, REFERENCE),
            _payment_needs_review,
            "a payment proof waits for the GOM",
        ),
        EventSpec(
            "quota_alert",
            "gom",
            "gom_alerts",
            False,
            (
                ORDER_TITLE,
                Field("percent", "25, 50, 75, 90 or 100"),
                Field("filled", "items taken"),
                Field("max_orders", "the order's quota", "order.max_orders"),
            ),
            _quota_alert,
            "an order crossed a quota threshold",
        ),
        EventSpec(
            "deadline_alert",
            "gom",
            "gom_alerts",
            False,
            (
                ORDER_TITLE,
                DEADLINE,
                Field("hours", "closes in under this many hours: 5 with 4 h 59 min left"),
                Field("paid", "paid submissions"),
                Field("pending", "unpaid submissions"),
            ),
            _deadline_alert,
            "an order's deadline is near",
        ),
        EventSpec(
            "gom_summary",
            "gom",
            "summaries",
            False,
            (
                Field("period", "daily or weekly", choices=("daily", "weekly")),
                Field("new_submissions", "count"),
                Field("payments", "count"),
                Field("collected", 'amounts collected, formatted ("-" or "": none)'),
                Field("attention", "orders near deadline or quota", required=False),
                Field("since", "start of the period, ISO-8601", required=False),
                Field("until", "end of the period, ISO-8601", required=False),
                Field(
                    "open_orders",
                    "each open order now: [{title, buyers, paid, pending}]",
                    required=False,
                ),
            ),
            _gom_summary,
            "the GOM's daily or weekly summary",
        ),
        EventSpec(
            "custom",
            "any",
            "custom",
            False,
            (
                Field("text", "the text to send as is"),
                Field("image_url", "an https:// image to attach", required=False),
            ),
            _custom,
            "a text from the core API or a GOM broadcast",
        ),
        EventSpec(
            "test",
            "any",
            "transactional",
            True,
            (),
            _test,
            "a test message for checking a deployment",
        ),
    )
}


def validate(event: str, data: Mapping[str, Any]) -> None:
    """Check what can be checked before recipients are known (fields given in ``data``)."""
    spec = EVENTS[event]
    for f in spec.fields:
        value = data.get(f.name)
        if value is not None and f.choices and value not in f.choices:
            raise MissingData(f"data.{f.name}", f"must be one of: {', '.join(f.choices)}")
        if value is None and f.required and not f.source:
            raise MissingData(f"data.{f.name}", f"is required: {f.doc}")


def render(event: str, data: Mapping[str, Any], ctx: RenderContext) -> dict[str, Any]:
    """The stored message body for one recipient."""
    spec = EVENTS[event]
    body = spec.render(_resolve(spec, data, ctx), ctx)
    body["event"] = event
    body["locale"] = ctx.locale
    return body
