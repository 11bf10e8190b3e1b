"""Holds: the stock an unpaid (``pending``) submission keeps, and how it is let go.

An order's slots count pending and paid submissions only. An unpaid one lets its items go:
- when it expires: past the order's payment deadline (its ``deadline`` plus
  HOLD_GRACE_HOURS). HOLD_NOTICE_HOURS before that it gets a last reminder
  (``hold_expiring``, "pay before ..."), and it expires no sooner than HOLD_NOTICE_HOURS
  after that reminder went out, so the reminder always comes first, even after a pause of
  the job. A submission whose receipt waits for the GOM's review does not expire;
- when the order's GOM cancels it (`cancel_hold`: `/manage` in chat, the console).
Either way it becomes ``expired`` / ``cancelled`` (the core schema's values), the buyer is
told in their language (``hold_expired`` / ``hold_cancelled``) and the audit log has a row.
Run by the worker's cron (every 5 minutes) or `gomflow-messaging run-job expire-holds --at`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from gomflow_messaging.errors import ValidationFailed
from gomflow_messaging.workflows import audit, notify

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg

    from gomflow_messaging.db import Pool
    from gomflow_messaging.workflows.ports import Ports

log = logging.getLogger(__name__)

#: Holds looked at per run; the next run (5 minutes later) takes the rest.
BATCH = 1000

CancelResult = Literal["cancelled", "not_found", "not_pending"]

#: A receipt the GOM has yet to decide: the buyer may well have paid.
_NO_PROOF_WAITING = """
    NOT EXISTS (SELECT 1 FROM payment_proofs p
                 WHERE p.submission_id = s.id AND p.status = 'pending_review')
