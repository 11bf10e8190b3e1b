"""The console's pages: thin views that read through `queries` and change anything only by
calling the same workflows as the chat commands (audited with "console" as the place).

Every POST carries the session's CSRF token and comes from one of our own pages; an object
that is not the viewer's (another GOM's order, receipt or message) is a 404, as if absent.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from starlette.responses import JSONResponse, RedirectResponse, Response

from gomflow_messaging import ratelimit
from gomflow_messaging.api.common import services
from gomflow_messaging.api.operators import same_origin
from gomflow_messaging.console import queries, sessions
from gomflow_messaging.console.templating import (
    Words,
    buyer_rows,
    captions_css,
    columns,
    render,
    secure,
)
from gomflow_messaging.i18n import LOCALES, label, normalize_locale
from gomflow_messaging.workflows import console_links, holds, order_updates
from gomflow_messaging.workflows.proofs.review import (
    MAX_REASON,
    REASON_KEYS,
    Review,
    agent_line,
)

if TYPE_CHECKING:
    import asyncpg
    from starlette.requests import Request

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.console.sessions import Viewer

ACTIONS = ("remind", "update", "close")


async def _viewer(request: Request) -> Viewer | None:
    svc = services(request)
    return await sessions.current(request, svc.pool, svc.settings)


def _browser_locale(request: Request) -> str:
    """For a signed-out visitor: the language their browser asks for first, if ours."""
    first = request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip()
    locale = normalize_locale(first)
    return locale if locale in LOCALES else "en"


def _sign_in_page(request: Request, status_code: int = 200, state: str = "") -> Response:
    return render(
        request,
        None,
        "sign_in.html",
        {"state": state},
        status_code=status_code,
        locale=_browser_locale(request),
    )


def _not_found(request: Request, viewer: Viewer) -> Response:
    return render(request, viewer, "not_found.html", status_code=404)


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


async def _post_allowed(request: Request, viewer: Viewer | None) -> dict[str, str] | Response:
    """The form of a POST from this GOM's own page with its token; otherwise a 403 page.

    Operators read only: the console's changes are a GOM's (their chat's commands, here).
    """
    if viewer is None:
        return _sign_in_page(request, 403)
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if (
        viewer.operator
        or not same_origin(dict(request.scope["headers"]))
        or not sessions.csrf_valid(viewer, values.get("csrf", ""))
    ):
        return render(request, viewer, "refused.html", status_code=403)
    return values


async def home(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _sign_in_page(request)
    found = await queries.orders(services(request).pool, viewer.gom_id)
    return render(request, viewer, "home.html", {"orders": found})


# -- signing in and out ----------------------------------------------------------------------


async def sign_in_link(request: Request) -> Response:
    """The link's page: one button, so a chat's link preview cannot use the link up."""
    token = request.path_params["token"]
    state = await console_links.state(services(request).pool, token, datetime.now(UTC))
    if state != "valid":
        return _sign_in_page(request, 410 if state != "unknown" else 404, state)
    return render(
        request, None, "sign_in_link.html", {"token": token}, locale=_browser_locale(request)
    )


async def sign_in(request: Request) -> Response:
    svc = services(request)
    client = request.client.host if request.client else "unknown"
    # Per address, under the link-code budget: guessing a link costs more than it can win.
    verdict = await ratelimit.hit(svc.queue.redis, svc.settings, "link_codes", "console", client)
    if verdict != "ok":
        return _sign_in_page(request, 429, "too_many")
    if not same_origin(dict(request.scope["headers"])):
        return _sign_in_page(request, 403, "cross_site")
    form = await request.form()
    token = form.get("token")
    if not isinstance(token, str) or not 0 < len(token) <= 100:
        return _sign_in_page(request, 400, "unknown")
    outcome = await console_links.redeem(svc.pool, token, datetime.now(UTC))
    if not isinstance(outcome, UUID):
        return _sign_in_page(request, 410 if outcome != "unknown" else 404, outcome)
    session = await sessions.start(svc.pool, outcome)
    response = RedirectResponse("/console", status_code=303)
    sessions.set_cookie(response, svc.settings, session)
    return secure(response)


async def sign_out(request: Request) -> Response:
    viewer = await _viewer(request)
    allowed = await _post_allowed(request, viewer)
    if isinstance(allowed, Response):
        return allowed
    assert viewer is not None
    svc = services(request)
    await sessions.end(svc.pool, viewer)
    response = render(request, None, "signed_out.html", locale=viewer.locale)
    sessions.clear_cookie(response, svc.settings)
    return response


# -- an order --------------------------------------------------------------------------------


async def _order_for(
    request: Request,
) -> tuple[Viewer, queries.OrderSummary] | Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _sign_in_page(request)
    order_id = _uuid(request.path_params["order_id"])
    summary = (
        await queries.order(services(request).pool, order_id, viewer.gom_id) if order_id else None
    )
    if summary is None:
        return _not_found(request, viewer)
    return viewer, summary


def _version(found: list[queries.Buyer]) -> str:
    """Changes whenever a payment or a message status on the page does."""
    digest = hashlib.sha256()
    for b in found:
        digest.update(f"{b.submission_id}{b.status}{b.message_id}{b.message_status}".encode())
    return digest.hexdigest()[:16]


async def order_page(request: Request) -> Response:
    found = await _order_for(request)
    if isinstance(found, Response):
        return found
    viewer, summary = found
    buyers = await queries.buyers(services(request).pool, summary.id)
    per_chat, nowhere = queries.reach(buyers)
    return render(
        request,
        viewer,
        "order.html",
        {
            "order": summary,
            "rows": buyer_rows(buyers, viewer.locale, viewer.timezone),
            "reach": per_chat,
            "nowhere": nowhere,
            "reach_max": max([*per_chat.values(), nowhere, 1]),
            "version": _version(buyers),
            "columns": columns(viewer.locale),
            "cancel_label": label(viewer.locale, "Cancel hold"),
        },
    )


async def captions(request: Request) -> Response:
    """The order page's stylesheet of column captions for phones, in one of our languages."""
    locale = request.path_params["locale"]
    if locale not in LOCALES:
        return secure(Response("", status_code=404, media_type="text/css"))
    response = secure(Response(captions_css(locale), media_type="text/css"))
    # The same for everyone and every order: a browser keeps it (a deploy may change it).
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


async def order_json(request: Request) -> Response:
    """The order page's data as JSON: what its script polls to know when to refresh."""
    found = await _order_for(request)
    if isinstance(found, Response):
        return found
    _, summary = found
    buyers = await queries.buyers(services(request).pool, summary.id)
    version = _version(buyers)
    etag = f'"{version}"'
    if request.headers.get("if-none-match") == etag:
        # The page's script asks with the version it shows, every 5 s: while nothing
        # changed it gets no body (1,000 buyers are 250 KiB of JSON to build and to read).
        return secure(Response(status_code=304, headers={"ETag": etag}))
    per_chat, nowhere = queries.reach(buyers)
    body = {
        "order": {"id": str(summary.id), "title": summary.title, "unpaid": summary.unpaid},
        "version": version,
        "reach": {"per_chat": per_chat, "nowhere": nowhere},
        "buyers": [
            {
                "submission_id": b.submission_id,
                "reference": b.reference,
                "status": b.status,
                "chats": b.chats.split(),
                "reached": b.reached.split(),
                "message_id": b.message_id,
                "message_status": b.message_status,
                "message_reason": b.message_reason,
            }
            for b in buyers
        ],
    }
    return secure(JSONResponse(body, headers={"ETag": etag}))


async def order_csv(request: Request) -> Response:
    found = await _order_for(request)
    if isinstance(found, Response):
        return found
    viewer, summary = found
    buyers = await queries.buyers(services(request).pool, summary.id)
    words = Words(viewer.locale)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "name",
            "reference",
            "quantity",
            "amount",
            "currency",
            "status",
            "reached_on",
            "last_message",
            "last_message_reason",
        ]
    )
    for row in queries.csv_rows(buyers):
        writer.writerow(
            [
                _spreadsheet_safe(row["name"]),
                row["reference"],
                row["quantity"],
                row["amount"],
                row["currency"],
                row["status"],
                row["reached_on"],
                row["last_message"],
                words.reason(row["last_message_reason"]),
            ]
        )
    response = Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="order-{summary.id}.csv"'},
    )
    return secure(response)


