"""Holds (issue 20, finding 5): one buyer cannot hold a whole order's stock.

A per-buyer cap on every submit path, unpaid holds that expire after a last reminder, the
GOM cancelling a hold from /manage; and Discord autocomplete under the per-person limiter.
Through the real webhooks (Telegram's secret header, Discord's Ed25519 signature), the
`run-job` command line, real Redis and Postgres.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from gomflow_messaging import orders as order_data
from gomflow_messaging.channels.whatsapp.templates import check
from gomflow_messaging.i18n import LOCALES, gettext
from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.fakes.discord import (
    APP_ID,
    TOKEN,
    FakeDiscord,
    Signer,
    autocomplete,
    modal_submit,
    new_user_id,
    press,
)
from tests.fakes.telegram import FakeTelegram, visible_text
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, FakeTwilio
from tests.helpers import AUTH, SECRET, running_app, wait_status
from tests.test_groups import post
from tests.test_payment_proofs import PNG, new_buyer, new_gom, say, send_file, texts
from tests.test_telegram_webhook import callback_update, message_update, new_chat
from tests.test_whatsapp import new_phone

#: Other runs share Redis: never fold this test's alerts into a digest.
NO_DIGEST = {"gom_alert_digest_threshold": 10_000}


@pytest.fixture
async def fake_discord(signer: Signer) -> AsyncIterator[FakeDiscord]:
    server = await FakeDiscord(public_key=signer.public_key).start()
    yield server
    await server.close()


@pytest.fixture
def both_settings(
    telegram_settings: Callable[..., Settings], fake_discord: FakeDiscord, signer: Signer
) -> Callable[..., Settings]:
    """Telegram and Discord on, each pointed at its fake."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "enable_discord": True,
            "discord_token": TOKEN,
            "discord_client_id": APP_ID,
            "discord_public_key": signer.public_key,
            "discord_api_base_url": fake_discord.base_url,
            "discord_request_timeout_seconds": 2,
            **NO_DIGEST,
        }
        return telegram_settings(**{**values, **overrides})

    return make


@pytest.fixture
async def orders_made(conn: asyncpg.Connection) -> AsyncIterator[list[uuid.UUID]]:
    """Orders a test opens, closed after it so other tests' order lists stay as they were."""
    made: list[uuid.UUID] = []
    yield made
    await conn.execute("UPDATE orders SET is_active = false WHERE id = ANY($1::uuid[])", made)


