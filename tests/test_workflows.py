"""Scheduled workflows with an injected clock: reminders, GOM alerts, digests, summaries."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gomflow_messaging.bootstrap import Services, build_services
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows import gom_alerts, reminders
from tests.helpers import SECRET

D = datetime(2027, 3, 14, 12, 0, tzinfo=UTC)  # an order's deadline (20:00 in Manila)


@pytest.fixture
async def services(make_settings: Any) -> AsyncIterator[Services]:
    svc = await build_services(
        make_settings(reminder_offsets_hours="48,24,12,6,2", gom_alert_digest_threshold=2)
    )
    yield svc
    await svc.close()


async def make_gom(conn: asyncpg.Connection, tz: str = "Asia/Manila") -> tuple[uuid.UUID, str]:
    gom_id = await conn.fetchval(
        "INSERT INTO profiles (name, timezone) VALUES ('GOM', $1) RETURNING id", tz
    )
    address = f"gom-{uuid.uuid4().hex[:8]}"
    contact = await conn.fetchval(
        "INSERT INTO contacts (kind, profile_id, timezone) VALUES ('gom', $1, $2) RETURNING id",
        gom_id,
        tz,
    )
    await conn.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address) VALUES ($1, 'sandbox', $2)",
        contact,
        address,
    )
    return gom_id, address


async def make_order(
    conn: asyncpg.Connection,
    gom_id: uuid.UUID,
    deadline: datetime = D,
    max_orders: int | None = 100,
) -> uuid.UUID:
    order_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline, max_orders)"
        " VALUES ($1, 'TWICE Lightstick', 1500, 'PHP', $2, $3) RETURNING id",
        gom_id,
        deadline,
        max_orders,
    )
    return order_id


async def make_buyer(
    conn: asyncpg.Connection, order_id: uuid.UUID, quantity: int = 1, status: str = "pending"
) -> tuple[uuid.UUID, str]:
    address = f"buyer-{uuid.uuid4().hex[:8]}"
    contact = await conn.fetchval("INSERT INTO contacts (display_name) VALUES ('B') RETURNING id")
    await conn.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address) VALUES ($1, 'sandbox', $2)",
        contact,
        address,
    )
    submission_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO submissions (order_id, buyer_name, quantity, total_amount, currency,
                                 payment_reference, status)
        VALUES ($1, 'Bea', $2, 1500 * $2, 'PHP', $3, $4) RETURNING id
        """,
        order_id,
        quantity,
        f"PH-{uuid.uuid4().hex[:8].upper()}",
        status,
    )
    await conn.execute("INSERT INTO submission_contacts VALUES ($1, $2)", submission_id, contact)
    return submission_id, address


async def messages_to(
    conn: asyncpg.Connection, address: str, event: str | None = None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT event, status, status_reason, body FROM messages WHERE address = $1"
            " AND ($2::text IS NULL OR event = $2) ORDER BY created_at",
            address,
            event,
        )
    )


