"""Order data (GOMFLOW core schema): open orders, a buyer's submissions, creating one."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging.channels import registry
from gomflow_messaging.money import REFERENCE_PREFIX, quantize

if TYPE_CHECKING:
    import asyncpg

    from gomflow_messaging.db import Connection, Pool

_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread

ORDER_COLUMNS = """
    o.id, o.user_id, o.title, o.description, o.price, o.currency, o.deadline, o.slug,
    o.payment_methods, o.is_active, o.min_orders, o.max_orders, o.max_per_buyer,
    coalesce((SELECT sum(s.quantity) FROM submissions s
               WHERE s.order_id = o.id AND s.status NOT IN ('cancelled', 'expired', 'failed')),
             0)::int AS filled
"""


@dataclass(frozen=True)
class Order:
    id: UUID
    gom_id: UUID
    title: str
    description: str
    price: Decimal
    currency: str
    deadline: datetime
    slug: str
    payment_methods: list[str]
    is_active: bool
    min_orders: int
    max_orders: int | None
    filled: int
    #: The GOM's cap on one buyer's items; None: DEFAULT_MAX_PER_BUYER applies.
    max_per_buyer: int | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Order:
        return cls(
            id=row["id"],
            gom_id=row["user_id"],
            title=row["title"],
            description=row["description"] or "",
            price=row["price"],
            currency=row["currency"],
            deadline=row["deadline"],
            slug=row["slug"] or "",
            payment_methods=list(row["payment_methods"] or []),
            is_active=row["is_active"],
            min_orders=row["min_orders"],
            max_orders=row["max_orders"],
            filled=row["filled"],
            max_per_buyer=row["max_per_buyer"],
        )

    @property
    def remaining(self) -> int | None:
        return None if self.max_orders is None else max(self.max_orders - self.filled, 0)

    def buyer_cap(self, default: int) -> int:
        """How many items one buyer may hold here."""
        return self.max_per_buyer or default

    def is_open(self, now: datetime) -> bool:
        return self.is_active and self.deadline > now and self.remaining != 0


async def open_orders(
    pool: Pool, now: datetime, *, offset: int = 0, limit: int = 5
) -> tuple[list[Order], int]:
    rows = await pool.fetch(
        f"""
        SELECT {ORDER_COLUMNS}, count(*) OVER () AS total FROM orders o
         WHERE o.is_active AND o.deadline > $1
         ORDER BY o.deadline, o.id OFFSET $2 LIMIT $3
        """,
        now,
        offset,
        limit,
    )
    total = rows[0]["total"] if rows else 0
    return [Order.from_row(r) for r in rows], int(total)


async def search_open_orders(pool: Pool, now: datetime, text: str, limit: int) -> list[Order]:
    """Open orders whose title or code contains ``text`` (any case), soonest deadline first."""
    pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text.strip()) + "%"
    rows = await pool.fetch(
        f"""
        SELECT {ORDER_COLUMNS} FROM orders o
         WHERE o.is_active AND o.deadline > $1
           AND (o.title ILIKE $2 OR coalesce(o.slug, '') ILIKE $2)
         ORDER BY o.deadline, o.id LIMIT $3
        """,
        now,
        pattern,
        limit,
    )
    return [Order.from_row(r) for r in rows]


async def find_order(pool: Pool, ref: str) -> Order | None:
    """By id, or by slug (what buyers type)."""
    try:
        order_id: UUID | None = UUID(ref)
    except ValueError:
        order_id = None
    row = await pool.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1 OR o.slug = $2 LIMIT 1",
        order_id,
        ref.strip().lower(),
    )
    return Order.from_row(row) if row else None


async def gom_orders(pool: Pool, gom_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""
        SELECT {ORDER_COLUMNS},
               count(s.id) FILTER (WHERE s.status = 'paid') AS paid,
               count(s.id) FILTER (WHERE s.status = 'pending') AS pending,
               coalesce(sum(s.total_amount) FILTER (WHERE s.status = 'paid'), 0) AS collected
          FROM orders o LEFT JOIN submissions s ON s.order_id = o.id
         WHERE o.user_id = $1
         GROUP BY o.id ORDER BY o.is_active DESC, o.deadline
        """,
        gom_id,
    )
    return [
        {
            "order": Order.from_row(r),
            "paid": r["paid"],
            "pending": r["pending"],
            "collected": r["collected"],
        }
        for r in rows
    ]


async def close_order(pool: Pool, order_id: UUID, gom_id: UUID) -> bool:
    status = await pool.execute(
        "UPDATE orders SET is_active = false WHERE id = $1 AND user_id = $2 AND is_active",
        order_id,
        gom_id,
    )
    return status.endswith(" 1")


async def contact_submissions(
    pool: Pool, contact_id: UUID, channel: str, address: str
) -> list[asyncpg.Record]:
    """A buyer's own submissions: linked to their contact, or made from this very chat."""
    return list(
        await pool.fetch(
            """
        SELECT s.id, s.order_id, s.payment_reference, s.quantity, s.total_amount, s.currency,
               s.status, s.created_at, o.title, o.deadline, o.payment_methods
          FROM submissions s JOIN orders o ON o.id = s.order_id
         WHERE s.id IN (SELECT submission_id FROM submission_contacts WHERE contact_id = $1)
            OR (s.buyer_platform = $2 AND s.buyer_platform_id = $3)
         ORDER BY s.created_at DESC LIMIT 20
        """,
            contact_id,
            channel,
            address,
        )
    )


