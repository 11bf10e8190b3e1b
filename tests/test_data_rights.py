"""Data rights: export what we hold about a contact; erase it from messaging's tables."""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from redis.asyncio import Redis

from gomflow_messaging.channels.base import choices_key
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows.chat.linking import pending_key
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, eventually, running_app
from tests.test_telegram_webhook import callback_update, message_update, new_chat
from tests.test_telegram_webhook import post as telegram_post

PHP_ORDER = "00000000-0000-4000-8000-00000000a001"
OUR_TABLES = (
    "contacts",
    "contact_addresses",
    "contact_preferences",
    "submission_contacts",
    "messages",
    "delivery_attempts",
    "audit_log",
    "sandbox_messages",
    "submission_details",
    "link_tokens",
    "notifications",
    "payment_proofs",
)


async def test_export_then_erase_leaves_no_personal_data(
    settings: Settings, demo: dict[str, Any], conn: asyncpg.Connection
) -> None:
    address = f"rights-{uuid.uuid4().hex[:8]}"
    phone, name, street = "0917 555 8899", "Carmina Villanueva", "45 Kalayaan Ave, Quezon City"
    async with running_app(settings) as client:

        async def say(text: str) -> None:
            response = await client.post(
                "/api/sandbox/inbound", headers=AUTH, json={"address": address, "text": text}
            )
            assert response.status_code == 200

        for text in (f"submit {PHP_ORDER}", name, phone, "1", street, "ring twice", "confirm"):
            await say(text)
        contact_id = await conn.fetchval(
            "SELECT contact_id FROM contact_addresses WHERE address = $1", address
        )
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={
                "event": "custom",
                "data": {"text": f"Hi {name}, see you!"},
                "recipients": [{"channel": "sandbox", "address": address}],
            },
        )
        [entry] = response.json()["messages"]

        async def sent() -> bool:
            status = await conn.fetchval(
                "SELECT status FROM messages WHERE id = $1", uuid.UUID(entry["id"])
            )
            return bool(status == "sent")

        await eventually(sent)
        receipt = b"\x89PNG\r\n\x1a\n" + f"paid by {name}".encode()
        response = await client.post(
            "/api/sandbox/inbound",
            headers=AUTH,
            json={
                "address": address,
                "file": {"name": "r.png", "content_base64": base64.b64encode(receipt).decode()},
            },
        )
        assert "We received your receipt" in response.json()["replies"][0]["text"]

        exported = await client.get(f"/api/contacts/{contact_id}/export", headers=AUTH)
        assert exported.status_code == 200
        data = exported.json()
        assert data["addresses"][0]["address"] == address
        [submission] = data["submissions"]
        assert submission["buyer_name"] == name and submission["delivery_address"] == street
        assert any(name in (m["text"] or "") for m in data["messages"])
        assert any("ring twice" in str(i["detail"]) for i in data["inbound"])
        [proof] = data["payment_proofs"]
        assert proof["submission_id"] == submission["id"] and proof["mime"] == "image/png"

        erased = await client.delete(f"/api/contacts/{contact_id}", headers=AUTH)
        assert erased.status_code == 200 and erased.json()["erased"] is True
        assert erased.json()["payment_proofs_deleted"] == 1
        assert (
            await client.get(f"/api/contacts/{contact_id}/export", headers=AUTH)
        ).status_code == 404

    for table in OUR_TABLES:
        secrets = (address, name, street, "ring twice", "+639175558899", str(contact_id))
        for secret in (*secrets, proof["id"], proof["sha256"]):
            if table == "audit_log" and secret == str(contact_id):
                continue  # the erase request itself names the contact it erased
            found = await conn.fetchval(
                f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'", secret
            )
            assert found == 0, f"{secret!r} still in {table}"
    # Anonymised counts remain: the message row, without address or text.
    assert (
        await conn.fetchval("SELECT status FROM messages WHERE id = $1", uuid.UUID(entry["id"]))
        == "sent"
    )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'contact.erase' AND subject = $1",
            str(contact_id),
        )
        == 1
    )


async def test_unknown_contact_is_404_and_auth_required(settings: Settings) -> None:
    async with running_app(settings, mode="web") as client:
        missing = uuid.uuid4()
        assert (await client.delete(f"/api/contacts/{missing}", headers=AUTH)).status_code == 404
        assert (await client.delete(f"/api/contacts/{missing}")).status_code == 401
        assert (await client.get("/api/contacts/nope/export", headers=AUTH)).status_code == 422


