"""The event catalogue and routing: every template in every language, per-buyer fields,
preferences, quiet hours and falling back to the next channel."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from gomflow_messaging.contacts import Address, Recipient
from gomflow_messaging.i18n import LOCALES
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows import events
from gomflow_messaging.workflows.notify import quiet_until
from tests.conftest import unique_text
from tests.helpers import AUTH, eventually, queued_jobs, running_app

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # 12:00 in Manila
SAMPLE: dict[str, Any] = {
    "reference": "PH-7KQ2M9XA",
    "order_title": "SEVENTEEN 'FML' Album",
    "quantity": 2,
    "amount": "2500.00",
    "currency": "PHP",
    "deadline": "2026-12-01T20:00:00+08:00",
    "expires_at": "2026-12-02T20:00:00+08:00",
    "reason": "the amount does not match",
    "status": "shipped",
    "tracking_number": "LBC123",
    "buyer_name": "Ana Cruz",
    "count": 12,
    "orders": "SEVENTEEN 'FML' Album",
    "percent": 75,
    "filled": 30,
    "max_orders": 40,
    "hours": 6,
    "paid": 20,
    "pending": 10,
    "period": "daily",
    "new_submissions": 5,
    "payments": 3,
    "collected": "₱7,500.00",
    "text": "Hello",
    "note": "See you!",
}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("event", sorted(events.EVENTS))
def test_every_event_renders_in_every_language(event: str, locale: str) -> None:
    ctx = events.RenderContext(locale=locale, timezone="Asia/Manila", now=NOW)
    body = events.render(event, SAMPLE, ctx)
    assert body["text"].strip()
    assert not re.search(r"\{[a-z_]+\}", body["text"]), body["text"]  # no unfilled placeholder
    assert body["locale"] == locale and body["event"] == event
    for row in body["buttons"]:
        for button in row:
            assert len(button["action"].encode()) <= 64


@pytest.mark.parametrize("event", sorted(events.EVENTS))
def test_a_missing_field_is_named(event: str) -> None:
    spec = events.EVENTS[event]
    required = [f for f in spec.fields if f.required]
    if not required:  # nothing can be missing: it renders from no data at all
        body = events.render(event, {}, events.RenderContext(now=NOW))
        assert body["text"].strip() and not re.search(r"\{[a-z_]+\}", body["text"])
    for f in required:
        data = {k: v for k, v in SAMPLE.items() if k != f.name}
        with pytest.raises(events.MissingData) as info:
            events.render(event, data, events.RenderContext(now=NOW))
        assert info.value.field == f"data.{f.name}"


def test_money_and_dates_are_formatted_per_currency_and_zone() -> None:
    ctx = events.RenderContext(locale="en", timezone="Asia/Kuala_Lumpur", now=NOW)
    body = events.render("payment_reminder", {**SAMPLE, "amount": "85", "currency": "MYR"}, ctx)
    assert "RM 85.00" in body["text"] and "₱" not in body["text"]
    assert "1 Dec 2026, 8:00 PM Malaysia time" in body["text"]  # every time with its zone
    assert body["extra"]["color"] == "warning"  # under 24 h before the deadline
    far = events.RenderContext(now=NOW - timedelta(days=3))
    assert events.render("payment_reminder", SAMPLE, far)["extra"]["color"] == "info"
    assert (
        events.render("payment_reminder", SAMPLE, ctx)["template_variables"]["reference"]
        == "PH-7KQ2M9XA"
    )


def test_shipped_needs_a_tracking_number() -> None:
    data = {**SAMPLE}
    del data["tracking_number"]
    with pytest.raises(events.MissingData) as info:
        events.render("order_status_update", data, events.RenderContext(now=NOW))
    assert info.value.field == "data.tracking_number"


def test_quiet_hours_wrap_past_midnight() -> None:
    r = Recipient(
        addresses=[Address("sandbox", "x")],
        timezone="Asia/Manila",
        quiet_start=time(22, 0),
        quiet_end=time(8, 0),
    )
    at = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)  # 23:30 Manila
    assert quiet_until(r, at) == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 08:00 Manila
    assert quiet_until(r, datetime(2026, 12, 1, 4, 0, tzinfo=UTC)) is None  # noon


async def test_order_fan_out_gives_each_buyer_their_own_reference(
    settings: Settings, demo: dict[str, Any], conn: asyncpg.Connection
) -> None:
    async with running_app(settings) as client:
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={"event": "payment_reminder", "recipients": [{"order_id": demo["orders"]["PHP"]}]},
        )
        assert response.status_code == 202, response.text
        messages = response.json()["messages"]
        bodies = {
            m["submission_id"]: await conn.fetchval(
                "SELECT body FROM messages WHERE id = $1", uuid.UUID(m["id"])
            )
            for m in messages
        }
    # Found by submission: a buyer who linked a chat may be reached on that chat instead.
    andrea, miguel = demo["submissions"][0], demo["submissions"][1]
    assert "PH-DEMO0001" in bodies[andrea]["text"]
    assert "₱2,500.00" in bodies[andrea]["text"]
    assert "PH-DEMO0002" in bodies[miguel]["text"]
    assert bodies[andrea]["locale"] == "fil"  # Andrea chose Filipino


async def test_event_data_missing_is_422_naming_the_field(settings: Settings) -> None:
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={
                "event": "payment_reminder",
                "recipients": [{"channel": "sandbox", "address": "no-submission"}],
            },
        )
        assert response.status_code == 422
        assert "data.reference" in response.json()["error"]["fields"]
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={
                "event": "order_status_update",
                "data": {"status": "lost"},
                "recipients": [{"channel": "sandbox", "address": "x"}],
            },
        )
        assert response.status_code == 422
        assert "data.status" in response.json()["error"]["fields"]


async def _contact(conn: asyncpg.Connection, *addresses: str, **columns: Any) -> uuid.UUID:
    contact_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO contacts (display_name, quiet_start, quiet_end, timezone)"
        " VALUES ('t', $1, $2, 'Asia/Manila') RETURNING id",
        columns.get("quiet_start"),
        columns.get("quiet_end"),
    )
    for priority, address in enumerate(addresses):
        await conn.execute(
            "INSERT INTO contact_addresses (contact_id, channel, address, priority)"
            " VALUES ($1, 'sandbox', $2, $3)",
            contact_id,
            address,
            priority,
        )
    return contact_id


async def _submission_for(conn: asyncpg.Connection, contact_id: uuid.UUID, demo: Any) -> str:
    # An order of its own, so other tests' fan-outs to the demo orders stay as they were.
    order_id = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline) VALUES"
        " ($1, 'Test order', 1250, 'PHP', now() + interval '3 days') RETURNING id",
        uuid.UUID(demo["gom_id"]),
    )
    submission_id = await conn.fetchval(
        """
        INSERT INTO submissions (order_id, buyer_name, quantity, total_amount, currency,
                                 payment_reference, buyer_platform)
        VALUES ($1, 'Test Buyer', 1, 1250, 'PHP', $2, 'web') RETURNING id
        """,
        order_id,
        f"PH-T{uuid.uuid4().hex[:7].upper()}",
    )
    await conn.execute("INSERT INTO submission_contacts VALUES ($1, $2)", submission_id, contact_id)
    return str(submission_id)


async def test_permanent_failure_falls_back_to_the_next_address(
    settings: Settings, demo: dict[str, Any], conn: asyncpg.Connection
) -> None:
    blocked, second = f"fail:{unique_text()}", unique_text("second")
    contact_id = await _contact(conn, blocked, second)
    submission_id = await _submission_for(conn, contact_id, demo)
    async with running_app(settings) as client:
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={
                "event": "order_status_update",
                "data": {"status": "arrived"},
                "recipients": [{"submission_id": submission_id}],
            },
        )
        [entry] = response.json()["messages"]
        assert entry["address"] == blocked

        async def sent() -> Any:
            body = (await client.get(f"/api/messages/{entry['id']}", headers=AUTH)).json()
            return body if body["status"] == "sent" else None

        status = await eventually(sent)
    assert status["address"] == second
    assert [a["outcome"] for a in status["attempt_log"]] == ["permanent", "sent"]
    assert (
        await conn.fetchval("SELECT reachable FROM contact_addresses WHERE address = $1", blocked)
        is False
    )


async def test_preferences_and_quiet_hours(
    settings: Settings, demo: dict[str, Any], conn: asyncpg.Connection
) -> None:
    # Quiet all day long except one minute: a status update waits, a confirmation does not.
    now_manila = datetime.now(UTC) + timedelta(hours=8)
    end = (now_manila + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    start = (now_manila - timedelta(hours=2)).time().replace(second=0, microsecond=0)
    contact_id = await _contact(conn, unique_text("quiet"), quiet_start=start, quiet_end=end)
    submission_id = await _submission_for(conn, contact_id, demo)
    async with running_app(settings, mode="web") as client:

        async def notify(event: str, data: dict[str, Any]) -> dict[str, Any]:
            response = await client.post(
                "/api/notify",
                headers=AUTH,
                json={
                    "event": event,
                    "data": data,
                    "recipients": [{"submission_id": submission_id}],
                },
            )
            assert response.status_code == 202, response.text
            entry: dict[str, Any] = response.json()["messages"][0]
            return entry

        deferred = await notify("order_status_update", {"status": "closed"})
        assert deferred["status"] == "queued" and "send_at" in deferred
        assert datetime.fromisoformat(deferred["send_at"]) > datetime.now(UTC) + timedelta(hours=1)
        confirmed = await notify("payment_confirmed", {})
        assert confirmed["status"] == "queued" and "send_at" not in confirmed
        await conn.execute(
            "INSERT INTO contact_preferences (contact_id, kind, enabled)"
            " VALUES ($1, 'order_updates', false)",
            contact_id,
        )
        off = await notify("order_status_update", {"status": "closed"})
        assert (off["status"], off["reason"]) == ("skipped", "preference_off")
        # Transactional messages ignore per-kind preferences...
        assert (await notify("payment_confirmed", {}))["status"] == "queued"
        # ...but not STOP.
        await conn.execute("UPDATE contacts SET opted_out_at = now() WHERE id = $1", contact_id)
        stopped = await notify("payment_confirmed", {})
        assert (stopped["status"], stopped["reason"]) == ("skipped", "opted_out")
    assert Decimal("1250") == await conn.fetchval(
        "SELECT total_amount FROM submissions WHERE id = $1", uuid.UUID(submission_id)
    )


async def test_ten_thousand_buyers_in_one_call(
    make_settings: Any, conn: asyncpg.Connection, redis: Any
) -> None:
    # A queue of its own, emptied afterwards, so no other test's worker inherits 10,000 jobs.
    settings = make_settings(queue_name=unique_text("fan-out"))
    gom_id = await conn.fetchval("INSERT INTO profiles (name) VALUES ('Big GOM') RETURNING id")
    order_id = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline)"
        " VALUES ($1, 'BTS Proof Collector', 3000, 'PHP', now() + interval '3 days') RETURNING id",
        gom_id,
    )
    tag = uuid.uuid4().hex[:6]
    await conn.execute(
        """
        WITH c AS (
            INSERT INTO contacts (display_name)
            SELECT $2 || '-' || n FROM generate_series(1, 10000) n
            RETURNING id, display_name
        ), s AS (
            INSERT INTO submissions (order_id, buyer_name, quantity, total_amount, currency,
                                     payment_reference)
            SELECT $1, $2 || '-' || n, 1, 3000, 'PHP', 'PH-' || $2 || lpad(n::text, 6, '0')
              FROM generate_series(1, 10000) n
            RETURNING id, buyer_name
        ), a AS (
            INSERT INTO contact_addresses (contact_id, channel, address)
            SELECT c.id, 'sandbox', 'fan-' || c.display_name FROM c
        )
        INSERT INTO submission_contacts (submission_id, contact_id)
        SELECT s.id, c.id FROM s JOIN c ON c.display_name = s.buyer_name
        """,
        order_id,
        tag,
    )
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={
                "event": "order_status_update",
                "data": {"status": "arrived"},
                "recipients": [{"order_id": str(order_id)}],
            },
        )
        assert response.status_code == 202, response.text
        messages = response.json()["messages"]
        assert len(messages) == 10_000
        assert {m["status"] for m in messages} == {"queued"}
        assert len({m["address"] for m in messages}) == 10_000

        # Ten thousand messages due now: one ring on the channel's doorbell, no job each.
        doorbell = f"gomflow:{settings.queue_name}:due:sandbox"
        assert await redis.lrange(doorbell, 0, -1) == [b"1"]
        assert await queued_jobs(redis, settings.queue_name) == []
    await conn.execute(
        "DELETE FROM notifications WHERE id = $1", uuid.UUID(response.json()["notification_id"])
    )
    await redis.delete(doorbell)


async def test_a_submission_made_in_a_telegram_group_is_never_answered_in_the_group(
    settings: Settings, demo: dict[str, Any], conn: asyncpg.Connection
) -> None:
    """Before authority followed the person, a submission could record a group's chat id."""
    phone = "+639175550199"
    submission_id = await conn.fetchval(
        """
        INSERT INTO submissions (order_id, buyer_name, buyer_phone, buyer_platform,
                                 buyer_platform_id, quantity, total_amount, currency,
                                 payment_reference)
        VALUES ($1, 'Group Member', $2, 'telegram', '-1001234567890', 1, 2500, 'PHP', $3)
        RETURNING id
        """,
        uuid.UUID(demo["orders"]["PHP"]),
        phone,
        f"PH-{uuid.uuid4().hex[:8].upper()}",
    )
    async with running_app(settings) as client:
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={
                "event": "payment_reminder",
                "recipients": [{"submission_id": str(submission_id)}],
                "channels": ["telegram", "whatsapp"],
            },
        )
    assert response.status_code == 202, response.text
    sent = [(m["channel"], m["address"]) for m in response.json()["messages"]]
    assert sent == [("whatsapp", phone)]
