"""Payment reminders: unpaid submissions, at configured hours before the order's deadline.

Run by the worker's cron (every 5 minutes) or by `gomflow-messaging run-job
payment-reminders --at <moment>`. Each (submission, offset) is reminded at most once, even
with two workers and a restart halfway: the `reminders_sent` row and the message are written
in one transaction, and the row's primary key lets only one writer through. When several
offsets are due at once (the job did not run for a while), only the most urgent goes out and
the earlier ones are marked superseded. At most `REMINDER_MAX_PER_DAY` a day per submission;
never after payment or cancellation (only `pending` submissions are looked at) and never to
a buyer who sent STOP or turned reminders off (the message is recorded as skipped).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gomflow_messaging.workflows import notify

if TYPE_CHECKING:
    from gomflow_messaging.workflows.ports import Ports

log = logging.getLogger(__name__)


async def run(ports: Ports, at: datetime) -> dict[str, Any]:
    settings = ports.settings
    offsets = settings.reminder_offsets
    horizon = at + timedelta(hours=max(offsets))
    rows = await ports.pool.fetch(
        """
        SELECT s.id, o.deadline FROM submissions s JOIN orders o ON o.id = s.order_id
         WHERE s.status = 'pending' AND o.is_active AND o.deadline > $1 AND o.deadline <= $2
         ORDER BY o.deadline, s.id
        """,
        at,
        horizon,
    )
    sent = skipped = capped = 0
    for row in rows:
        due = [h for h in offsets if at >= row["deadline"] - timedelta(hours=h)]
        if not due:
            continue
        outcome = await _remind(ports, row["id"], min(due), due, at)
        sent += outcome == "sent"
        skipped += outcome == "skipped"
        capped += outcome == "capped"
    return {"checked": len(rows), "sent": sent, "skipped": skipped, "capped": capped}


async def _remind(
    ports: Ports, submission_id: Any, offset: int, due: list[int], at: datetime
) -> str:
    settings = ports.settings
    async with notify.transaction(ports) as batch:
        conn = batch.conn
        claimed = await conn.fetchval(
            """
            INSERT INTO reminders_sent (submission_id, offset_hours, sent_at, outcome)
            VALUES ($1, $2, $3, 'sent') ON CONFLICT DO NOTHING RETURNING offset_hours
            """,
            submission_id,
            offset,
            at,
        )
        if claimed is None:
            return "done"  # this offset was handled already (another worker, or earlier)
        await conn.executemany(
            "INSERT INTO reminders_sent (submission_id, offset_hours, sent_at, outcome)"
            " VALUES ($1, $2, $3, 'superseded') ON CONFLICT DO NOTHING",
            [(submission_id, h, at) for h in due if h != offset],
        )
        # Rows lock in order, so two workers cannot both pass the daily cap.
        await conn.execute("SELECT 1 FROM submissions WHERE id = $1 FOR UPDATE", submission_id)
        today = await conn.fetchval(
            "SELECT count(*) FROM reminders_sent WHERE submission_id = $1"
            " AND outcome = 'sent' AND sent_at > $2",
            submission_id,
            at - timedelta(days=1),
        )
        if today > settings.reminder_max_per_day:
            await conn.execute(
                "UPDATE reminders_sent SET outcome = 'capped'"
                " WHERE submission_id = $1 AND offset_hours = $2",
                submission_id,
                offset,
            )
            return "capped"
        result = await batch.send(
            "payment_reminder",
            {},
            [{"submission_id": str(submission_id)}],
            source="reminders",
            now=at,
        )
        [message] = result.body["messages"]
        await conn.execute(
            "UPDATE reminders_sent SET message_id = $3"
            " WHERE submission_id = $1 AND offset_hours = $2",
            submission_id,
            offset,
            message["id"],
        )
        if message["status"] != "queued":
            return "skipped"
        await conn.execute(
            "UPDATE submissions SET last_reminder_sent = $2,"
            " reminder_count = reminder_count + 1 WHERE id = $1",
            submission_id,
            at,
        )
    return "sent"


async def remind_now(ports: Ports, order_id: Any, at: datetime) -> int:
    """A GOM's "send reminders now": every unpaid buyer of the order, honouring STOP and
    preferences like any reminder. Returns how many reminders were queued."""
    ids = [
        str(r["id"])
        for r in await ports.pool.fetch(
            "SELECT id FROM submissions WHERE order_id = $1 AND status = 'pending' ORDER BY id",
            order_id,
        )
    ]
    queued: list[str] = []
    for start in range(0, len(ids), 1000):  # notify takes at most 1000 recipients a call
        result = await notify.send(
            ports,
            "payment_reminder",
            {},
            [{"submission_id": i} for i in ids[start : start + 1000]],
            source="gom_remind_now",
            now=at,
        )
        queued += [
            m["submission_id"]
            for m in result.body["messages"]
            if m["status"] == "queued" and "submission_id" in m
        ]
    await ports.pool.execute(
        "UPDATE submissions SET last_reminder_sent = $2, reminder_count = reminder_count + 1"
        " WHERE id = ANY($1::uuid[])",
        queued,
        at,
    )
    return len(queued)
