"""Alerts to the GOM: new submissions (folded into a digest when they pour in), quota and
deadline thresholds (each once per order), and daily / weekly summaries in the GOM's zone."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from gomflow_messaging import orders as order_data
from gomflow_messaging.money import format_money
from gomflow_messaging.workflows import notify

if TYPE_CHECKING:
    from gomflow_messaging.workflows.ports import Ports

log = logging.getLogger(__name__)

QUOTA_THRESHOLDS = (25, 50, 75, 90, 100)
DEADLINE_HOURS = (6, 2, 1)
DIGEST_WINDOW_SECONDS = 60
DIGEST_JOB = "gom_digest"


async def on_new_submission(ports: Ports, submission_id: UUID, now: datetime) -> None:
    """A buyer joined an order (from any chat or the web): tell the GOM, check the quota."""
    row = await ports.pool.fetchrow(
        """
        SELECT s.buyer_name, s.quantity, s.total_amount, s.currency, s.payment_reference,
               o.id AS order_id, o.title, o.user_id
          FROM submissions s JOIN orders o ON o.id = s.order_id WHERE s.id = $1
        """,
        submission_id,
    )
    if row is None:
        return
    gom_id = row["user_id"]
    window = int(now.timestamp()) // DIGEST_WINDOW_SECONDS
    key = f"gomflow:alerts:{gom_id}:{window}"
    count = int(await ports.queue.redis.incr(key))
    if count == 1:
        await ports.queue.redis.expire(key, DIGEST_WINDOW_SECONDS * 3)
    threshold = ports.settings.gom_alert_digest_threshold
    if count <= threshold:
        data: dict[str, Any] = {
            "buyer_name": row["buyer_name"],
            "order_title": row["title"],
            "quantity": row["quantity"],
            "amount": str(row["total_amount"]),
            "currency": row["currency"],
            "reference": row["payment_reference"],
        }
        duplicates = await order_data.possible_duplicates(ports.pool, submission_id)
        if duplicates:
            data["possible_duplicate_of"] = ", ".join(duplicates)
        await notify.send(
            ports,
            "new_submission",
            data,
            [{"gom_id": str(gom_id)}],
            source="gom_alerts",
            now=now,
        )
    elif count == threshold + 1:
        # The rest of this minute goes into one digest, sent when the minute is over.
        window_end = datetime.fromtimestamp((window + 1) * DIGEST_WINDOW_SECONDS, tz=now.tzinfo)
        await ports.queue.saq.enqueue(
            DIGEST_JOB,
            key=f"digest:{gom_id}:{window}",
            timeout=60,
            retries=3,
            ttl=-1,
            scheduled=int(window_end.timestamp()) + 1,
            gom_id=str(gom_id),
            window=window,
        )
    await check_quota(ports, row["order_id"], now)


async def send_digest(ports: Ports, gom_id: UUID, window: int, now: datetime) -> int:
    """The submissions of one window beyond the first few, as one message."""
    start = datetime.fromtimestamp(window * DIGEST_WINDOW_SECONDS, tz=now.tzinfo)
    end = start + timedelta(seconds=DIGEST_WINDOW_SECONDS)
    rows = await ports.pool.fetch(
        """
        SELECT o.title, count(*) AS n FROM submissions s JOIN orders o ON o.id = s.order_id
         WHERE o.user_id = $1 AND s.created_at >= $2 AND s.created_at < $3
         GROUP BY o.title ORDER BY n DESC
        """,
        gom_id,
        start,
        end,
    )
    total = int(sum(r["n"] for r in rows)) - ports.settings.gom_alert_digest_threshold
    if total <= 0:
        return 0
    orders = ", ".join(f"{r['title']} ({r['n']})" for r in rows)
    await notify.send(
        ports,
        "submissions_digest",
        {"count": total, "orders": orders},
        [{"gom_id": str(gom_id)}],
        source="gom_alerts",
        now=now,
    )
    return total


async def check_quota(ports: Ports, order_id: UUID, now: datetime) -> int | None:
    """Alert the GOM once per threshold crossed; one alert when several are crossed at once."""
    async with notify.transaction(ports) as batch:
        conn = batch.conn
        order = await conn.fetchrow(
            """
            SELECT o.title, o.max_orders, o.user_id,
                   coalesce((SELECT sum(quantity) FROM submissions s WHERE s.order_id = o.id
                              AND s.status NOT IN ('cancelled', 'expired', 'failed')), 0)
                     AS filled
              FROM orders o WHERE o.id = $1
            """,
            order_id,
        )
        if order is None or not order["max_orders"]:
            return None
        percent = int(order["filled"] * 100 // order["max_orders"])
        crossed = [t for t in QUOTA_THRESHOLDS if percent >= t]
        if not crossed:
            return None
        new: list[int] = [
            int(r["threshold"])
            for r in await conn.fetch(
                """
            INSERT INTO order_alerts (order_id, kind, threshold, sent_at)
            SELECT $1, 'quota', t, $3 FROM unnest($2::int[]) AS t
            ON CONFLICT DO NOTHING RETURNING threshold
            """,
                order_id,
                crossed,
                now,
            )
        ]
        if not new:
            return None
        await batch.send(
            "quota_alert",
            {
                "order_title": order["title"],
                "percent": max(new),
                "filled": int(order["filled"]),
                "max_orders": order["max_orders"],
            },
            [{"gom_id": str(order["user_id"])}],
            source="gom_alerts",
            now=now,
        )
    return max(new)


async def deadline_alerts(ports: Ports, at: datetime) -> dict[str, Any]:
    """For each open order closing within 6 h: one alert per threshold (6, 2, 1 h)."""
    orders = await ports.pool.fetch(
        """
        SELECT o.id, o.title, o.deadline, o.user_id,
               count(s.id) FILTER (WHERE s.status = 'paid') AS paid,
               count(s.id) FILTER (WHERE s.status = 'pending') AS pending
          FROM orders o LEFT JOIN submissions s ON s.order_id = o.id
         WHERE o.is_active AND o.deadline > $1 AND o.deadline <= $2
         GROUP BY o.id
        """,
        at,
        at + timedelta(hours=max(DEADLINE_HOURS)),
    )
    sent = 0
    for order in orders:
        crossed = [h for h in DEADLINE_HOURS if order["deadline"] - at <= timedelta(hours=h)]
        async with notify.transaction(ports) as batch:
            conn = batch.conn
            new = [
                r["threshold"]
                for r in await conn.fetch(
                    """
                INSERT INTO order_alerts (order_id, kind, threshold, sent_at)
                SELECT $1, 'deadline', h, $3 FROM unnest($2::int[]) AS h
                ON CONFLICT DO NOTHING RETURNING threshold
                """,
                    order["id"],
                    crossed,
                    at,
                )
            ]
            if not new:
                continue
            await batch.send(
                "deadline_alert",
                {
                    "order_title": order["title"],
                    "deadline": order["deadline"].isoformat(),
                    "hours": hours_under(order["deadline"] - at),
                    "paid": order["paid"],
                    "pending": order["pending"],
                },
                [{"gom_id": str(order["user_id"])}],
                source="gom_alerts",
                now=at,
            )
            sent += 1
    return {"orders": len(orders), "alerts": sent}


def hours_under(left: timedelta) -> int:
    """The whole hours an order closes within, rounded up: 5 with 4 h 59 min left (the alert
    says "under 5 hours"; never "6 hours", the threshold it crossed)."""
    return max(1, -(-left // timedelta(hours=1)))


async def summaries(ports: Ports, at: datetime) -> dict[str, Any]:
    """Daily (and on the weekly day, weekly) summaries, at SUMMARY_HOUR in each GOM's zone."""
    settings = ports.settings
    goms = await ports.pool.fetch(
        "SELECT p.id, p.timezone FROM profiles p"
        " WHERE EXISTS (SELECT 1 FROM contacts c WHERE c.profile_id = p.id)"
    )
    sent = 0
    for gom in goms:
        try:
            local = at.astimezone(ZoneInfo(gom["timezone"] or "Asia/Manila"))
        except (KeyError, ValueError):
            local = at.astimezone(ZoneInfo("Asia/Manila"))
        if local.hour != settings.summary_hour:
            continue
        # Periods end on the hour the summary is due, so consecutive ones tile the GOM's
        # time without gap or overlap, however late in that hour the job runs.
        until = local.replace(minute=0, second=0, microsecond=0)
        periods = [("daily", local.date().isoformat(), timedelta(days=1))]
        if local.weekday() == settings.summary_weekday:
            year, week, _ = local.isocalendar()
            periods.append(("weekly", f"{year}-W{week:02d}", timedelta(days=7)))
        for period, period_key, span in periods:
            claimed = await ports.pool.fetchval(
                """
                INSERT INTO gom_summaries (profile_id, period, period_key, sent_at)
                VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING period
                """,
                gom["id"],
                period,
                period_key,
                at,
            )
            if claimed is None:
                continue
            since = until - span
            data = await _summary_data(ports, gom["id"], since, until)
            await notify.send(
                ports,
                "gom_summary",
                {
                    "period": period,
                    "since": since.isoformat(),
                    "until": until.isoformat(),
                    **data,
                },
                [{"gom_id": str(gom["id"])}],
                source="summaries",
                now=at,
            )
            sent += 1
    return {"goms": len(goms), "summaries": sent}