async def open_order(
    conn: asyncpg.Connection,
    gom_id: uuid.UUID,
    made: list[uuid.UUID],
    *,
    max_orders: int = 50,
    max_per_buyer: int | None = None,
) -> uuid.UUID:
    order_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO orders (user_id, title, price, currency, deadline, slug, max_orders,
                            max_per_buyer)
        VALUES ($1, $2, 100, 'PHP', now() + interval '20 days', $3, $4, $5) RETURNING id
        """,
        gom_id,
        f"ENHYPEN Dark Blood {secrets.token_hex(2)}",
        unique_text("holds"),
        max_orders,
        max_per_buyer,
    )
    made.append(order_id)
    return order_id


async def discord(client: httpx.AsyncClient, signer: Signer, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    response = await client.post("/webhook/discord", content=body, headers=signer.headers(body))
    assert response.status_code == 200, response.text
    return response.json()


class Telegram:
    """What a Telegram chat sees: the answer in the webhook's response, then the API's."""

    def __init__(self, client: httpx.AsyncClient, fake: FakeTelegram) -> None:
        self.client = client
        self.fake = fake
        self.last: dict[int, list[tuple[str, list[str]]]] = {}

    async def send(self, update: dict[str, Any], chat: int) -> None:
        before = len(self.fake.sent(chat))
        body = await post(self.client, update)
        replies = []
        if body.get("method") == "sendMessage":
            replies.append((visible_text(body["text"], body.get("parse_mode")), _datas(body)))
        replies += [(c.text, _datas(c.params)) for c in self.fake.sent(chat)[before:]]
        self.last[chat] = replies

    async def say(self, chat: int, text: str) -> str:
        await self.send(message_update(chat, text), chat)
        return self.text(chat)

    async def press(self, chat: int, data: str) -> str:
        await self.send(callback_update(chat, data), chat)
        return self.text(chat)

    def text(self, chat: int) -> str:
        return "\n".join(text for text, _buttons in self.last[chat])

    def buttons(self, chat: int) -> list[str]:
        return [data for _text, datas in self.last[chat] for data in datas]


def _datas(params: dict[str, Any]) -> list[str]:
    markup = params.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]


# -- the per-buyer cap -----------------------------------------------------------------------


async def test_one_buyer_cannot_hold_more_than_the_cap_on_any_path(
    both_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    signer: Signer,
    conn: asyncpg.Connection,
    orders_made: list[uuid.UUID],
) -> None:
    gom_id = await new_gom(conn)
    default_capped = await open_order(conn, gom_id, orders_made)
    gom_capped = await open_order(conn, gom_id, orders_made, max_per_buyer=2)
    buyer, discord_buyer = new_chat(), new_user_id()
    async with running_app(both_settings(default_max_per_buyer=5), mode="web") as client:
        tg = Telegram(client, fake_telegram)
        # Telegram, step by step: 44 of the 50 left is refused, naming the cap.
        await tg.say(buyer, f"/submit {default_capped}")
        await tg.say(buyer, "Ana Cruz")
        assert "(up to 5)" in await tg.say(buyer, "0917 555 0981")
        assert "at most 5 items" in await tg.say(buyer, "44")
        for answer in ("5", "12 Mabini St, Ermita, Manila", "skip"):
            await tg.say(buyer, answer)
        assert "You joined" in await tg.say(buyer, "confirm")

        # The Discord modal, on an order whose GOM allows 2 each.
        form = f"submit:{gom_capped}"
        values = {
            "name": "Bea Santos",
            "phone": "0917 555 0982",
            "quantity": "3",
            "address": "12 Rizal Ave, Quezon City",
            "notes": "",
        }
        refused = await discord(client, signer, modal_submit(form, values, user_id=discord_buyer))
        assert "at most 2 items" in refused["data"]["content"]

        # The cap is checked again when the submission is made: lowered between the answer
        # and the confirmation, it still holds.
        await tg.say(buyer, f"/submit {gom_capped}")
        for answer in ("Ana Cruz", "0917 555 0981", "2", "12 Mabini St, Ermita, Manila", "skip"):
            await tg.say(buyer, answer)
        await conn.execute("UPDATE orders SET max_per_buyer = 1 WHERE id = $1", gom_capped)
        assert "at most 1 item " in await tg.say(buyer, "confirm")
    rows = await conn.fetch(
        "SELECT order_id, quantity, buyer_platform FROM submissions"
        " WHERE order_id = ANY($1::uuid[]) ORDER BY created_at",
        [default_capped, gom_capped],
    )
    assert [(r["order_id"], r["quantity"]) for r in rows] == [(default_capped, 5)]


async def test_the_gom_sets_the_cap_when_opening_an_order(
    both_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    signer: Signer,
    conn: asyncpg.Connection,
    orders_made: list[uuid.UUID],
) -> None:
    gom_chat, gom_discord = new_chat(), new_user_id()
    await new_gom(conn, ("telegram", str(gom_chat)), ("discord", gom_discord))
    telegram_title, discord_title = unique_text("Tg cap"), unique_text("Dc cap")
    deadline = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d %H:%M")
    async with running_app(both_settings(default_max_per_buyer=7), mode="web") as client:
        tg = Telegram(client, fake_telegram)
        for answer in ("/create", telegram_title, "980", "PHP", deadline):
            await tg.say(gom_chat, answer)
        asked = await tg.say(gom_chat, "50")
        assert "one buyer" in asked and "Skip for 7" in asked
        assert "from 1 to 50" in await tg.say(gom_chat, "51")  # more than the order holds
        assert "Most items per buyer: 3" in await tg.say(gom_chat, "3")
        assert "is open" in await tg.say(gom_chat, "confirm")

        values = {
            "title": discord_title,
            "price": "980",
            "currency": "PHP",
            "deadline": deadline,
            "max_orders": "40 / 2",
        }
        done = await discord(
            client, signer, modal_submit("create:new", values, user_id=gom_discord)
        )
        assert "is open" in done["data"]["content"]
    caps = dict(
        await conn.fetch(
            "SELECT title, max_per_buyer FROM orders WHERE title = ANY($1::text[])",
            [telegram_title, discord_title],
        )
    )
    orders_made.extend(
        await conn.fetchval(
            "SELECT array_agg(id) FROM orders WHERE title = ANY($1::text[])",
            [telegram_title, discord_title],
        )
    )
    assert caps == {telegram_title: 3, discord_title: 2}


# -- expiry ----------------------------------------------------------------------------------


async def run_job(settings: Settings, at: datetime) -> dict[str, Any]:
    """`gomflow-messaging run-job expire-holds --at AT`, as an operator types it."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        SERVICE_SECRET=SECRET,
        QUEUE_NAME=settings.queue_name,
        ENVIRONMENT="test",
        ENABLE_SANDBOX="true",
        HOLD_GRACE_HOURS="24",
        HOLD_NOTICE_HOURS="12",
    )
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gomflow_messaging", "run-job", "expire-holds"),
        *("--at", at.isoformat()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert report["job"] == "expire-holds"
    return report["result"]  # type: ignore[no-any-return]


async def messages_for(conn: asyncpg.Connection, address: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT event, locale, body, created_at FROM messages WHERE address = $1"
            " ORDER BY created_at",
            address,
        )
    )