def _spreadsheet_safe(value: str) -> str:
    """A buyer-written cell a spreadsheet will not run as a formula (=, +, -, @)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def confirm_action(request: Request) -> Response:
    """The confirmation step before an action that messages people or closes the order."""
    found = await _order_for(request)
    if isinstance(found, Response):
        return found
    viewer, summary = found
    action = request.path_params["action"]
    if action not in ACTIONS or viewer.operator:
        return _not_found(request, viewer)
    return render(request, viewer, "confirm.html", {"order": summary, "action": action})


async def _order_post(
    request: Request,
) -> tuple[Viewer, queries.OrderSummary, dict[str, str]] | Response:
    """A POST about one of the GOM's own orders, with its form (checked by `_post_allowed`)."""
    found = await _order_for(request)
    if isinstance(found, Response):
        return found
    viewer, summary = found
    allowed = await _post_allowed(request, viewer)
    if isinstance(allowed, Response):
        return allowed
    return viewer, summary, allowed


def _update_text(form: dict[str, str]) -> str:
    return form.get("text", "").replace("\x00", "").strip()[: order_updates.MAX_TEXT]


async def preview_update(request: Request) -> Response:
    found = await _order_post(request)
    if isinstance(found, Response):
        return found
    viewer, summary, form = found
    text = _update_text(form)
    if not text:
        return render(request, viewer, "confirm.html", {"order": summary, "action": "update"})
    buyers = await queries.buyers(services(request).pool, summary.id)
    return render(
        request,
        viewer,
        "preview.html",
        {"order": summary, "text": text, "buyers": len(buyers)},
    )