async def test_erase_forgets_the_persons_chat_state_in_redis(
    settings: Settings, conn: asyncpg.Connection, redis: Redis
) -> None:
    """A conversation and the numbered choices a chat last showed (which can hold a payment
    reference) live in Redis: erasing the person forgets them now, not at their expiry."""
    phone = f"+63917555{uuid.uuid4().int % 10_000:04d}"
    contact_id = await conn.fetchval(
        "INSERT INTO contacts (display_name) VALUES ('E') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO contact_addresses (contact_id, channel, address) VALUES ($1, 'whatsapp', $2)",
        contact_id,
        phone,
    )
    keys = [
        f"gomflow:conversation:whatsapp:{phone}",
        choices_key(settings.queue_name, "whatsapp", phone),
    ]
    for key in keys:
        await redis.set(key, '["pay PH-ERASEME1"]', ex=3600)
    async with running_app(settings) as client:
        erased = await client.delete(f"/api/contacts/{contact_id}", headers=AUTH)
    assert erased.status_code == 200, erased.text
    assert [await redis.exists(key) for key in keys] == [0, 0]


# Tables of the GOMFLOW core schema (migrations/001): the core app's, never erased here.
CORE_TABLES = ("profiles", "orders", "submissions", "schema_migrations")


async def test_erase_leaves_the_persons_identifiers_in_no_column_of_any_table(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
    redis: Redis,
    demo: dict[str, Any],
) -> None:
    """A Telegram buyer who joined, was messaged, linked a web order and has a code waiting:
    after the erase, every text and JSON column of every messaging table (listed from
    information_schema, so a new table is covered too) is searched for what identifies them."""
    chat = new_chat()
    digits = f"{secrets.randbelow(10**4):04d}"
    typed, phone = f"0917 555 {digits}", f"+63917555{digits}"
    name, street = "Rosario Dimaculangan", f"{secrets.randbelow(900) + 100} Kamuning Rd, QC"
    web = await conn.fetchval(
        "INSERT INTO submissions (order_id, buyer_name, quantity, total_amount, currency,"
        " payment_reference) VALUES ($1, 'Lea Ramos', 1, 1250.00, 'PHP', $2) RETURNING id",
        uuid.UUID(PHP_ORDER),
        f"PH-{secrets.token_hex(4).upper()}",
    )
    async with running_app(telegram_settings(), mode="serve") as client:
        await telegram_post(client, callback_update(chat, f"submit {PHP_ORDER}"))
        for text in (name, typed, "1", street):
            await telegram_post(client, message_update(chat, text))
        for action in ("skip", "confirm"):
            await telegram_post(client, callback_update(chat, action))
        contact_id = await conn.fetchval(
            "SELECT contact_id FROM contact_addresses WHERE channel = 'telegram' AND address = $1",
            str(chat),
        )
        for subject in ({"submission_id": str(web)}, {"gom_id": demo["gom_id"]}):
            code = (await client.post("/api/link-tokens", headers=AUTH, json=subject)).json()
            await telegram_post(client, message_update(chat, f"/start {code['code']}"))
            if "submission_id" in subject:
                await telegram_post(client, callback_update(chat, "link confirm"))
        # The second code waits for its Confirm. A message sent to the chat: Telegram's
        # message id names the chat ("<chat id>:<message id>").
        notify = {
            "event": "custom",
            "data": {"text": f"Hi {name}!"},
            "recipients": [{"channel": "telegram", "address": str(chat)}],
        }
        assert (await client.post("/api/notify", headers=AUTH, json=notify)).status_code == 202

        async def delivered() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM messages WHERE channel = 'telegram' AND address = $1"
                    " AND provider_message_id IS NOT NULL",
                    str(chat),
                )
            )

        await eventually(delivered)
        assert await conn.fetchval(
            "SELECT used_by FROM link_tokens WHERE used_by = $1", f"telegram:{chat}"
        )
        pending = pending_key("telegram", str(chat))
        assert await redis.exists(pending)
        erased = await client.delete(f"/api/contacts/{contact_id}", headers=AUTH)
        assert erased.status_code == 200, erased.text

    assert not await redis.exists(pending)  # the code shown, waiting for a Confirm
    columns = await conn.fetch(
        """
        SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> ALL($1::text[])
           AND (data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
                OR udt_name IN ('_text', '_varchar'))
         ORDER BY 1, 2
        """,
        list(CORE_TABLES),
    )
    assert {"provider_message_id", "used_by"} <= {c["column_name"] for c in columns}
    found = []
    for column in columns:
        table, col = column["table_name"], column["column_name"]
        for needle in (str(chat), phone, typed, name, street):
            # Whole numbers only: a chat id inside a longer number is not that chat id.
            pattern = "(^|[^0-9])" + re.escape(needle) + "([^0-9]|$)"
            hits = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE "{col}"::text ~ $1', pattern
            )
            if hits:
                found.append((table, col, needle))
    assert found == []