async def test_unpaid_holds_get_a_last_reminder_then_expire_and_free_their_slots(
    settings: Settings,
    conn: asyncpg.Connection,
    pool: Any,
) -> None:
    gom_id = await new_gom(conn)
    # Deadlines a month back, so no other test's hold is due at the moments used here.
    deadline = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=30)
    order_id = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline, max_orders, is_active)"
        " VALUES ($1, 'IVE Switch', 1250, 'PHP', $2, 6, false) RETURNING id",
        gom_id,
        deadline,
    )
    older = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline, max_orders, is_active)"
        " VALUES ($1, 'IVE Eleven', 1250, 'PHP', $2, 6, false) RETURNING id",
        gom_id,
        deadline - timedelta(days=10),
    )
    addresses = {name: f"hold-{name}-{uuid.uuid4().hex[:8]}" for name in ("ana", "bea", "cy")}
    ana = await new_buyer(conn, order_id, ("sandbox", addresses["ana"]))
    bea = await new_buyer(conn, order_id, ("sandbox", addresses["bea"]), name="Bea")
    cy = await new_buyer(conn, older, ("sandbox", addresses["cy"]), name="Cy")
    await conn.execute(
        "UPDATE contacts SET locale = 'fil' WHERE id IN"
        " (SELECT contact_id FROM submission_contacts WHERE submission_id = $1)",
        ana["submission_id"],
    )
    async with running_app(settings, mode="web") as client:
        await send_file(client, addresses["bea"], PNG)  # Bea's receipt waits for the GOM

    async def status(submission: dict[str, Any]) -> str:
        value: str = await conn.fetchval(
            "SELECT status FROM submissions WHERE id = $1", submission["submission_id"]
        )
        return value

    warn_at = deadline + timedelta(hours=24 - 12)
    await run_job(settings, warn_at - timedelta(minutes=5))  # not yet for Ana
    assert await messages_for(conn, addresses["ana"]) == []
    # Cy's order passed its payment deadline days ago, while the job was not running: the
    # last reminder goes out now, and the expiry waits its full notice.
    assert [m["event"] for m in await messages_for(conn, addresses["cy"])] == ["hold_expiring"]
    assert await status(cy) == "pending"

    await run_job(settings, warn_at)
    [last] = await messages_for(conn, addresses["ana"])
    assert (last["event"], last["locale"]) == ("hold_expiring", "fil")
    assert last["body"]["extra"]["title"] == gettext("fil", "Last payment reminder")
    assert gettext("fil", "Last payment reminder") != "Last payment reminder"
    assert ana["reference"] in last["body"]["text"]
    # Bea's receipt waits for review: she may have paid, so her hold stands.
    assert [m["event"] for m in await messages_for(conn, addresses["bea"])] == []

    await run_job(settings, warn_at)  # again (a second worker, a rerun): nothing twice
    await run_job(settings, warn_at + timedelta(hours=12) - timedelta(minutes=1))
    assert len(await messages_for(conn, addresses["ana"])) == 1
    assert (await status(ana), await status(cy)) == ("pending", "expired")  # Cy's 12 h are up

    await run_job(settings, warn_at + timedelta(hours=12))
    assert (await status(ana), await status(bea)) == ("expired", "pending")
    sent = await messages_for(conn, addresses["ana"])
    assert [(m["event"], m["locale"]) for m in sent] == [
        ("hold_expiring", "fil"),
        ("hold_expired", "fil"),
    ]
    order = await order_data.find_order(pool, str(order_id))
    assert order is not None and order.filled == 2  # only Bea's 2 still count
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'hold.expire' AND subject = $1",
            str(ana["submission_id"]),
        )
        == 1
    )

    # No reminder to an expired hold, even when the core API asks for the whole order.
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            headers=AUTH,
            json={"event": "payment_reminder", "recipients": [{"order_id": str(order_id)}]},
        )
    assert response.status_code == 202, response.text
    assert [m["submission_id"] for m in response.json()["messages"]] == [str(bea["submission_id"])]
    assert [m["event"] for m in await messages_for(conn, addresses["ana"])] == [
        "hold_expiring",
        "hold_expired",
    ]


