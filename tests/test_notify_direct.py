"""Direct `{"channel", "address"}` recipients: the insert that spares the contact lookup when no
contact holds the address must still honour the contact of one that does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.helpers import AUTH, running_app


async def _contact(conn: Any, address: str, reachable: bool = True, **columns: Any) -> Any:
    names = ", ".join(columns)
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    contact_id = await conn.fetchval(
        f"INSERT INTO contacts ({names}) VALUES ({values}) RETURNING id", *columns.values()
    )
    await conn.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address, reachable)"
        " VALUES ($1, 'sandbox', $2, $3)",
        contact_id,
        address,
        reachable,
    )
    # Another address of the contact: a direct recipient is reached where asked, only.
    await conn.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address, priority)"
        " VALUES ($1, 'sandbox', $2, 1)",
        contact_id,
        f"{address}-other",
    )
    return contact_id


async def test_direct_addresses_of_contacts_keep_their_settings_beside_strangers(
    settings: Settings, conn: Any
) -> None:
    tag = unique_text("direct")
    opted_out, quiet, off, gone, stranger = (
        f"{tag}-{n}" for n in ("out", "quiet", "off", "gone", "new")
    )
    await _contact(conn, opted_out, opted_out_at=datetime.now(UTC))
    # Quiet from an hour ago to an hour from now, in the contact's own zone.
    local = datetime.now(ZoneInfo("Asia/Kuala_Lumpur"))
    await _contact(
        conn,
        quiet,
        timezone="Asia/Kuala_Lumpur",
        quiet_start=(local - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        quiet_end=(local + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )
    off_id = await _contact(conn, off, locale="en")
    await conn.execute(
        "INSERT INTO contact_preferences (contact_id, kind, enabled) VALUES ($1, 'custom', false)",
        off_id,
    )
    await _contact(conn, gone, reachable=False, locale="en")
    text = unique_text()
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": text},
                "recipients": [
                    {"channel": "sandbox", "address": a}
                    for a in (stranger, opted_out, quiet, off, gone)
                ],
            },
            headers=AUTH,
        )
        assert response.status_code == 202, response.text
        entries = response.json()["messages"]
        # A stranger alone takes the one-statement path: its answer has the same shape.
        alone = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": text},
                "recipients": [{"channel": "sandbox", "address": stranger}],
            },
            headers=AUTH,
        )
        assert alone.status_code == 202, alone.text
    assert [(e["address"], e["recipient"], e["status"]) for e in entries] == [
        (stranger, 0, "queued"),
        (opted_out, 1, "skipped"),
        (quiet, 2, "queued"),
        (off, 3, "skipped"),
        (gone, 4, "skipped"),
    ]
    assert "send_at" not in entries[0] and "reason" not in entries[0]
    assert entries[1]["reason"] == "opted_out"
    assert datetime.fromisoformat(entries[2]["send_at"]) > datetime.now(UTC) + timedelta(minutes=30)
    assert entries[3]["reason"] == "preference_off"
    assert entries[4]["reason"] == "unreachable"
    [single] = alone.json()["messages"]
    assert (single["address"], single["recipient"], single["status"]) == (stranger, 0, "queued")
    assert set(single) == {"id", "channel", "address", "status", "recipient"}
    # Each request wrote one notification with one audit row, and nothing else.
    notifications = await conn.fetch(
        "SELECT id::text FROM notifications WHERE data->>'text' = $1", text
    )
    assert len(notifications) == 2
    ids = [n["id"] for n in notifications]
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'notify' AND subject = ANY($1::text[])",
            ids,
        )
        == 2
    )
    details = await conn.fetch(
        "SELECT detail FROM audit_log WHERE action = 'notify' AND subject = ANY($1::text[])", ids
    )
    assert sorted(d["detail"]["messages"] for d in details) == [1, 5]
    assert await conn.fetchval("SELECT count(*) FROM messages WHERE body->>'text' = $1", text) == 6