async def do_action(request: Request) -> Response:
    found = await _order_post(request)
    if isinstance(found, Response):
        return found
    viewer, summary, form = found
    assert viewer.gom_id is not None
    action = request.path_params["action"]
    svc: Services = services(request)
    gom = svc.bot.gom
    outcome: dict[str, Any] = {"order": summary, "action": action}
    if action == "remind":
        outcome["count"] = await gom.remind_unpaid(viewer.gom_id, summary.id, place="console")
    elif action == "close":
        outcome["closed"] = await gom.close_order(viewer.gom_id, summary.id, place="console")
    elif action == "update":
        text = _update_text(form)
        if not text:
            return render(request, viewer, "confirm.html", {"order": summary, "action": action})
        outcome["count"] = await order_updates.send_update(
            svc, viewer.gom_id, summary.id, text, place="console"
        )
    else:
        return _not_found(request, viewer)
    return render(request, viewer, "done.html", outcome)


async def _hold_for(
    request: Request, viewer: Viewer, summary: queries.OrderSummary
) -> asyncpg.Record | None:
    """The submission in the path, if it is one of this order's (the order is the viewer's)."""
    submission_id = _uuid(request.path_params["submission_id"])
    if submission_id is None:
        return None
    return await queries.hold(services(request).pool, summary.id, submission_id)


def _hold_words(
    viewer: Viewer, summary: queries.OrderSummary, hold: asyncpg.Record
) -> dict[str, Any]:
    return {
        "order": summary,
        "hold": hold,
        "what": {
            "ref": hold["payment_reference"],
            "name": hold["buyer_name"],
            "n": hold["quantity"],
            "title": summary.title,
        },
        "yes_label": label(viewer.locale, "Yes, cancel it"),
        "keep_label": label(viewer.locale, "Keep it"),
    }


async def confirm_cancel_hold(request: Request) -> Response:
    """The confirmation step before cancelling one unpaid buyer's hold."""
    found = await _order_for(request)
    if isinstance(found, Response):
        return found
    viewer, summary = found
    hold = None if viewer.operator else await _hold_for(request, viewer, summary)
    if hold is None:
        return _not_found(request, viewer)
    return render(request, viewer, "cancel_hold.html", _hold_words(viewer, summary, hold))