"""


async def expire(ports: Ports, at: datetime) -> dict[str, Any]:
    """Last reminders for holds near their payment deadline; expiry for those past it."""
    settings = ports.settings
    grace = timedelta(hours=settings.hold_grace_hours)
    notice = timedelta(hours=settings.hold_notice_hours)
    to_warn = await ports.pool.fetch(
        f"""
        SELECT s.id, o.deadline + $2::interval AS due
          FROM submissions s JOIN orders o ON o.id = s.order_id
         WHERE s.status = 'pending' AND o.deadline + $2::interval - $3::interval <= $1
           AND NOT EXISTS (SELECT 1 FROM hold_notices h WHERE h.submission_id = s.id)
           AND {_NO_PROOF_WAITING}
         ORDER BY o.deadline, s.id LIMIT {BATCH}
        """,
        at,
        grace,
        notice,
    )
    warned = 0
    for row in to_warn:
        warned += await _warn(ports, row["id"], max(row["due"], at + notice), at)
    to_expire = await ports.pool.fetch(
        f"""
        SELECT s.id FROM hold_notices h JOIN submissions s ON s.id = h.submission_id
         WHERE h.expired_at IS NULL AND h.expires_at <= $1 AND s.status = 'pending'
           AND {_NO_PROOF_WAITING}
         ORDER BY h.expires_at, s.id LIMIT {BATCH}
        """,
        at,
    )
    expired = 0
    for row in to_expire:
        expired += await _expire(ports, row["id"], at)
    return {"warned": warned, "expired": expired}


async def _warn(ports: Ports, submission_id: UUID, expires_at: datetime, at: datetime) -> bool:
    async with notify.transaction(ports) as batch:
        conn = batch.conn
        status = await conn.fetchval(
            "SELECT status FROM submissions WHERE id = $1 FOR UPDATE", submission_id
        )
        claimed = status == "pending" and await conn.fetchval(
            "INSERT INTO hold_notices (submission_id, warned_at, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            submission_id,
            at,
            expires_at,
        )
        if not claimed:
            return False  # paid meanwhile, or another worker told them first
        message_id = await _tell(
            batch, "hold_expiring", submission_id, at, {"expires_at": expires_at.isoformat()}
        )
        await conn.execute(
            "UPDATE hold_notices SET message_id = $2 WHERE submission_id = $1",
            submission_id,
            message_id,
        )
    return True


async def _expire(ports: Ports, submission_id: UUID, at: datetime) -> bool:
    async with notify.transaction(ports) as batch:
        conn = batch.conn
        expired = await conn.fetchval(
            "UPDATE submissions SET status = 'expired' WHERE id = $1 AND status = 'pending'"
            " RETURNING true",
            submission_id,
        )
        if not expired:
            return False
        await conn.execute(
            "UPDATE hold_notices SET expired_at = $2 WHERE submission_id = $1", submission_id, at
        )
        await audit.admin(
            conn,
            actor="system:holds",
            action="hold.expire",
            channel="",
            subject=str(submission_id),
            result="expired",
            detail={"at": at.isoformat()},
        )
        await _tell(batch, "hold_expired", submission_id, at)
    return True


async def cancel_hold(
    ports: Ports, submission_id: UUID, *, by: UUID, place: str, now: datetime | None = None
) -> CancelResult:
    """The GOM ``by`` (their profile id) cancels one unpaid submission of their own order.

    ``place`` says where they acted, for the audit row: a channel name, or ``console``.
    Returns ``cancelled``; ``not_found`` for no such submission or one of another GOM's
    orders (never told apart); ``not_pending`` when it is paid, expired or cancelled
    already. The buyer hears ``hold_cancelled`` in their language; every try is audited.
    """
    now = now or datetime.now(UTC)
    async with notify.transaction(ports) as batch:
        conn = batch.conn
        row = await conn.fetchrow(
            """
            SELECT s.status, s.payment_reference FROM submissions s
              JOIN orders o ON o.id = s.order_id
             WHERE s.id = $1 AND o.user_id = $2
               FOR UPDATE OF s
            """,
            submission_id,
            by,
        )
        result: CancelResult
        if row is None:
            result = "not_found"
        elif row["status"] != "pending":
            result = "not_pending"
        else:
            await conn.execute(
                "UPDATE submissions SET status = 'cancelled' WHERE id = $1", submission_id
            )
            await _tell(batch, "hold_cancelled", submission_id, now)
            result = "cancelled"
        await audit.admin(
            conn,
            actor=f"gom:{by}",
            action="hold.cancel",
            channel=place,
            subject=str(submission_id),
            result=result,
            detail={"reference": row["payment_reference"] if row else None},
        )
    return result


async def unpaid_holds(pool: Pool, order_id: UUID, gom_id: UUID) -> list[asyncpg.Record]:
    """The unpaid submissions of one of the GOM's orders, oldest first (at most 20)."""
    return list(
        await pool.fetch(
            """
            SELECT s.id, s.payment_reference, s.buyer_name, s.quantity, s.created_at
              FROM submissions s JOIN orders o ON o.id = s.order_id
             WHERE s.order_id = $1 AND o.user_id = $2 AND s.status = 'pending'
             ORDER BY s.created_at, s.id LIMIT 20
            """,
            order_id,
            gom_id,
        )
    )


async def find_hold(pool: Pool, reference: str, gom_id: UUID) -> asyncpg.Record | None:
    """One submission of the GOM's orders by its payment reference, with its order's title
    and whether a receipt for it waits for the GOM's review (``receipt_waiting``)."""
    return await pool.fetchrow(
        f"""
        SELECT s.id, s.payment_reference, s.buyer_name, s.quantity, s.status, o.title,
               NOT {_NO_PROOF_WAITING} AS receipt_waiting
          FROM submissions s JOIN orders o ON o.id = s.order_id
         WHERE s.payment_reference = $1 AND o.user_id = $2
        """,
        reference.strip().upper(),
        gom_id,
    )


async def _tell(
    batch: notify.Batch,
    event: str,
    submission_id: UUID,
    at: datetime,
    data: dict[str, Any] | None = None,
) -> str | None:
    """The buyer's notice, inside the caller's transaction; its message id, if one was made.

    A submission nobody can be reached for (a web one without a chat) still changes: the
    notice is left out, in a savepoint of its own, rather than holding the stock forever.
    """
    try:
        async with batch.conn.transaction():
            result = await batch.send(
                event, data or {}, [{"submission_id": str(submission_id)}], source="holds", now=at
            )
    except ValidationFailed as exc:
        log.warning("%s for %s not sent: %s", event, submission_id, exc)
        return None
    messages = result.body["messages"]
    return str(messages[0]["id"]) if messages else None
