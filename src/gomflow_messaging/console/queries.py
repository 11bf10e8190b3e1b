"""Every read the console's pages make, in one place: SQL in no template and no view.

Each function takes ``gom_id``: the GOM's own data only, or everything for an operator
(``None``). An order's buyers are ONE query however many there are (no query per buyer),
so 1,000 buyers cost one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal
    from uuid import UUID

    import asyncpg

    from gomflow_messaging.db import Pool

#: A message that got through: the platform took it (or says it arrived, or was read).
REACHED = ("sent", "delivered", "read")
RECEIPTS_PAGE = 10


@dataclass(frozen=True)
class OrderSummary:
    id: UUID
    title: str
    gom_name: str
    currency: str
    deadline: datetime
    is_active: bool
    filled: int
    max_orders: int | None
    paid: int
    unpaid: int
    expired: int
    collected: Decimal
    proofs_waiting: int


class Buyer(NamedTuple):
    """One buyer of an order: the columns of `buyers`' query, in its order.

    A named tuple built from the row as it comes (`_make`): an order has 1,000 buyers and
    more, and a frozen dataclass took 4 ms a page to build, by keyword 2 ms more.
    """

    #: Ids as text: the console only prints them, and a page has 1,000 of each.
    submission_id: str
    name: str
    reference: str
    quantity: int
    amount: Decimal
    currency: str
    status: str
    #: Chats where this buyer can be reached now (their reachable addresses), by name,
    #: space-separated ("sandbox telegram"): text, not an array, as a list per buyer made
    #: the collector run twice as often (`chats.split()` for the names).
    chats: str
    #: Chats where a message to them got through at least once, the same way.
    reached: str
    message_id: str | None
    message_channel: str
    message_status: str
    message_reason: str
    #: A queued message held back until then (the buyer's quiet hours).
    message_waits_until: datetime | None

    @property
    def unreachable(self) -> bool:
        """Nobody can reach this buyer: no reachable chat, or the last try failed and
        nothing ever got through."""
        failed = self.message_status in ("failed", "skipped") and self.message_reason not in (
            "opted_out",
            "preference_off",
        )
        return not self.chats or (failed and not self.reached)


def _owner(column: str, n: int) -> str:
    """The GOM's own rows (``$n`` their profile id), or every row when ``$n`` is NULL."""
    return f"(${n}::uuid IS NULL OR {column} = ${n})"


# An order's summary, one row per order; {where} picks the orders.
_SUMMARY = """
    SELECT o.id, o.title, o.currency, o.deadline, o.is_active, o.max_orders,
           p.name AS gom_name,
           coalesce(sum(s.quantity) FILTER (WHERE s.status NOT IN
               ('cancelled', 'expired', 'failed')), 0)::int AS filled,
           count(s.id) FILTER (WHERE s.status = 'paid') AS paid,
           count(s.id) FILTER (WHERE s.status = 'pending') AS unpaid,
           count(s.id) FILTER (WHERE s.status = 'expired') AS expired,
           coalesce(sum(s.total_amount) FILTER (WHERE s.status = 'paid'), 0) AS collected,
           (SELECT count(*) FROM payment_proofs pp JOIN submissions ps
                ON ps.id = pp.submission_id
             WHERE ps.order_id = o.id AND pp.status = 'pending_review') AS proofs_waiting
      FROM orders o
      JOIN profiles p ON p.id = o.user_id
      LEFT JOIN submissions s ON s.order_id = o.id
     WHERE {where}
     GROUP BY o.id, p.name
"""


async def orders(pool: Pool, gom_id: UUID | None) -> list[OrderSummary]:
    """Home: the GOM's orders (every order for an operator), open ones first."""
    rows = await pool.fetch(
        _SUMMARY.format(where=_owner("o.user_id", 1))
        + " ORDER BY o.is_active DESC, o.deadline, o.id LIMIT 500",
        gom_id,
    )
    return [OrderSummary(**dict(r)) for r in rows]