async def cancel_hold(request: Request) -> Response:
    """Cancel the hold through the chat's own workflow (audited, the buyer told)."""
    found = await _order_post(request)
    if isinstance(found, Response):
        return found
    viewer, summary, _form = found
    assert viewer.gom_id is not None
    hold = await _hold_for(request, viewer, summary)
    if hold is None:
        return _not_found(request, viewer)
    result = await holds.cancel_hold(
        services(request), hold["id"], by=viewer.gom_id, place="console"
    )
    if result == "not_found":
        return _not_found(request, viewer)
    words = _hold_words(viewer, summary, hold)
    return render(request, viewer, "cancel_hold.html", {**words, "result": result})


# -- receipts ----------------------------------------------------------------------------------


async def receipts(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _sign_in_page(request)
    try:
        page = min(max(int(request.query_params.get("page", "1")), 1), 10_000)
    except ValueError:
        page = 1
    rows, total = await queries.waiting_proofs(services(request).pool, viewer.gom_id, page)
    proofs = [
        {
            **dict(r),
            "agent": agent_line(viewer.locale, r["agent_result"], r["checked_at"], r["currency"]),
            "image": r["stored"] and r["mime"].startswith("image/"),
        }
        for r in rows
    ]
    return render(
        request,
        viewer,
        "receipts.html",
        {
            "proofs": proofs,
            "total": total,
            "page": page,
            "more": page * queries.RECEIPTS_PAGE < total,
            "reasons": REASON_KEYS,
        },
    )


async def receipt_image(request: Request) -> Response:
    viewer = await _viewer(request)
    proof_id = _uuid(request.path_params["proof_id"])
    if viewer is None:
        return _sign_in_page(request, 401)
    row = (
        await queries.proof_image(services(request).pool, proof_id, viewer.gom_id)
        if proof_id
        else None
    )
    if row is None or row["content"] is None:
        return _not_found(request, viewer)
    response = Response(
        bytes(row["content"]),
        media_type=row["mime"],
        headers={"Content-Disposition": "inline", "Cache-Control": "private, no-store"},
    )
    secure(response)
    response.headers["Cache-Control"] = "private, no-store"
    return response


async def decide(request: Request) -> Response:
    viewer = await _viewer(request)
    allowed = await _post_allowed(request, viewer)
    if isinstance(allowed, Response):
        return allowed
    assert viewer is not None and viewer.gom_id is not None
    proof_id = _uuid(request.path_params["proof_id"])
    svc: Services = services(request)
    if request.path_params["decision"] not in ("approve", "reject"):
        return _not_found(request, viewer)
    if proof_id is None or await queries.proof_order(svc.pool, proof_id, viewer.gom_id) is None:
        return _not_found(request, viewer)
    approve = request.path_params["decision"] == "approve"
    reason = allowed.get("reason", "").replace("\x00", "").strip()
    if not approve and not reason:
        return render(request, viewer, "refused.html", {"missing_reason": True}, 400)
    key = reason if reason in REASON_KEYS else ""
    outcome = await Review(svc).decide(
        proof_id,
        approve=approve,
        actor=f"gom:{viewer.gom_id}",
        channel="console",
        gom_id=viewer.gom_id,
        reason_key=key,
        reason="" if key else reason[:MAX_REASON],
    )
    return render(request, viewer, "decided.html", {"outcome": outcome})


# -- one message's timeline ------------------------------------------------------------------


async def message_page(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer is None:
        return _sign_in_page(request)
    message_id = _uuid(request.path_params["message_id"])
    found = (
        await queries.message(services(request).pool, message_id, viewer.gom_id)
        if message_id
        else None
    )
    if found is None:
        return _not_found(request, viewer)
    row, attempts, audit = found
    events: list[tuple[datetime, str, str]] = [(row["created_at"], "created", "")]
    for a in attempts:
        detail = " ".join(x for x in (a["error_code"] or "", a["error"] or "") if x)
        events.append((a["finished_at"] or a["started_at"], f"attempt {a['attempt']}", detail))
    for a in audit:
        detail = json.dumps(a["detail"], default=str)[:300] if a["detail"] else ""
        events.append((a["at"], f"{a['action']} {a['result'] or ''}".strip(), detail))
    for column in ("sent_at", "delivered_at", "read_at"):
        if row[column] is not None:
            events.append((row[column], column.removesuffix("_at"), ""))
    events.sort(key=lambda e: e[0])
    return render(
        request,
        viewer,
        "message.html",
        {"message": row, "events": events},
    )
