"""The bot, written once, driven as a sandbox chat user: what a buyer or GOM would type."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from gomflow_messaging.settings import Settings
from tests.helpers import AUTH, running_app

PHP_ORDER = "00000000-0000-4000-8000-00000000a001"
GOM_ID = "00000000-0000-4000-8000-000000000001"


class Chat:
    """One chat user talking to the bot through POST /api/sandbox/inbound."""

    def __init__(self, client: httpx.AsyncClient, address: str | None = None, **extra: Any):
        self.client = client
        self.address = address or f"chat-{uuid.uuid4().hex[:8]}"
        self.extra = extra

    async def say(self, text: str) -> list[dict[str, Any]]:
        response = await self.client.post(
            "/api/sandbox/inbound",
            headers=AUTH,
            json={"address": self.address, "text": text, "name": "Ana", **self.extra},
        )
        assert response.status_code == 200, response.text
        replies: list[dict[str, Any]] = response.json()["replies"]
        return replies

    async def form(self, form_id: str, values: dict[str, str]) -> list[dict[str, Any]]:
        response = await self.client.post(
            "/api/sandbox/inbound",
            headers=AUTH,
            json={
                "address": self.address,
                "text": "-",
                "form": {"id": form_id, "values": values},
                **self.extra,
            },
        )
        assert response.status_code == 200, response.text
        replies: list[dict[str, Any]] = response.json()["replies"]
        return replies


def texts(replies: list[dict[str, Any]]) -> str:
    return "\n".join(r["text"] for r in replies)


def actions(replies: list[dict[str, Any]]) -> list[str]:
    return [b["action"] for r in replies for row in r["buttons"] for b in row]


@pytest.fixture
async def client(settings: Settings, demo: dict[str, Any]) -> Any:
    async with running_app(settings, mode="web") as c:
        yield c


async def test_orders_lists_open_orders_with_submit_buttons(client: httpx.AsyncClient) -> None:
    replies = await Chat(client).say("/orders")
    body = texts(replies)
    assert "SEVENTEEN 'FML' Album (Carat ver.)" in body
    assert "₱1,250.00" in body and "RM 85.00" in body
    assert f"submit {PHP_ORDER}" in actions(replies)
    assert all(len(a.encode()) <= 64 for a in actions(replies))


async def test_whole_submit_conversation_creates_a_submission(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    chat = Chat(client)
    await chat.say(f"submit {PHP_ORDER}")
    assert "Please send a name" in texts(await chat.say("A"))  # too short: asked again
    await chat.say("Ana Cruz")
    assert "mobile number" in texts(await chat.say("12345"))
    await chat.say("0917 555 0101")
    assert "whole number" in texts(await chat.say("two"))
    await chat.say("2")
    await chat.say("12 Mabini St, Ermita, Manila")
    summary = texts(await chat.say("skip"))
    assert "₱2,500.00" in summary and "+639175550101" in summary
    done = texts(await chat.say("confirm"))
    row = await conn.fetchrow(
        "SELECT s.*, d.address FROM submissions s JOIN submission_details d"
        " ON d.submission_id = s.id WHERE s.buyer_phone = '+639175550101'"
    )
    assert row is not None
    assert row["buyer_name"] == "Ana Cruz" and row["quantity"] == 2
    assert str(row["total_amount"]) == "2500.00" and row["currency"] == "PHP"
    assert row["payment_reference"].startswith("PH-") and row["payment_reference"] in done
    assert row["address"] == "12 Mabini St, Ermita, Manila"
    assert "GCash" in done
    # A second submission to the same order from the same buyer is refused.
    await chat.say(f"submit {PHP_ORDER}")
    for answer in ("Ana Cruz", "0917 555 0101", "1", "12 Mabini St, Manila", "skip"):
        await chat.say(answer)
    again = texts(await chat.say("confirm"))
    assert "already joined" in again and row["payment_reference"] in again


async def test_form_submission_validates_every_field(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    chat = Chat(client, supports_forms=True)
    [reply] = await chat.say(f"/submit {PHP_ORDER}")
    assert reply["form"]["id"] == f"submit:{PHP_ORDER}"
    assert [f["id"] for f in reply["form"]["fields"]] == [
        "name",
        "phone",
        "quantity",
        "address",
        "notes",
    ]
    bad = await chat.form(
        reply["form"]["id"],
        {
            "name": "Bo Santos",
            "phone": "0917 555 0102",
            "quantity": "999",
            "address": "Cebu City 6000",
        },
    )
    assert "at most 10 items" in texts(bad) and bad[0]["private"]  # DEFAULT_MAX_PER_BUYER
    good = await chat.form(
        reply["form"]["id"],
        {
            "name": "Bo Santos",
            "phone": "0917 555 0102",
            "quantity": "1",
            "address": "Cebu City 6000",
        },
    )
    assert "Payment reference: PH-" in texts(good)
    assert (
        await conn.fetchval("SELECT count(*) FROM submissions WHERE buyer_phone = '+639175550102'")
        == 1
    )


async def test_status_never_shows_another_buyers_order(client: httpx.AsyncClient) -> None:
    stranger = Chat(client)
    reply = texts(await stranger.say("/status PH-DEMO0001"))
    assert "no order of yours" in reply
    # Nothing of Andrea's order: her name, phone, price or total (2 x ₱1,250.00).
    for private in ("Andrea", "Santos", "5550181", "1,250", "2,500"):
        assert private not in reply, private


async def test_status_and_pay_for_a_linked_buyer(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    # Made on the web: no chat follows it yet.
    reference = f"PH-{uuid.uuid4().hex[:8].upper()}"
    submission_id = await conn.fetchval(
        "INSERT INTO submissions (order_id, buyer_name, quantity, total_amount, currency,"
        " payment_reference) VALUES ($1, 'Lea Ramos', 2, 2500.00, 'PHP', $2) RETURNING id",
        uuid.UUID(PHP_ORDER),
        reference,
    )
    response = await client.post(
        "/api/link-tokens", headers=AUTH, json={"submission_id": str(submission_id)}
    )
    assert response.status_code == 201
    code = response.json()["code"]
    chat = Chat(client)
    offer = await chat.say(f"/start {code}")
    assert f"the order of L. R., {reference}" in texts(offer)
    assert actions(offer) == ["link confirm", "link cancel"]
    assert "not joined any order" in texts(await chat.say("/status"))  # nothing linked yet
    linked = texts(await chat.say("link confirm"))
    assert "This chat is now linked to your GOMFLOW orders." in linked
    status = texts(await chat.say("/status"))
    assert reference in status and "waiting for payment" in status
    pay = texts(await chat.say("pay"))
    assert "₱2,500.00" in pay and reference in pay
    # A code works once, and says so.
    assert "used already" in texts(await Chat(client).say(f"/start {code}"))


async def test_gom_commands_refused_for_a_buyer(client: httpx.AsyncClient) -> None:
    chat = Chat(client)
    for command in ("/manage", "/create", f"close {PHP_ORDER}"):
        assert "Only a GOM" in texts(await chat.say(command))


async def test_gom_manages_and_creates_orders(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    code = (await client.post("/api/link-tokens", headers=AUTH, json={"gom_id": GOM_ID})).json()[
        "code"
    ]
    gom = Chat(client)
    assert "GOM account of" in texts(await gom.say(f"link {code.lower()}"))
    assert "GOM profile" in texts(await gom.say("link confirm"))
    manage = await gom.say("/manage")
    assert "SEVENTEEN" in texts(manage) and "Collected" in texts(manage)
    await gom.say("/create")
    for answer in (
        "NewJeans Bunnies Camp Photobook",
        "980",
        "PHP",
        "2030-01-15 20:00",
        "40",
        "skip",
    ):
        await gom.say(answer)
    assert "NewJeans" in texts(await gom.say("confirm"))
    created = await conn.fetchrow(
        "SELECT * FROM orders WHERE title = 'NewJeans Bunnies Camp Photobook'"
    )
    assert created["user_id"] == uuid.UUID(GOM_ID) and created["max_orders"] == 40
    assert str(created["price"]) == "980.00"
    await gom.say(f"close {created['id']}")
    assert await conn.fetchval("SELECT is_active FROM orders WHERE id = $1", created["id"]) is False
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'order.close' AND subject = $1",
            str(created["id"]),
        )
        == 1
    )


async def test_stop_then_notify_is_skipped_and_start_resumes(
    client: httpx.AsyncClient,
) -> None:
    chat = Chat(client)
    await chat.say("hi")
    assert "not get reminders" in texts(await chat.say("STOP"))
    body = {
        "event": "custom",
        "data": {"text": "reminder"},
        "recipients": [{"channel": "sandbox", "address": chat.address}],
    }
    [entry] = (await client.post("/api/notify", json=body, headers=AUTH)).json()["messages"]
    assert (entry["status"], entry["reason"]) == ("skipped", "opted_out")
    assert "Welcome back" in texts(await chat.say("START"))
    [entry] = (await client.post("/api/notify", json=body, headers=AUTH)).json()["messages"]
    assert entry["status"] == "queued"


async def test_unknown_text_gets_the_menu_and_cancel_ends_a_flow(
    client: httpx.AsyncClient,
) -> None:
    chat = Chat(client)
    replies = await chat.say("what is this")
    assert "did not understand" in texts(replies) and "orders" in actions(replies)
    await chat.say(f"submit {PHP_ORDER}")
    assert "Cancelled" in texts(await chat.say("/cancel"))
    assert "did not understand" in texts(await chat.say("Ana Cruz"))


async def test_whatsapp_buyer_owns_web_submissions_with_their_number(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.workflows.chat.types import Sender

    reference = f"PH-W{uuid.uuid4().hex[:7].upper()}"
    await conn.execute(
        """
        INSERT INTO submissions (order_id, buyer_name, buyer_phone, quantity, total_amount,
                                 currency, payment_reference, buyer_platform)
        VALUES ($1, 'Web Buyer', '0917 444 1212', 1, 1250, 'PHP', $2, 'web')
        """,
        uuid.UUID(PHP_ORDER),
        reference,
    )
    services = await build_services(settings)
    try:
        sender = Sender("whatsapp", "+639174441212", "Web Buyer")
        replies = await services.bot.handle(sender, "STATUS")
        assert reference in texts([{"text": r.text} for r in replies])
        # A stranger with another number sees nothing of it.
        other = await services.bot.handle(Sender("whatsapp", "+639174441213"), "STATUS")
        assert reference not in texts([{"text": r.text} for r in other])
        # Writing again makes an address reachable again (it had blocked us, say).
        await conn.execute(
            "UPDATE contact_addresses SET reachable = false WHERE address = $1", sender.address
        )
        await services.bot.handle(sender, "hi")
        assert await conn.fetchval(
            "SELECT reachable FROM contact_addresses WHERE address = $1", sender.address
        )
    finally:
        await services.close()


async def test_settings_per_kind_quiet_hours_and_time_zone(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    chat = Chat(client)
    replies = await chat.say("/settings")
    assert "notify reminders off" in actions(replies)
    await chat.say("notify reminders off")
    await chat.say("quiet 22-8")
    replies = await chat.say("tz kl")
    contact = await conn.fetchrow(
        "SELECT c.* FROM contacts c JOIN contact_addresses a ON a.contact_id = c.id"
        " WHERE a.address = $1",
        chat.address,
    )
    assert contact["timezone"] == "Asia/Kuala_Lumpur"
    assert (contact["quiet_start"].hour, contact["quiet_end"].hour) == (22, 8)
    assert (
        await conn.fetchval(
            "SELECT enabled FROM contact_preferences WHERE contact_id = $1 AND kind = 'reminders'",
            contact["id"],
        )
        is False
    )
    assert "notify reminders on" in actions(replies)
    assert "10:00 PM to 8:00 AM" in texts(replies)
    # A reminder is now skipped for this person, an order update is not.
    body = {
        "event": "custom",
        "data": {"text": "x"},
        "recipients": [{"channel": "sandbox", "address": chat.address}],
    }
    [entry] = (await client.post("/api/notify", json=body, headers=AUTH)).json()["messages"]
    assert entry["status"] == "queued"
    assert "Choose a time zone" in texts(await chat.say("tz mars"))
    assert "QUIET 22-8" in texts(await chat.say("quiet always"))


async def test_gom_dashboard_sends_reminders_now_once_an_hour(
    client: httpx.AsyncClient, conn: asyncpg.Connection, redis: Redis
) -> None:
    # The once-an-hour mark lives in Redis, which earlier runs on this machine share.
    await redis.delete(f"gomflow:remind-now:{PHP_ORDER}")
    code = (await client.post("/api/link-tokens", headers=AUTH, json={"gom_id": GOM_ID})).json()[
        "code"
    ]
    gom = Chat(client)
    await gom.say(f"link {code}")
    await gom.say("link confirm")
    dashboard = await gom.say("/dashboard")
    assert f"remind {PHP_ORDER}" in actions(dashboard) and "payments" in actions(dashboard)
    before = await conn.fetchval(
        "SELECT count(*) FROM messages WHERE event = 'payment_reminder'"
        " AND body->>'text' LIKE '%PH-DEMO0001%'"
    )
    sent = texts(await gom.say(f"remind {PHP_ORDER}"))
    # Earlier tests may have added unpaid buyers: the count varies, its grammar must follow it.
    reminded = re.search(r"Reminders? sent to (\d+) buyers? who ha(?:s|ve) not paid yet\.", sent)
    assert reminded is not None, sent
    singular = "Reminder sent to 1 buyer who has not paid yet."
    assert (reminded[0] == singular) == (reminded[1] == "1"), reminded[0]
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM messages WHERE event = 'payment_reminder'"
            " AND body->>'text' LIKE '%PH-DEMO0001%'"
        )
        == before + 1
    )
    # Miguel (PH-DEMO0002) has paid: no reminder for him.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM messages WHERE event = 'payment_reminder'"
            " AND body->>'text' LIKE '%PH-DEMO0002%'"
        )
        == 0
    )
    assert "less than an hour ago" in texts(await gom.say(f"remind {PHP_ORDER}"))
    assert "Only a GOM" in texts(await Chat(client).say(f"remind {PHP_ORDER}"))


async def test_the_order_chooser_cuts_long_titles_and_keeps_them_apart(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    """A button holds 20 characters (Messenger and WhatsApp cut the rest): two orders whose
    titles differ only past that are numbered apart, and the text says each title whole."""
    tag = uuid.uuid4().hex[:6]
    titles = [f"SEVENTEEN FML Album {tag} Ver. A", f"SEVENTEEN FML Album {tag} Ver. B"]
    ids = [
        await conn.fetchval(
            "INSERT INTO orders (user_id, title, price, currency, deadline)"
            " VALUES ($1, $2, 100, 'PHP', now() + interval '1 minute') RETURNING id",
            uuid.UUID(GOM_ID),
            title,
        )
        for title in titles
    ]
    try:
        [reply] = await Chat(client).say("/submit")
    finally:
        await conn.execute("UPDATE orders SET is_active = false WHERE id = ANY($1)", ids)
    buttons = {b["action"]: b["label"] for row in reply["buttons"] for b in row}
    ours = [buttons[f"submit {i}"] for i in ids]
    assert ours == ["1. SEVENTEEN FML Al…", "2. SEVENTEEN FML Al…"]
    assert all(len(label) <= 20 for label in buttons.values())
    assert f"1. {titles[0]}" in reply["text"] and f"2. {titles[1]}" in reply["text"]