# -- the GOM cancels a hold --------------------------------------------------------------------


async def test_the_gom_cancels_a_hold_from_manage_after_confirming(
    both_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
    pool: Any,
) -> None:
    gom_chat, other_gom_chat, buyer_chat = new_chat(), new_chat(), new_chat()
    gom_id = await new_gom(conn, ("telegram", str(gom_chat)))
    await new_gom(conn, ("telegram", str(other_gom_chat)))
    order_id = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline, max_orders, is_active)"
        " VALUES ($1, 'LE SSERAFIM Easy', 1250, 'PHP', now() + interval '3 days', 4, false)"
        " RETURNING id",
        gom_id,
    )
    sandbox = f"hold-cancel-{uuid.uuid4().hex[:8]}"
    ana = await new_buyer(
        conn, order_id, ("sandbox", sandbox), ("telegram", str(buyer_chat)), name="Ana\nCruz"
    )
    await conn.execute(
        "UPDATE contacts SET locale = 'ms' WHERE id IN"
        " (SELECT contact_id FROM submission_contacts WHERE submission_id = $1)",
        ana["submission_id"],
    )
    ref = ana["reference"]

    async def status() -> str:
        value: str = await conn.fetchval(
            "SELECT status FROM submissions WHERE id = $1", ana["submission_id"]
        )
        return value

    async with running_app(both_settings(), mode="web") as client:
        tg = Telegram(client, fake_telegram)
        await tg.say(gom_chat, "/manage")
        assert f"holds {order_id}" in tg.buttons(gom_chat)
        listing = await tg.press(gom_chat, f"holds {order_id}")
        assert ref in listing and "\u201cAna Cruz\u201d" in listing  # one line, quoted
        assert tg.buttons(gom_chat) == [f"cancelhold {ref}"]

        asked = await tg.press(gom_chat, f"cancelhold {ref}")
        assert "The items go back to the order" in asked
        assert tg.buttons(gom_chat) == [f"cancelhold {ref} confirm", "manage"]
        assert await status() == "pending"  # asking changes nothing

        # The buyer, and another GOM, press or type the very same confirmation: refused.
        refused = await tg.press(buyer_chat, f"cancelhold {ref} confirm")
        assert "Hanya GOM boleh" in refused  # "Only a GOM can do that", in her Malay
        stranger = await tg.say(other_gom_chat, f"/cancelhold {ref} confirm")
        assert "found no submission" in stranger
        assert await status() == "pending"

        assert "is cancelled" in await tg.press(gom_chat, f"cancelhold {ref} confirm")
        assert await status() == "cancelled"
        replay = await tg.press(gom_chat, f"cancelhold {ref} confirm")
        assert "only an unpaid hold" in replay

    [told] = await conn.fetch(
        "SELECT event, locale FROM messages WHERE address = ANY($1::text[])"
        " AND event = 'hold_cancelled'",
        [sandbox, str(buyer_chat)],
    )
    assert (told["event"], told["locale"]) == ("hold_cancelled", "ms")
    audits = await conn.fetch(
        "SELECT actor, channel, result FROM audit_log WHERE action = 'hold.cancel'"
        " AND subject = $1 ORDER BY id",
        str(ana["submission_id"]),
    )
    assert [(a["actor"], a["channel"], a["result"]) for a in audits] == [
        (f"gom:{gom_id}", "telegram", "cancelled")
    ]
    order = await order_data.find_order(pool, str(order_id))
    assert order is not None and order.filled == 0


