"""The GOM's review of payment proofs: the list, approve, reject with a reason, and deciding.

``/payments`` lists the GOM's own proofs, a page at a time with a Next button, with the image
at a signed, short-lived URL and every buyer-written value quoted;
``approve <id>`` / ``reject <id> [reason]`` decide. Every decision is audited; the buyer
hears ``payment_confirmed`` or ``payment_rejected`` on their own routes; with
AUTO_DELETE_PROCESSED_IMAGES the bytes are dropped once decided. The Smart Agent's
confident match decides through the same `Review.decide`; anything else it says (or its
silence) is recorded by `Review.to_review`, which tells the GOM.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging import contacts
from gomflow_messaging import orders as order_data
from gomflow_messaging.channels.base import Button
from gomflow_messaging.free_text import quoted
from gomflow_messaging.i18n import gettext
from gomflow_messaging.money import format_money
from gomflow_messaging.workflows import audit, events, notify
from gomflow_messaging.workflows.chat.text import label
from gomflow_messaging.workflows.chat.types import Reply, button
from gomflow_messaging.workflows.proofs.urls import image_url

if TYPE_CHECKING:
    import asyncpg

    from gomflow_messaging.db import Connection
    from gomflow_messaging.workflows.chat.types import Context
    from gomflow_messaging.workflows.ports import Ports

REVIEW_PAGE = 10
MAX_REASON = 300
#: What Telegram and Discord can show inline; other proofs get a link to open.
_DISPLAYABLE = ("image/jpeg", "image/png")
REASON_KEYS = ("amount", "unreadable", "account")


def _(ctx: Context, message: str, **values: Any) -> str:
    return gettext(ctx.locale, message, **values)


def reason_texts(locale: str) -> dict[str, str]:
    """The common reasons, as the buyer reads them (in the buyer's language)."""
    return {
        "amount": gettext(locale, "the amount does not match what you owe"),
        "unreadable": gettext(locale, "the receipt cannot be read"),
        "account": gettext(locale, "the payment went to a different account"),
    }


def uuid_in(value: str) -> UUID | None:
    """The id a command line starts with (``approve <id>``), or None."""
    try:
        return UUID(value.split()[0]) if value.strip() else None
    except ValueError:
        return None


def agent_line(
    locale: str, result: dict[str, Any] | None, checked_at: datetime | None, currency: str
) -> str:
    """What the Smart Agent read in a receipt, in one line (the chat's review and the console)."""
    if checked_at is None:
        return gettext(locale, "Smart Agent: still reading it")
    result = result or {}
    status = result.get("status")
    if status in ("unavailable", "refused"):
        return gettext(locale, "Smart Agent: no answer; please check it yourself")
    if status != "answered":
        return gettext(locale, "Smart Agent: not used; please check it yourself")
    match = result.get("match")
    parts = [
        gettext(
            locale,
            "Smart Agent's certainty: {confidence}%",
            confidence=round(float(result.get("confidence") or 0) * 100),
        )
    ]
    if result.get("amount_read"):
        parts.append(
            gettext(
                locale,
                "amount read: {v}",
                v=format_money(
                    Decimal(result["amount_read"]), result.get("currency_read") or currency
                ),
            )
        )
    if isinstance(match, dict):
        parts.append(
            gettext(
                locale,
                "matches this order at {score}%",
                score=round(float(match.get("match_score") or 0)),
            )
        )
    else:
        parts.append(gettext(locale, "no match with this order"))
    return "; ".join(parts)


class Review:
    """The GOM's side; one per process, stateless."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.settings = ports.settings
        self.pool = ports.pool

    async def to_review(self, proof_id: UUID, summary: dict[str, Any]) -> None:
        """Record what the agent said (or why it said nothing) and tell the GOM."""
        now = datetime.now(UTC)
        async with notify.transaction(self.ports) as batch:
            row = await batch.conn.fetchrow(
                """
                UPDATE payment_proofs p SET agent_result = $2::jsonb, checked_at = $3
                  FROM submissions s JOIN orders o ON o.id = s.order_id
                 WHERE p.id = $1 AND p.checked_at IS NULL AND s.id = p.submission_id
                RETURNING p.status, s.buyer_name, s.payment_reference, s.total_amount,
                          s.currency, o.title, o.user_id
                """,
                proof_id,
                summary,
                now,
            )
            if row is None or row["status"] != "pending_review":
                return
            await batch.send(
                "payment_needs_review",
                _gom_alert_data(row),
                [{"gom_id": str(row["user_id"])}],
                source="payment_proofs",
                now=now,
            )

    async def review_list(self, ctx: Context, args: str = "") -> list[Reply]:
        """``/payments``: the GOM's own proofs waiting for review, oldest first, a page at a
        time; ``payments after <proof id>`` is the next page (a Next button), so every
        waiting proof can be reached, however many there are."""
        after = uuid_in(args.removeprefix("after").strip()) if args.startswith("after") else None
        rows = await self.pool.fetch(
            """
            WITH waiting AS (
                SELECT p.id, p.mime, p.content IS NOT NULL AS stored, p.agent_result,
                       p.checked_at, p.created_at, s.buyer_name, s.payment_reference,
                       s.total_amount, s.currency, o.title,
                       row_number() OVER (ORDER BY p.created_at, p.id) AS position,
                       count(*) OVER () AS total
                  FROM payment_proofs p
                  JOIN submissions s ON s.id = p.submission_id
                  JOIN orders o ON o.id = s.order_id
                 WHERE p.status = 'pending_review' AND o.user_id = $1
            )
            SELECT * FROM waiting
             WHERE $2::uuid IS NULL
                OR (created_at, id) > (SELECT created_at, id FROM payment_proofs WHERE id = $2)
             ORDER BY position LIMIT $3
            """,
            ctx.gom_id,
            after,
            REVIEW_PAGE,
        )
        if not rows:
            return [Reply(_(ctx, "No payment proofs are waiting for your review."), private=True)]
        total = int(rows[0]["total"])
        first, last = int(rows[0]["position"]), int(rows[-1]["position"])
        header = (
            _(ctx, "Payment proofs to review: {n}", n=total)
            if first == 1 and last == total
            else _(
                ctx,
                "Payment proofs to review: {n}. Here are {first} to {last}, oldest first.",
                n=total,
                first=first,
                last=last,
            )
        )
        replies = [Reply(header, private=True)]
        clock = events.RenderContext(ctx.locale, ctx.timezone)
        for r in rows:
            lines = [
                # The name as the buyer typed it, quoted: it can never read as our own line.
                f"{quoted(r['buyer_name'])} · {r['payment_reference']}",
                r["title"],
                _(ctx, "Amount due: {v}", v=format_money(r["total_amount"], r["currency"])),
                agent_line(ctx.locale, r["agent_result"], r["checked_at"], r["currency"]),
                _(ctx, "Sent: {when}", when=clock.when(r["created_at"])),
            ]
            actions: list[tuple[Button, ...]] = [
                (
                    button(label(ctx, "Approve"), f"approve {r['id']}"),
                    button(label(ctx, "Reject"), f"reject {r['id']}"),
                )
            ]
            picture = ""
            if not r["stored"]:
                lines.append(_(ctx, "The receipt image is no longer kept."))
            else:
                url = image_url(self.settings, r["id"])
                if r["mime"] in _DISPLAYABLE:
                    picture = url
                else:
                    actions.append((Button(label(ctx, "Open the receipt"), url=url),))
            replies.append(
                Reply("\n".join(lines), buttons=tuple(actions), image_url=picture, private=True)
            )
        if last < total:
            replies.append(
                Reply(
                    _(ctx, "{n} more waiting after these.", n=total - last),
                    buttons=((button(_(ctx, "Next"), f"payments after {rows[-1]['id']}"),),),
                    private=True,
                )
            )
        return replies

    async def approve(self, ctx: Context, args: str) -> list[Reply]:
        assert ctx.gom_id is not None
        proof_id = uuid_in(args)
        outcome = await self.decide(
            proof_id,
            approve=True,
            actor=f"gom:{ctx.gom_id}",
            channel=ctx.sender.channel,
            gom_id=ctx.gom_id,
        )
        return [self._outcome_reply(ctx, outcome)]

    async def reject(self, ctx: Context, args: str) -> list[Reply]:
        """``reject <id>`` asks why; ``reject <id> amount|unreadable|account|other|<text>``."""
        assert ctx.gom_id is not None
        proof_id = uuid_in(args)
        _id, _sep, reason = args.strip().partition(" ")
        reason = reason.strip()
        row = await self._owned(proof_id, ctx.gom_id)
        if row is None or row["status"] != "pending_review":
            return [self._outcome_reply(ctx, f"already_{row['status']}" if row else "not_found")]
        if not reason or reason.lower() == "other":
            if reason:
                # The GOM's next message is the reason (the chat's conversation holds it).
                state = {"flow": "reject_reason", "proof_id": str(proof_id)}
                await ctx.conversation.save(ctx, state)
                return [
                    Reply(
                        _(ctx, "Type the reason the buyer will see, in one message."),
                        buttons=((button(label(ctx, "Cancel"), "/cancel"),),),
                        private=True,
                    )
                ]
            prefix = f"reject {proof_id}"
            return [
                Reply(
                    _(
                        ctx,
                        "Why are you rejecting the receipt of {name} for {ref}?",
                        name=quoted(row["buyer_name"]),
                        ref=row["payment_reference"],
                    ),
                    buttons=(
                        (button(label(ctx, "Wrong amount"), f"{prefix} amount"),),
                        (button(label(ctx, "Cannot read it"), f"{prefix} unreadable"),),
                        (button(label(ctx, "Wrong account"), f"{prefix} account"),),
                        (
                            button(label(ctx, "Other reason"), f"{prefix} other"),
                            button(label(ctx, "Cancel"), "/cancel"),
                        ),
                    ),
                    private=True,
                )
            ]
        key = reason.lower() if reason.lower() in REASON_KEYS else ""
        outcome = await self.decide(
            proof_id,
            approve=False,
            actor=f"gom:{ctx.gom_id}",
            channel=ctx.sender.channel,
            gom_id=ctx.gom_id,
            reason_key=key,
            reason="" if key else reason[:MAX_REASON],
        )
        return [self._outcome_reply(ctx, outcome)]

    def _outcome_reply(self, ctx: Context, outcome: str) -> Reply:
        texts = {
            "approved": _(ctx, "Approved. The buyer has been told their payment is confirmed."),
            "rejected": _(
                ctx, "Rejected. The buyer has been told why, and how to send the receipt again."
            ),
            "already_approved": _(ctx, "This payment proof was already approved."),
            "already_rejected": _(ctx, "This payment proof was already rejected."),
            "already_superseded": _(
                ctx, "Another receipt for this order was approved; nothing to decide here."
            ),
            "no_room": _(
                ctx,
                "This buyer's hold ended and the order has no room for it now: raise the"
                " order's maximum to approve it, or reject the receipt and refund the buyer.",
            ),
        }
        return Reply(
            texts.get(outcome, _(ctx, "I could not find that payment proof among your orders.")),
            private=True,
        )

    async def _owned(self, proof_id: UUID | None, gom_id: UUID) -> asyncpg.Record | None:
        if proof_id is None:
            return None
        return await self.pool.fetchrow(
            """
            SELECT p.status, s.buyer_name, s.payment_reference
              FROM payment_proofs p
              JOIN submissions s ON s.id = p.submission_id
              JOIN orders o ON o.id = s.order_id
             WHERE p.id = $1 AND o.user_id = $2
            """,
            proof_id,
            gom_id,
        )

    # -- deciding ------------------------------------------------------------------------

    async def decide(
        self,
        proof_id: UUID | None,
        *,
        approve: bool,
        actor: str,
        channel: str,
        gom_id: UUID | None = None,
        reason_key: str = "",
        reason: str = "",
        agent_result: dict[str, Any] | None = None,
    ) -> str:
        """Approve or reject one pending proof, atomically with its audit and notices.

        ``gom_id``: the deciding GOM, who must own the order (None only for the agent).
        Returns approved, rejected, already_<status>, not_found, or no_room: the buyer's hold
        had expired and the order is full again, so approving would sell more than it has.
        """
        if proof_id is None:
            return "not_found"
        now = datetime.now(UTC)
        drop = self.settings.auto_delete_processed_images
        async with notify.transaction(self.ports) as batch:
            conn = batch.conn
            row = await conn.fetchrow(
                """
                SELECT p.status, p.submission_id, s.status AS submission_status,
                       s.buyer_name, s.payment_reference, s.total_amount, s.currency,
                       s.quantity, s.order_id, o.title, o.user_id
                  FROM payment_proofs p
                  JOIN submissions s ON s.id = p.submission_id
                  JOIN orders o ON o.id = s.order_id
                 WHERE p.id = $1
                   FOR UPDATE OF p
                """,
                proof_id,
            )
            if row is None or (gom_id is not None and row["user_id"] != gom_id):
                return "not_found"
            if row["status"] != "pending_review":
                return f"already_{row['status']}"
            # A hold that ended gave its items back: paying it now must still fit.
            ended = row["submission_status"] in ("expired", "failed")
            if approve and ended and not await _room_for(conn, row["order_id"], row["quantity"]):
                return "no_room"
            status = "approved" if approve else "rejected"
            stored_reason = reason or (reason_texts("en")[reason_key] if reason_key else "")
            await conn.execute(
                """
                UPDATE payment_proofs
                   SET status = $2, decided_by = $3, decided_at = $4, reason = $5,
                       agent_result = coalesce($6::jsonb, agent_result),
                       checked_at = coalesce(checked_at, $4),
                       content = CASE WHEN $7 THEN NULL ELSE content END
                 WHERE id = $1
                """,
                proof_id,
                status,
                actor,
                now,
                stored_reason or None,
                agent_result,
                drop,
            )
            submission_after = row["submission_status"]
            if approve:
                paid = await conn.fetchval(
                    "UPDATE submissions SET status = 'paid' WHERE id = $1"
                    " AND status IN ('pending', 'failed', 'expired') RETURNING status",
                    row["submission_id"],
                )
                submission_after = paid or submission_after
                # Other receipts for the same payment need no decision any more.
                await conn.execute(
                    """
                    UPDATE payment_proofs
                       SET status = 'superseded', decided_by = $3, decided_at = $4,
                           content = CASE WHEN $5 THEN NULL ELSE content END
                     WHERE submission_id = $1 AND id <> $2 AND status = 'pending_review'
                    """,
                    row["submission_id"],
                    proof_id,
                    actor,
                    now,
                    drop,
                )
            await audit.admin(
                conn,
                actor=actor,
                action=f"payment_proof.{'approve' if approve else 'reject'}",
                channel=channel,
                subject=str(proof_id),
                result=status,
                detail={
                    "submission_id": str(row["submission_id"]),
                    "reference": row["payment_reference"],
                    "before": {"proof": row["status"], "submission": row["submission_status"]},
                    "after": {"proof": status, "submission": submission_after},
                    "reason": stored_reason or None,
                    "image_deleted": drop,
                },
            )
            if approve:
                await _approval_notices(batch, row, by_agent=gom_id is None, now=now)
            else:
                text = await _buyer_reason(conn, row["submission_id"], reason_key, reason)
                await batch.send(
                    "payment_rejected",
                    {"reason": text},
                    [{"submission_id": str(row["submission_id"])}],
                    source="payment_proofs",
                    now=now,
                )
        return status


async def _approval_notices(
    batch: notify.Batch, row: asyncpg.Record, *, by_agent: bool, now: datetime
) -> None:
    """payment_confirmed to the buyer; payment_received to the GOM if they did not decide."""
    await batch.send(
        "payment_confirmed",
        {},
        [{"submission_id": str(row["submission_id"])}],
        source="payment_proofs",
        now=now,
    )
    if by_agent:
        await batch.send(
            "payment_received",
            _gom_alert_data(row),
            [{"gom_id": str(row["user_id"])}],
            source="payment_proofs",
            now=now,
        )


async def _buyer_reason(conn: Connection, submission_id: UUID, key: str, text: str) -> str:
    """A common reason in the buyer's own language; a typed one as the GOM wrote it."""
    if not key:
        return text
    found = await contacts.for_submissions(conn, submission_id=submission_id)
    locale = found[0].locale if found else "en"
    return reason_texts(locale)[key]


def _gom_alert_data(row: asyncpg.Record) -> dict[str, Any]:
    """What the GOM's payment alerts say about a submission (needs review / received)."""
    return {
        "buyer_name": row["buyer_name"],
        "order_title": row["title"],
        "amount": str(row["total_amount"]),
        "currency": row["currency"],
        "reference": row["payment_reference"],
    }


async def _room_for(conn: Connection, order_id: UUID, quantity: int) -> bool:
    """Whether ``quantity`` more fits the order, its row locked as a new submission locks
    it (orders.create_submission), so two decisions cannot both take the last slots."""
    maximum: int | None = await conn.fetchval(
        "SELECT max_orders FROM orders WHERE id = $1 FOR UPDATE", order_id
    )
    return maximum is None or await order_data.taken(conn, order_id) + quantity <= maximum