async def order(pool: Pool, order_id: UUID, gom_id: UUID | None) -> OrderSummary | None:
    """One order's summary, if it is this GOM's (any for an operator)."""
    row = await pool.fetchrow(
        _SUMMARY.format(where="o.id = $2 AND " + _owner("o.user_id", 1)), gom_id, order_id
    )
    return OrderSummary(**dict(row)) if row else None


async def buyers(pool: Pool, order_id: UUID) -> list[Buyer]:
    """Every buyer of the order with their chats and the last message to them about this
    order (a buyer of another GOM's order gets that GOM's messages too): one query.

    The order's messages are read once, grouped by buyer (a lateral join per buyer probed
    the index three times a buyer: a third more of Postgres's time at 1,000 buyers).
    Call only after `order` said the viewer may see this order.
    """
    rows = await pool.fetch(
        """
        WITH last AS (
                SELECT DISTINCT ON (contact_id) contact_id, id, channel, status, status_reason,
                       next_attempt_at
                  FROM messages WHERE order_id = $1
                 ORDER BY contact_id, created_at DESC, id DESC),
             reached AS (
                SELECT contact_id, string_agg(DISTINCT channel, ' ' ORDER BY channel) AS reached
                  FROM messages WHERE order_id = $1 AND status IN ('sent', 'delivered', 'read')
                 GROUP BY contact_id),
             chats AS (
                SELECT ca.contact_id,
                       string_agg(DISTINCT ca.channel, ' ' ORDER BY ca.channel) AS chats
                  FROM submissions s JOIN submission_contacts sc ON sc.submission_id = s.id
                  JOIN contact_addresses ca ON ca.contact_id = sc.contact_id AND ca.reachable
                 WHERE s.order_id = $1 GROUP BY ca.contact_id)
        SELECT s.id::text AS submission_id, s.buyer_name AS name, s.payment_reference AS reference,
               s.quantity, s.total_amount AS amount, s.currency, s.status,
               coalesce(a.chats, '') AS chats, coalesce(r.reached, '') AS reached,
               m.id::text AS message_id, coalesce(m.channel, '') AS message_channel,
               coalesce(m.status, '') AS message_status,
               coalesce(m.status_reason, '') AS message_reason,
               CASE WHEN m.status = 'queued' AND m.next_attempt_at > now()
                    THEN m.next_attempt_at END AS message_waits_until
          FROM submissions s
          LEFT JOIN submission_contacts sc ON sc.submission_id = s.id
          LEFT JOIN chats a ON a.contact_id = sc.contact_id
          LEFT JOIN reached r ON r.contact_id = sc.contact_id
          LEFT JOIN last m ON m.contact_id = sc.contact_id
         WHERE s.order_id = $1
         ORDER BY s.created_at, s.id
        """,
        order_id,
    )
    if rows and tuple(rows[0].keys()) != Buyer._fields:
        raise RuntimeError(f"buyers: columns {tuple(rows[0].keys())} != {Buyer._fields}")
    return [Buyer._make(r) for r in rows]


def reach(found: list[Buyer]) -> tuple[dict[str, int], int]:
    """How many buyers a message reached on each chat, and how many were reached nowhere."""
    per_chat: dict[str, int] = {}
    nowhere = 0
    for buyer in found:
        for chat in buyer.reached.split():
            per_chat[chat] = per_chat.get(chat, 0) + 1
        nowhere += not buyer.reached
    return dict(sorted(per_chat.items())), nowhere


async def waiting_proofs(
    pool: Pool, gom_id: UUID | None, page: int
) -> tuple[list[asyncpg.Record], int]:
    """Receipts waiting for review, oldest first, one page; and how many wait in all."""
    rows = await pool.fetch(
        f"""
        SELECT p.id, p.mime, p.content IS NOT NULL AS stored, p.agent_result, p.checked_at,
               p.created_at, s.buyer_name, s.payment_reference, s.total_amount, s.currency,
               o.id AS order_id, o.title, count(*) OVER () AS total
          FROM payment_proofs p
          JOIN submissions s ON s.id = p.submission_id
          JOIN orders o ON o.id = s.order_id
         WHERE p.status = 'pending_review' AND {_owner("o.user_id", 1)}
         ORDER BY p.created_at, p.id
         LIMIT $2 OFFSET $3
        """,
        gom_id,
        RECEIPTS_PAGE,
        max(page - 1, 0) * RECEIPTS_PAGE,
    )
    return list(rows), int(rows[0]["total"]) if rows else 0