def test_hold_button_labels_fit_in_every_language() -> None:
    for label in ("Unpaid holds", "Yes, cancel it", "Keep it", "Skip"):
        for locale in LOCALES:
            assert len(gettext(locale, label)) <= 20, (locale, label)


# -- Discord autocomplete under the per-person limiter -------------------------------------


async def test_discord_autocomplete_past_the_persons_budget_is_empty(
    both_settings: Callable[..., Settings],
    signer: Signer,
    conn: asyncpg.Connection,
    orders_made: list[uuid.UUID],
) -> None:
    gom_id = await new_gom(conn)
    order_id = await open_order(conn, gom_id, orders_made)
    title = await conn.fetchval("SELECT title FROM orders WHERE id = $1", order_id)
    typed = title.split()[-1]
    typist, other = new_user_id(), new_user_id()
    settings = both_settings(rate_limit_max_autocomplete=3, rate_limit_max_messages=100)
    async with running_app(settings, mode="web") as client:
        answers = [
            await discord(client, signer, autocomplete("submit", "order", typed, user_id=typist))
            for _ in range(5)
        ]
        others = await discord(
            client, signer, autocomplete("submit", "order", typed, user_id=other)
        )
        # Typing used no message budget: the person's commands still work.
        pressed = await discord(client, signer, press("orders", user_id=typist))
    assert [len(a["data"]["choices"]) for a in answers] == [1, 1, 1, 0, 0]
    assert answers[-1] == {"type": 8, "data": {"choices": []}}
    assert len(others["data"]["choices"]) == 1
    assert pressed["type"] == 4 and "fast" not in pressed["data"].get("content", "")


# -- WhatsApp outside the 24-hour window -------------------------------------------------------


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = await FakeTwilio().start()
    yield fake
    await fake.close()