async def test_reminders_at_each_offset_at_most_two_a_day(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, _ = await make_gom(conn)
    order_id = await make_order(conn, gom_id)
    submission_id, address = await make_buyer(conn, order_id)
    sent_at = []
    for hours_before in (49, 47, 46, 23, 11, 5, 1):
        at = D - timedelta(hours=hours_before)
        before = len(await messages_to(conn, address))
        await reminders.run(services, at)
        if len(await messages_to(conn, address)) > before:
            sent_at.append(hours_before)
    # 48 h, 24 h, 12 h; then the 6 h and 2 h reminders would make three in a day.
    assert sent_at == [47, 23, 11]
    rows = await conn.fetch(
        "SELECT offset_hours, outcome FROM reminders_sent"
        " WHERE submission_id = $1 ORDER BY offset_hours DESC",
        submission_id,
    )
    assert [(r["offset_hours"], r["outcome"]) for r in rows] == [
        (48, "sent"),
        (24, "sent"),
        (12, "sent"),
        (6, "capped"),
        (2, "capped"),
    ]
    submission = await conn.fetchrow("SELECT * FROM submissions WHERE id = $1", submission_id)
    assert submission["reminder_count"] == 3
    assert submission["last_reminder_sent"] == D - timedelta(hours=11)
    [first, *_] = await messages_to(conn, address)
    assert first["event"] == "payment_reminder" and "₱1,500.00" in first["body"]["text"]


async def test_late_job_sends_only_the_most_urgent_due_reminder(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, _ = await make_gom(conn)
    submission_id, address = await make_buyer(conn, await make_order(conn, gom_id))
    await reminders.run(services, D - timedelta(hours=5))  # 48, 24, 12 and 6 are all due
    assert len(await messages_to(conn, address)) == 1
    outcomes = dict(
        await conn.fetch(
            "SELECT offset_hours, outcome FROM reminders_sent WHERE submission_id = $1",
            submission_id,
        )
    )
    assert outcomes == {48: "superseded", 24: "superseded", 12: "superseded", 6: "sent"}


async def test_no_reminder_after_payment_or_cancellation_or_stop(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, _ = await make_gom(conn)
    order_id = await make_order(conn, gom_id)
    _, paid = await make_buyer(conn, order_id, status="paid")
    _, cancelled = await make_buyer(conn, order_id, status="cancelled")
    stopped_id, stopped = await make_buyer(conn, order_id)
    await conn.execute(
        "UPDATE contacts SET opted_out_at = now() WHERE id = (SELECT contact_id FROM"
        " submission_contacts WHERE submission_id = $1)",
        stopped_id,
    )
    await reminders.run(services, D - timedelta(hours=23))
    assert await messages_to(conn, paid) == [] and await messages_to(conn, cancelled) == []
    [skipped] = await messages_to(conn, stopped)
    assert (skipped["status"], skipped["status_reason"]) == ("skipped", "opted_out")
    assert (
        await conn.fetchval("SELECT reminder_count FROM submissions WHERE id = $1", stopped_id) == 0
    )


async def test_two_workers_remind_once(
    services: Services, make_settings: Any, conn: asyncpg.Connection
) -> None:
    other = await build_services(make_settings(reminder_offsets_hours="48,24,12,6,2"))
    try:
        gom_id, _ = await make_gom(conn)
        order_id = await make_order(conn, gom_id)
        buyers = [await make_buyer(conn, order_id) for _ in range(10)]
        at = D - timedelta(hours=20)
        await asyncio.gather(
            reminders.run(services, at), reminders.run(other, at), reminders.run(services, at)
        )
    finally:
        await other.close()
    for _, address in buyers:
        assert len(await messages_to(conn, address, "payment_reminder")) == 1


async def test_new_submissions_fold_into_a_digest(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, gom_address = await make_gom(conn)
    order_id = await make_order(conn, gom_id, max_orders=None)
    now = datetime.now(UTC)
    for _ in range(5):
        submission_id, _ = await make_buyer(conn, order_id)
        await gom_alerts.on_new_submission(services, submission_id, now)
    alerts = await messages_to(conn, gom_address)
    assert [m["event"] for m in alerts] == ["new_submission", "new_submission"]
    window = int(now.timestamp()) // gom_alerts.DIGEST_WINDOW_SECONDS
    job = await services.queue.saq.job(f"digest:{gom_id}:{window}")
    assert job is not None and job.function == gom_alerts.DIGEST_JOB
    assert await gom_alerts.send_digest(services, gom_id, window, now) == 3
    digest = (await messages_to(conn, gom_address))[-1]
    assert digest["event"] == "submissions_digest" and "3 new submissions" in digest["body"]["text"]


async def test_quota_thresholds_each_once_even_when_crossed_together(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, gom_address = await make_gom(conn)
    order_id = await make_order(conn, gom_id, max_orders=8)
    now = datetime.now(UTC)
    await make_buyer(conn, order_id, quantity=5)  # 62 %: crosses 25 and 50 at once
    assert await gom_alerts.check_quota(services, order_id, now) == 50
    assert await gom_alerts.check_quota(services, order_id, now) is None
    await make_buyer(conn, order_id, quantity=3)  # 100 %: crosses 75, 90 and 100
    assert await gom_alerts.check_quota(services, order_id, now) == 100
    alerts = await messages_to(conn, gom_address, "quota_alert")
    assert ["50%" in a["body"]["text"] for a in alerts] == [True, False]
    assert "100%" in alerts[1]["body"]["text"]
    recorded = await conn.fetch(
        "SELECT threshold FROM order_alerts WHERE order_id = $1"
        " AND kind = 'quota' ORDER BY threshold",
        order_id,
    )
    assert [r["threshold"] for r in recorded] == [25, 50, 75, 90, 100]


async def test_deadline_alerts_6_2_1_hours_each_once(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, gom_address = await make_gom(conn)
    await make_order(conn, gom_id, deadline=D)
    for hours_before in (7, 5.5, 5, 1.5, 0.5, 0.4):
        await gom_alerts.deadline_alerts(services, D - timedelta(hours=hours_before))
    alerts = await messages_to(conn, gom_address, "deadline_alert")
    assert [a["body"]["text"].split(" closes in under ")[1].split(" h")[0] for a in alerts] == [
        "6",
        "2",
        "1",
    ]


async def test_a_deadline_alert_never_gives_more_time_than_is_left(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, gom_address = await make_gom(conn)
    await make_order(conn, gom_id, deadline=D)
    # The cron found it 4 h 59 min before the deadline: past the 6-hour mark, not the 2-hour.
    await gom_alerts.deadline_alerts(services, D - timedelta(hours=4, minutes=59))
    [alert] = await messages_to(conn, gom_address, "deadline_alert")
    text = alert["body"]["text"]
    assert "TWICE Lightstick closes in under 5 hours (" in text, text
    assert "6 hours" not in text


async def test_a_quiet_day_still_shows_the_buyers_each_open_order_has(
    services: Services, conn: asyncpg.Connection
) -> None:
    """The README's example: a summary for a day without news about orders that have buyers."""
    gom_id, gom_address = await make_gom(conn, tz="Asia/Manila")
    monday_8pm = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)
    order_id = await make_order(conn, gom_id, deadline=monday_8pm + timedelta(days=10))
    await make_buyer(conn, order_id, status="paid")
    await make_buyer(conn, order_id)
    await make_buyer(conn, order_id)
    await make_buyer(conn, order_id, status="cancelled")
    # Joined (and paid elsewhere) well before the day the summary covers.
    await conn.execute(
        "UPDATE submissions SET created_at = $2 WHERE order_id = $1",
        order_id,
        monday_8pm - timedelta(days=3),
    )
    await gom_alerts.summaries(services, monday_8pm)
    [summary] = await messages_to(conn, gom_address, "gom_summary")
    text = summary["body"]["text"]
    assert "New submissions: 0" in text and "Payments: 0" in text
    assert "Collected: -" not in text
    assert "Open orders now:\nTWICE Lightstick: 3 buyers, 1 paid, 2 waiting for payment" in text


async def test_summaries_in_the_gom_time_zone(services: Services, conn: asyncpg.Connection) -> None:
    gom_id, gom_address = await make_gom(conn, tz="Asia/Kuala_Lumpur")
    order_id = await make_order(conn, gom_id, deadline=datetime.now(UTC) + timedelta(days=30))
    sunday_8pm_kl = datetime(2027, 3, 14, 12, 0, tzinfo=UTC)
    paid, _ = await make_buyer(conn, order_id, status="paid", quantity=2)
    await approve_proof(conn, paid, sunday_8pm_kl - timedelta(hours=3))
    await gom_alerts.summaries(services, sunday_8pm_kl - timedelta(hours=1))
    assert await messages_to(conn, gom_address) == []
    await gom_alerts.summaries(services, sunday_8pm_kl)
    await gom_alerts.summaries(services, sunday_8pm_kl + timedelta(minutes=10))
    texts = [m["body"]["text"] for m in await messages_to(conn, gom_address, "gom_summary")]
    assert len(texts) == 2
    assert texts[0].startswith("Daily summary") and texts[1].startswith("Weekly summary")
    assert "₱3,000.00" in texts[0]


async def approve_proof(conn: asyncpg.Connection, submission_id: uuid.UUID, at: datetime) -> None:
    """A receipt for the submission, approved at ``at`` (as the GOM's /payments would)."""
    await conn.execute(
        """
        INSERT INTO payment_proofs (submission_id, channel, mime, size, sha256, status,
                                    decided_by, decided_at, created_at)
        VALUES ($1, 'sandbox', 'image/png', 1, 'x', 'approved', 'gom:test', $2, $2)
        """,
        submission_id,
        at,
    )


async def test_summary_counts_only_its_own_period(
    services: Services, conn: asyncpg.Connection
) -> None:
    gom_id, gom_address = await make_gom(conn, tz="Asia/Manila")
    order_id = await make_order(conn, gom_id, deadline=datetime.now(UTC) + timedelta(days=30))
    monday_8pm = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)  # 20:00 in Manila, not the weekly day
    old_paid, _ = await make_buyer(conn, order_id, status="paid", quantity=3)
    today_paid, _ = await make_buyer(conn, order_id, status="paid", quantity=1)
    await make_buyer(conn, order_id)  # unpaid
    # Created and paid the day before: neither new nor a payment of this day.
    await conn.execute(
        "UPDATE submissions SET created_at = $2 WHERE order_id = $1",
        order_id,
        monday_8pm - timedelta(days=2),
    )
    await approve_proof(conn, old_paid, monday_8pm - timedelta(days=1, hours=2))
    # Made today, paid today (a quarter of an hour before the period ends).
    await conn.execute(
        "UPDATE submissions SET created_at = $2 WHERE id = $1",
        today_paid,
        monday_8pm - timedelta(hours=5),
    )
    await approve_proof(conn, today_paid, monday_8pm - timedelta(minutes=15))
    # The job runs late in the hour: the period still ends at 20:00.
    await gom_alerts.summaries(services, monday_8pm + timedelta(minutes=40))
    [summary] = await messages_to(conn, gom_address, "gom_summary")
    text = summary["body"]["text"]
    assert "New submissions: 1" in text
    assert "Payments: 1" in text
    assert "Collected: ₱1,500.00" in text
    zone = "PH time"
    assert f"From 14 Mar 2027, 8:00 PM {zone} to 15 Mar 2027, 8:00 PM {zone}" in text


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment of a `gomflow-messaging` command on this test run's databases."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        SERVICE_SECRET=SECRET,
        QUEUE_NAME=settings.queue_name,
        ENVIRONMENT="test",
    )
    return env


def test_run_job_from_the_command_line(settings: Settings) -> None:
    env = cli_env(settings)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gomflow_messaging",
            "run-job",
            "payment-reminders",
            "--at",
            "2027-03-13T12:00:00+08:00",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["job"] == "payment-reminders" and "sent" in report["result"]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "gomflow_messaging",
            "run-job",
            "payment-reminders",
            "--at",
            "tomorrow",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "ISO-8601" in bad.stderr


async def test_purge_expired_forgets_keys_after_a_day_and_update_ids_after_a_week(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    """The hourly purge-expired job (`run-job purge-expired`), at its edges."""
    run = uuid.uuid4().hex[:8]
    at = await conn.fetchval("SELECT now()")
    for key, age in (("old", timedelta(hours=25)), ("new", timedelta(hours=23))):
        await conn.execute(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response,"
            " created_at) VALUES ($1, $2, 'h', 202, '{}', $3)",
            f"purge-{run}",
            key,
            at - age,
        )
    for update, age in (("old", timedelta(days=8)), ("new", timedelta(days=6))):
        await conn.execute(
            "INSERT INTO inbound_updates (platform, update_id, received_at) VALUES ($1, $2, $3)",
            f"purge-{run}",
            update,
            at - age,
        )
    env = cli_env(settings)
    stamp = at.isoformat()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gomflow_messaging", "run-job", "purge-expired", "--at", stamp],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["result"]
    assert report["idempotency_keys"] >= 1 and report["inbound_updates"] >= 1
    kept = await conn.fetch("SELECT key FROM idempotency_keys WHERE scope = $1", f"purge-{run}")
    assert [r["key"] for r in kept] == ["new"]
    kept = await conn.fetch(
        "SELECT update_id FROM inbound_updates WHERE platform = $1", f"purge-{run}"
    )
    assert [r["update_id"] for r in kept] == ["new"]