async def proof_image(pool: Pool, proof_id: UUID, gom_id: UUID | None) -> asyncpg.Record | None:
    """A receipt's bytes, only if it belongs to one of this GOM's orders."""
    return await pool.fetchrow(
        f"""
        SELECT p.content, p.mime FROM payment_proofs p
          JOIN submissions s ON s.id = p.submission_id
          JOIN orders o ON o.id = s.order_id
         WHERE p.id = $2 AND {_owner("o.user_id", 1)}
        """,
        gom_id,
        proof_id,
    )


async def proof_order(pool: Pool, proof_id: UUID, gom_id: UUID) -> UUID | None:
    """The order a receipt pays for, if it is this GOM's."""
    order_id: UUID | None = await pool.fetchval(
        """
        SELECT o.id FROM payment_proofs p
          JOIN submissions s ON s.id = p.submission_id
          JOIN orders o ON o.id = s.order_id
         WHERE p.id = $1 AND o.user_id = $2
        """,
        proof_id,
        gom_id,
    )
    return order_id


async def hold(pool: Pool, order_id: UUID, submission_id: UUID) -> asyncpg.Record | None:
    """One buyer's submission of the order, for cancelling its hold; call after `order`."""
    return await pool.fetchrow(
        """
        SELECT s.id, s.payment_reference, s.buyer_name, s.quantity, s.status,
               EXISTS (SELECT 1 FROM payment_proofs p WHERE p.submission_id = s.id
                          AND p.status = 'pending_review') AS receipt_waiting
          FROM submissions s WHERE s.id = $2 AND s.order_id = $1
        """,
        order_id,
        submission_id,
    )


async def message(
    pool: Pool, message_id: UUID, gom_id: UUID | None
) -> tuple[asyncpg.Record, list[asyncpg.Record], list[asyncpg.Record]] | None:
    """One message, its delivery attempts and its audit rows, oldest first.

    A GOM sees the messages about their own orders and to themselves; an operator all.
    """
    row = await pool.fetchrow(
        """
        SELECT m.id, m.channel, m.address, m.event, m.status, m.status_reason, m.attempts,
               m.last_error, m.created_at, m.updated_at, m.sent_at, m.delivered_at,
               m.read_at, m.next_attempt_at, c.display_name AS contact_name
          FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id
         WHERE m.id = $2 AND ($1::uuid IS NULL
               OR c.profile_id = $1
               OR EXISTS (SELECT 1 FROM orders o WHERE o.id = m.order_id AND o.user_id = $1))
        """,
        gom_id,
        message_id,
    )
    if row is None:
        return None
    attempts = await pool.fetch(
        """
        SELECT attempt, worker, started_at, finished_at, outcome, error_code, error, retry_after
          FROM delivery_attempts WHERE message_id = $1 ORDER BY started_at, id
        """,
        message_id,
    )
    audit = await pool.fetch(
        "SELECT at, action, channel, result, detail FROM audit_log"
        " WHERE subject = $1 ORDER BY at, id",
        str(message_id),
    )
    return row, list(attempts), list(audit)


def csv_rows(found: list[Buyer]) -> list[dict[str, Any]]:
    """The order's buyers as the CSV has them (the view writes the header and the words)."""
    return [
        {
            "name": b.name,
            "reference": b.reference,
            "quantity": b.quantity,
            "amount": b.amount,
            "currency": b.currency,
            "status": b.status,
            "reached_on": b.reached,
            "last_message": b.message_status,
            "last_message_reason": b.message_reason,
        }
        for b in found
    ]