async def test_a_whatsapp_buyer_outside_the_window_hears_of_the_cancel_by_template(
    make_settings: Callable[..., Settings],
    twilio: FakeTwilio,
    conn: asyncpg.Connection,
) -> None:
    """The hold events fill an approved template as the other transactional events do."""
    settings = make_settings(
        enable_whatsapp=True,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_whatsapp_number=SENDER,
        twilio_api_base_url=twilio.base_url,
        twilio_timeout_seconds=2,
        **NO_DIGEST,
    )
    gom_sandbox = f"hold-gom-{uuid.uuid4().hex[:8]}"
    gom_id = await new_gom(conn, ("sandbox", gom_sandbox))
    order_id = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline, max_orders, is_active)"
        " VALUES ($1, 'aespa Whiplash', 1250, 'PHP', now() + interval '3 days', 9, false)"
        " RETURNING id",
        gom_id,
    )
    _typed, phone = new_phone()
    buyer = await new_buyer(conn, order_id, ("whatsapp", phone))
    await conn.execute(
        "UPDATE contact_addresses SET last_inbound_at = now() - interval '2 days'"
        " WHERE channel = 'whatsapp' AND address = $1",
        phone,
    )
    check("hold_cancelled", "en", "HX" + "0" * 32, {"1": "{order_title} x{quantity}"})
    content_sid = "HX" + uuid.uuid4().hex
    await conn.execute(
        "INSERT INTO whatsapp_templates (event, locale, content_sid, variables)"
        " VALUES ('hold_cancelled', 'en', $1, $2::jsonb)",
        content_sid,
        {"1": "{order_title} x{quantity}", "2": "{reference}"},
    )
    try:
        async with running_app(settings) as client:
            replies = await say(client, gom_sandbox, f"cancelhold {buyer['reference']} confirm")
            assert "is cancelled" in texts(replies)
            [message_id] = await conn.fetchval(
                "SELECT array_agg(id) FROM messages WHERE address = $1"
                " AND event = 'hold_cancelled'",
                phone,
            )
            await wait_status(client, str(message_id), "sent")
        [sent] = twilio.to(phone)
        assert sent.get("ContentSid") == content_sid
        assert json.loads(sent.get("ContentVariables")) == {
            "1": "aespa Whiplash x2",
            "2": buyer["reference"],
        }
    finally:
        await conn.execute("DELETE FROM whatsapp_templates WHERE content_sid = $1", content_sid)


async def test_a_late_payment_for_an_expired_hold_is_not_approved_past_the_maximum(
    settings: Settings, conn: asyncpg.Connection, orders_made: list[uuid.UUID]
) -> None:
    """A hold expires, its items go to another buyer, then its receipt arrives: approving it
    would sell more than the order has. The GOM is told to raise the maximum or refund; once
    the maximum is raised, the same receipt is approved."""
    from gomflow_messaging.bootstrap import build_services
    from gomflow_messaging.workflows.proofs.review import Review

    gom_id = await new_gom(conn, ("sandbox", unique_text("gom")))
    order_id = await open_order(conn, gom_id, orders_made, max_orders=1)

    async def submission(status: str) -> uuid.UUID:
        made: uuid.UUID = await conn.fetchval(
            "INSERT INTO submissions (order_id, buyer_name, quantity, total_amount, currency,"
            " payment_reference, status) VALUES ($1, 'Late Payer', 1, 100, 'PHP', $2, $3)"
            " RETURNING id",
            order_id,
            f"PH-{secrets.token_hex(4).upper()}",
            status,
        )
        return made

    late = await submission("expired")
    await submission("pending")  # the slot it gave back, taken: the order is full
    proof_id = await conn.fetchval(
        "INSERT INTO payment_proofs (submission_id, channel, mime, size, sha256)"
        " VALUES ($1, 'sandbox', 'image/png', 0, $2) RETURNING id",
        late,
        secrets.token_hex(32),
    )
    services = await build_services(settings)
    try:
        review = Review(services)

        async def approve() -> str:
            return await review.decide(
                proof_id, approve=True, actor=f"gom:{gom_id}", channel="test", gom_id=gom_id
            )

        assert await approve() == "no_room"
        state = await conn.fetchrow(
            "SELECT p.status AS proof, s.status AS submission FROM payment_proofs p"
            " JOIN submissions s ON s.id = p.submission_id WHERE p.id = $1",
            proof_id,
        )
        assert dict(state) == {"proof": "pending_review", "submission": "expired"}
        await conn.execute("UPDATE orders SET max_orders = 2 WHERE id = $1", order_id)
        assert await approve() == "approved"
    finally:
        await services.close()
    assert await conn.fetchval("SELECT status FROM submissions WHERE id = $1", late) == "paid"