async def _summary_data(
    ports: Ports, gom_id: UUID, since: datetime, until: datetime
) -> dict[str, Any]:
    """What happened in (since, until]: new submissions, and payments with their amounts;
    and where each open order stands at the end (buyers, paid, waiting for payment).

    The core schema has no paid_at, so a payment's moment is the decision that approved its
    proof (payment_proofs.decided_at, by the GOM or the Smart Agent): one per submission, as
    approving supersedes the other receipts. A submission marked paid elsewhere (the core
    API, the payment service) has no such moment here and is not counted in any period.
    """
    rows = await ports.pool.fetch(
        """
        WITH paid AS (
            SELECT DISTINCT p.submission_id
              FROM payment_proofs p JOIN submissions s ON s.id = p.submission_id
              JOIN orders o ON o.id = s.order_id
             WHERE o.user_id = $1 AND p.status = 'approved'
               AND p.decided_at > $2 AND p.decided_at <= $3 AND s.status = 'paid'
        )
        SELECT o.title, o.currency, o.deadline, o.max_orders, o.is_active,
               count(s.id) FILTER (WHERE s.created_at > $2 AND s.created_at <= $3) AS new,
               count(paid.submission_id) AS paid,
               coalesce(sum(s.total_amount) FILTER (WHERE paid.submission_id IS NOT NULL), 0)
                   AS collected,
               coalesce(sum(s.quantity) FILTER (WHERE s.status NOT IN
                        ('cancelled', 'expired', 'failed')), 0) AS filled,
               count(s.id) FILTER (WHERE s.status IN ('pending', 'paid')) AS buyers,
               count(s.id) FILTER (WHERE s.status = 'paid') AS paid_now,
               count(s.id) FILTER (WHERE s.status = 'pending') AS pending_now
          FROM orders o LEFT JOIN submissions s ON s.order_id = o.id
          LEFT JOIN paid ON paid.submission_id = s.id
         WHERE o.user_id = $1
         GROUP BY o.id ORDER BY o.deadline
        """,
        gom_id,
        since,
        until,
    )
    collected: dict[str, Decimal] = {}
    attention = []
    standing = []
    for r in rows:
        if r["is_active"] and r["deadline"] > until:
            standing.append(
                {
                    "title": r["title"],
                    "buyers": r["buyers"],
                    "paid": r["paid_now"],
                    "pending": r["pending_now"],
                }
            )
        if r["paid"]:
            collected[r["currency"]] = collected.get(r["currency"], Decimal(0)) + r["collected"]
        if not (r["is_active"] or r["deadline"] > since):
            continue
        near_deadline = r["deadline"] > until and r["deadline"] - until <= timedelta(hours=48)
        near_quota = bool(r["max_orders"]) and r["filled"] * 100 >= 90 * r["max_orders"]
        if near_deadline or near_quota:
            attention.append(r["title"])
    return {
        "new_submissions": sum(r["new"] for r in rows),
        "payments": sum(r["paid"] for r in rows),
        "collected": ", ".join(format_money(v, c) for c, v in sorted(collected.items())) or "-",
        "attention": ", ".join(attention),
        "open_orders": standing,
    }