async def possible_duplicates(pool: Pool, submission_id: UUID) -> list[str]:
    """Other live submissions to the same order with the same mobile number, for the GOM.

    Compared on the last 9 digits, so ``0917 555 0101`` on the web matches ``+639175550101``
    from a chat. Only ever shown to the order's GOM, never to a buyer.
    """
    rows = await pool.fetch(
        """
        SELECT other.payment_reference FROM submissions s
          JOIN submissions other ON other.order_id = s.order_id AND other.id <> s.id
         WHERE s.id = $1 AND other.status NOT IN ('cancelled', 'expired', 'failed')
           AND length(regexp_replace(s.buyer_phone, '\\D', '', 'g')) >= 9
           AND right(regexp_replace(other.buyer_phone, '\\D', '', 'g'), 9)
             = right(regexp_replace(s.buyer_phone, '\\D', '', 'g'), 9)
         ORDER BY other.created_at
        """,
        submission_id,
    )
    return [r["payment_reference"] for r in rows]


def new_reference(currency: str) -> str:
    body = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8))
    return f"{REFERENCE_PREFIX.get(currency, 'GF')}-{body}"


class SubmissionRefused(Exception):
    """Why a submission cannot be made; ``reason`` is a key the bot translates."""

    def __init__(self, reason: str, **values: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.values = values


async def taken(conn: Connection, order_id: UUID) -> int:
    """The order's stock held: the quantities of its submissions neither cancelled, expired
    nor failed. Read under the order row's lock (FOR UPDATE) to decide on the last slots."""
    filled: int = await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM submissions WHERE order_id = $1"
        " AND status NOT IN ('cancelled', 'expired', 'failed')",
        order_id,
    )
    return filled


async def create_submission(
    conn: Connection,
    *,
    order_id: UUID,
    contact_id: UUID,
    buyer_name: str,
    buyer_phone: str,
    quantity: int,
    platform: str,
    platform_id: str,
    now: datetime,
    default_max_per_buyer: int,
) -> asyncpg.Record:
    """Checks (open, before deadline, within limits, not twice) and inserts, atomically.

    Within limits: the order's stock (slots held by pending and paid submissions) and the
    per-buyer cap (the order's ``max_per_buyer``, else ``default_max_per_buyer``), so one
    buyer cannot hold a whole order's stock.
    """
    async with conn.transaction():
        # One submission at a time per order, so two buyers cannot both take the last slot.
        row = await conn.fetchrow(
            "SELECT id, price, currency, deadline, is_active, max_orders, max_per_buyer"
            " FROM orders WHERE id = $1 FOR UPDATE",
            order_id,
        )
        if row is None or not row["is_active"]:
            raise SubmissionRefused("closed")
        if row["deadline"] <= now:
            raise SubmissionRefused("deadline_passed")
        if quantity < 1:
            raise SubmissionRefused("quantity_too_low")
        filled = await taken(conn, order_id)
        left = None if row["max_orders"] is None else max(row["max_orders"] - filled, 0)
        # A person has one live submission per order (the duplicate check below), so the
        # cap on it is the cap on them. The tighter bound is the one named.
        cap = row["max_per_buyer"] or default_max_per_buyer
        if quantity > cap and (left is None or cap <= left):
            raise SubmissionRefused("over_buyer_cap", cap=cap)
        if left is not None and quantity > left:
            raise SubmissionRefused("quantity_too_high", left=left)
        # Twice by the same PERSON is refused, saying only their own reference. A typed
        # phone proves nothing (anyone can type anyone's number, and would lock its owner
        # out of the order): a match on it is accepted and flagged to the GOM instead
        # (`possible_duplicates`, in the new-submission alert).
        duplicate = await conn.fetchval(
            """
            SELECT payment_reference FROM submissions s
             WHERE s.order_id = $1 AND s.status NOT IN ('cancelled', 'expired', 'failed')
               AND s.id IN (SELECT submission_id FROM submission_contacts WHERE contact_id = $2)
             LIMIT 1
            """,
            order_id,
            contact_id,
        )
        if duplicate:
            raise SubmissionRefused("duplicate", reference=duplicate)
        total = quantize(row["price"] * quantity)
        for _ in range(5):
            reference = new_reference(row["currency"])
            exists = await conn.fetchval(
                "SELECT 1 FROM submissions WHERE payment_reference = $1", reference
            )
            if not exists:
                break
        submission = await conn.fetchrow(
            """
            INSERT INTO submissions (order_id, buyer_name, buyer_phone, buyer_platform,
                                     buyer_platform_id, quantity, total_amount, currency,
                                     payment_reference)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            RETURNING id, payment_reference, total_amount, currency, quantity
            """,
            order_id,
            buyer_name,
            buyer_phone,
            platform if platform in registry.submission_platforms() else "web",
            platform_id,
            quantity,
            total,
            row["currency"],
            reference,
        )
        assert submission is not None
        await conn.execute(
            "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)",
            submission["id"],
            contact_id,
        )
        return submission


async def add_submission_details(
    conn: Connection, submission_id: UUID, address: str | None, notes: str | None
) -> None:
    """What a chat asks that the core schema has no column for: delivery address, notes."""
    await conn.execute(
        "INSERT INTO submission_details (submission_id, address, notes) VALUES ($1, $2, $3)",
        submission_id,
        address,
        notes,
    )


async def create_order(
    pool: Pool,
    *,
    gom_id: UUID,
    title: str,
    price: Decimal,
    currency: str,
    deadline: datetime,
    slug: str,
    max_orders: int,
    payment_methods: list[str],
    max_per_buyer: int | None = None,
) -> UUID:
    order_id: UUID = await pool.fetchval(
        """
        INSERT INTO orders (user_id, title, price, currency, deadline, slug, max_orders,
                            payment_methods, max_per_buyer)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9) RETURNING id
        """,
        gom_id,
        title,
        price,
        currency,
        deadline,
        slug,
        max_orders,
        payment_methods,
        max_per_buyer,
    )
    return order_id
