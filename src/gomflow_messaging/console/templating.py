"""One templating set-up for the console: Starlette's Jinja2 templates (autoescaped), the
viewer's language (``_``/``ngettext`` over the bot's catalogues), their clock and money, the
security headers every console answer carries, and the words for statuses and reasons."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.templating import Jinja2Templates

from gomflow_messaging.i18n import format_moment, gettext, ngettext
from gomflow_messaging.money import format_money

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from decimal import Decimal

    from starlette.requests import Request
    from starlette.responses import Response

    from gomflow_messaging.console.queries import Buyer
    from gomflow_messaging.console.sessions import Viewer

PACKAGE = Path(__file__).parent
templates = Jinja2Templates(directory=PACKAGE / "templates")

#: No inline script or style anywhere: scripts and styles come from /console/static only.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def secure(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


@functools.lru_cache(maxsize=4096)
def _money(amount: Decimal, currency: str) -> str:
    """An order's amounts repeat (price times a few quantities): Babel formats each once."""
    return format_money(amount, currency)


class Words:
    """Statuses and reasons in the viewer's language (looked up once per page, not per row)."""

    def __init__(self, locale: str) -> None:
        def tr(text: str) -> str:
            return gettext(locale, text)

        self._payment = {
            "pending": tr("waiting for payment"),
            "paid": tr("paid"),
            "failed": tr("payment failed"),
            "expired": tr("expired"),
            "cancelled": tr("cancelled"),
        }
        self._message = {
            "": tr("no message yet"),
            "queued": tr("queued"),
            "sending": tr("sending"),
            "sent": tr("sent"),
            "delivered": tr("delivered"),
            "read": tr("read"),
            "failed": tr("failed"),
            "skipped": tr("skipped"),
        }
        outside = tr("outside WhatsApp's 24 hours")
        gone = tr("the chat no longer exists")
        self._reason = {
            "": "",
            "blocked": tr("blocked the bot"),
            "outside_window": outside,
            "template_required": outside,
            "opted_out": tr("opted out"),
            "preference_off": tr("turned these messages off"),
            "unreachable": tr("no chat can reach them"),
            "no_address": tr("no chat known"),
            "channel_disabled": tr("that chat is switched off here"),
            "chat_not_found": gone,
            "not_found": gone,
            "invalid_address": gone,
            "bad_address": gone,
            "daily_cap": tr("the chat's daily limit was reached"),
        }

    def payment(self, status: str) -> str:
        return self._payment.get(status, status)

    def message(self, status: str) -> str:
        return self._message.get(status, status)

    def reason(self, code: str) -> str:
        """Why a message failed or was skipped, as a GOM says it."""
        return self._reason.get(code, code)


def columns(locale: str) -> list[str]:
    """The buyers table's column names in the viewer's language: the table's head, and on a
    phone each cell's caption (`captions_css`)."""
    return [
        gettext(locale, "Name"),
        gettext(locale, "Reference"),
        gettext(locale, "Quantity"),
        gettext(locale, "Amount"),
        gettext(locale, "Payment"),
        gettext(locale, "Chats"),
        gettext(locale, "Last message"),
    ]


def captions_css(locale: str) -> str:
    """A phone shows the buyers table as cards, each cell captioned with its column's name:
    one stylesheet per language says them once (as a `data-label` on every cell they were
    7,000 attributes, a quarter of a 1,000-buyer page)."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + ': "'

    rules = "\n".join(
        f"  .buyers td:nth-child({n})::before {{ content: {quoted(name)}; }}"
        for n, name in enumerate(columns(locale), 1)
    )
    return f"@media (max-width: 640px) {{\n{rules}\n}}\n"


class _Escaped(dict[Any, str]):
    """Words for codes, HTML-escaped once per distinct code: a page of 1,000 buyers has a
    handful of statuses, reasons and chat lists."""

    def __init__(self, words: Callable[[Any], str]) -> None:
        super().__init__()
        self._words = words

    def __missing__(self, key: Any) -> str:
        value = self[key] = escape(self._words(key))
        return value


@dataclass(slots=True)
class BuyerRow:
    """One buyer as the order page shows them, formatted AND HTML-escaped once in Python:
    the page has a row per buyer (1,000 and more), and order.html prints these rows with
    autoescape off (markupsafe's escape per cell was most of the page's time)."""

    id: str
    name: str
    reference: str
    quantity: int
    amount: str
    status: str
    payment: str
    chats: str
    unreachable: bool
    message_id: str | None
    message_status: str
    message: str
    detail: str


def buyer_rows(buyers: list[Buyer], locale: str, timezone: str) -> list[BuyerRow]:
    words = Words(locale)
    payment, message = _Escaped(words.payment), _Escaped(words.message)
    chats, code = _Escaped(lambda names: ", ".join(names.split())), _Escaped(str)
    money = _Escaped(lambda amount: _money(*amount))

    def why(last: tuple[str, str]) -> str:
        channel, reason = last
        detail = f" ({channel})" if channel else ""
        return detail + ": " + words.reason(reason) if reason else detail

    detail = _Escaped(why)
    rows = []
    for b in buyers:
        said = detail[b.message_channel, b.message_reason]
        if b.message_waits_until is not None:
            until = format_moment(locale, b.message_waits_until, timezone)
            said += escape(": " + gettext(locale, "held for quiet hours until {when}", when=until))
        rows.append(
            BuyerRow(
                id=b.submission_id,
                name=escape(b.name),
                reference=escape(b.reference),
                quantity=b.quantity,
                amount=money[b.amount, b.currency],
                status=code[b.status],
                payment=payment[b.status],
                chats=chats[b.chats],
                unreachable=b.unreachable,
                message_id=b.message_id,
                message_status=code[b.message_status or "none"],
                message=message[b.message_status],
                detail=said,
            )
        )
    return rows


def render(
    request: Request,
    viewer: Viewer | None,
    name: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    locale: str = "en",
) -> Response:
    """The page ``name`` in the viewer's language, with the security headers."""
    locale = viewer.locale if viewer is not None else locale
    timezone = viewer.timezone if viewer is not None else "Asia/Manila"

    def when(moment: datetime | None) -> str:
        return format_moment(locale, moment, timezone) if moment is not None else ""

    values: dict[str, Any] = {
        "viewer": viewer,
        "lang": locale,
        "_": functools.partial(gettext, locale),
        "ngettext": functools.partial(ngettext, locale),
        "when": when,
        "money": _money,
        "words": Words(locale),
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, values, status_code=status_code)
    return secure(response)
