"""Abuse-proof: authority follows the person, never the chat; nothing private goes to a group;
duplicate submissions are judged on the person, never on a typed phone number.

Through the real webhooks (Telegram's secret header, Discord's Ed25519 signature) into the
fake Bot API and the fake Discord API.
"""

from __future__ import annotations

import html
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from gomflow_messaging.demo import BUYERS, GOM_ID, ORDER_PH_ID
from gomflow_messaging.settings import Settings
from gomflow_messaging.workflows import events
from tests.fakes.discord import (
    APP_ID,
    TOKEN,
    FakeDiscord,
    Signer,
    modal_submit,
    new_user_id,
    slash,
)
from tests.fakes.telegram import FakeTelegram
from tests.helpers import running_app
from tests.test_payment_proofs import PNG, new_buyer, new_gom, new_order, proofs_of, send_file
from tests.test_telegram_webhook import (
    WEBHOOK_SECRET,
    callback_update,
    message_update,
    new_chat,
)

EPHEMERAL = 64
DEMO_PHONE = BUYERS[0]["phone"]  # Andrea's, on the demo PHP order as PH-DEMO0001
DEMO_REFERENCE = BUYERS[0]["ref"]

#: Other runs share Redis: never fold this test's alerts into a digest.
NO_DIGEST = {"gom_alert_digest_threshold": 10_000}


def new_supergroup() -> int:
    return -(1_001_000_000_000 + secrets.randbelow(10**9))


def in_group(update: dict[str, Any], group: int) -> dict[str, Any]:
    """The same update, written in (or pressed under a message of) a supergroup."""
    chat = {"id": group, "type": "supergroup", "title": "SVT Carats PH"}
    if "message" in update:
        update["message"]["chat"] = chat
    else:
        update["callback_query"]["message"]["chat"] = chat
    return update


async def post(client: httpx.AsyncClient, update: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        "/webhook/telegram",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def link_code(conn: asyncpg.Connection, gom_id: uuid.UUID) -> str:
    code = f"G{secrets.token_hex(5).upper()}"
    await conn.execute(
        "INSERT INTO link_tokens (token, profile_id, expires_at) VALUES ($1, $2, $3)",
        code,
        gom_id,
        datetime.now(UTC) + timedelta(hours=1),
    )
    return code


# -- Telegram groups -----------------------------------------------------------------------


async def test_a_group_member_cannot_act_as_the_gom_and_private_answers_leave_the_group(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
) -> None:
    group, gom, member, buyer, stranger = new_supergroup(), *(new_chat() for _ in range(4))
    fake_telegram.never_started.add(str(stranger))
    gom_id = await new_gom(conn)
    order_id = await new_order(conn, gom_id)
    ana_sandbox = f"grp-ana-{uuid.uuid4().hex[:8]}"
    ana = await new_buyer(conn, order_id, ("sandbox", ana_sandbox), ("telegram", str(buyer)))
    code = await link_code(conn, gom_id)
    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        await send_file(client, ana_sandbox, PNG)  # a receipt waiting for the GOM
        [proof] = await proofs_of(conn, ana["submission_id"])

        # The GOM links themselves from the group: the person, never the group.
        await post(client, in_group(message_update(gom, f"/start {code}", user_id=gom), group))
        assert "GOM account of" in fake_telegram.texts(gom)[-1]
        # Its Confirm, pressed in the GOM's own chat (where the group's private answer went).
        await post(client, callback_update(gom, "link confirm", user_id=gom))
        assert "linked to your GOM profile" in "\n".join(fake_telegram.texts(gom))
        owners = dict(
            await conn.fetch(
                "SELECT ca.address, c.profile_id FROM contact_addresses ca"
                " JOIN contacts c ON c.id = ca.contact_id"
                " WHERE ca.channel = 'telegram' AND ca.address = ANY($1::text[])",
                [str(gom), str(group)],
            )
        )
        assert owners == {str(gom): gom_id}  # the group is nobody's contact

        # Another member: the same commands and the approve button, refused as for anyone.
        for text in ("/payments", "/dashboard", "/manage@gomflow_test_bot"):
            body = await post(client, in_group(message_update(group, text, user_id=member), group))
            assert body == {}  # nothing in the group
        pressed = await post(
            client,
            in_group(callback_update(group, f"approve {proof['id']}", user_id=member), group),
        )
        assert pressed["method"] == "answerCallbackQuery" and "show_alert" not in pressed
        refusals = fake_telegram.texts(member)
        assert len(refusals) == 4 and all("Only a GOM can do that" in t for t in refusals)
        [still] = await proofs_of(conn, ana["submission_id"])
        assert still["status"] == "pending_review" and still["decided_by"] is None
        status = await conn.fetchval(
            "SELECT status FROM submissions WHERE id = $1", ana["submission_id"]
        )
        assert status == "pending"
        decisions = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE subject = $1", str(proof["id"])
        )
        assert decisions == 0
        press = await conn.fetchrow(
            "SELECT a.actor, a.subject, a.detail FROM audit_log a"
            " WHERE a.channel = 'telegram' AND a.detail->>'text' = $1",
            f"approve {proof['id']}",
        )
        member_contact = await conn.fetchval(
            "SELECT contact_id FROM contact_addresses WHERE channel = 'telegram' AND address = $1",
            str(member),
        )
        assert press is not None
        assert (press["actor"], press["subject"]) == (str(member_contact), str(member))
        assert press["detail"]["chat"] == str(group)

        # The GOM's own /payments in the group: answered in their private chat.
        body = await post(client, in_group(message_update(group, "/payments", user_id=gom), group))
        assert body == {}
        review = "\n".join(fake_telegram.texts(gom))
        assert "Payment proofs to review: 1" in review and ana["reference"] in review

        # A buyer's /status in the group: to their private chat; the group sees none of it.
        body = await post(client, in_group(message_update(group, "/status", user_id=buyer), group))
        assert body == {}
        assert ana["reference"] in fake_telegram.texts(buyer)[-1]

        # Someone who never started the bot: the group gets a deep link, not their data.
        await post(client, in_group(message_update(group, "/status", user_id=stranger), group))
        [notice] = fake_telegram.texts(group)
        assert "https://t.me/gomflow_test_bot?start=status" in notice
        alert = await post(
            client, in_group(callback_update(group, "settings", user_id=stranger), group)
        )
        assert alert["show_alert"] is True
        assert alert["url"] == "https://t.me/gomflow_test_bot?start=settings"

        # Commands for another bot, and chatter, are not ours.
        other = in_group(message_update(group, "/help@OtherBot", user_id=member), group)
        assert await post(client, other) == {}
        bare = in_group(message_update(group, "/ban @spammer", user_id=member), group)
        assert await post(client, bare) == {}
        chatter = in_group(message_update(group, "who's joining the FML GO?", user_id=buyer), group)
        assert await post(client, chatter) == {}
        # Public answers may stay in the group.
        help_body = await post(client, in_group(message_update(group, "/help", user_id=gom), group))
        assert "Here is what I can do" in html.unescape(help_body["text"])
        assert "/payments" not in help_body["text"]  # who is a GOM is nobody else's business

    group_texts = "\n".join(fake_telegram.texts(group))
    assert ana["reference"] not in group_texts and "Ana Cruz" not in group_texts
    assert "Payment proofs" not in group_texts and "Only a GOM" not in group_texts


async def test_a_deep_link_from_a_group_runs_the_command_in_the_private_chat(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
) -> None:
    buyer = new_chat()
    order_id = await new_order(conn, await new_gom(conn))
    ana = await new_buyer(conn, order_id, ("telegram", str(buyer)))
    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        body = await post(client, message_update(buyer, "/start status"))
    assert ana["reference"] in html.unescape(body["text"])
    assert "link code" not in body["text"]


async def test_joining_from_a_group_goes_on_in_the_private_chat(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
) -> None:
    group, buyer = new_supergroup(), new_chat()
    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        body = await post(
            client, in_group(message_update(group, "/submit demo-svt-fml", user_id=buyer), group)
        )
        assert body == {}
        assert "What name" in fake_telegram.texts(buyer)[-1]
        # The conversation is the person's: it goes on where they answer, their own chat.
        reply = await post(client, message_update(buyer, "Maria Clara"))
        assert "mobile number" in html.unescape(reply["text"])
    assert fake_telegram.texts(group) == []


# -- duplicates: the person, never a typed phone ---------------------------------------------


async def _alert_for(conn: asyncpg.Connection, reference: str) -> str:
    """The demo GOM's new-submission alert about this reference."""
    text: str = await conn.fetchval(
        "SELECT m.body->>'text' FROM messages m JOIN contacts c ON c.id = m.contact_id"
        " WHERE m.event = 'new_submission' AND c.profile_id = $1"
        " AND m.body->>'text' LIKE '%' || $2 || '%'",
        GOM_ID,
        reference,
    )
    return text


async def test_a_typed_phone_neither_reveals_nor_locks_out_another_buyer(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
    demo: dict[str, Any],
) -> None:
    stranger = new_chat()

    async def submit() -> str:
        await post(client, callback_update(stranger, f"submit {ORDER_PH_ID}"))
        for answer in ("Juan Dela Cruz", DEMO_PHONE, "1", "5 Katipunan Ave, QC", "skip"):
            await post(client, message_update(stranger, answer))
        await post(client, callback_update(stranger, "confirm"))
        return fake_telegram.texts(stranger)[-1]

    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        joined = await submit()
        again = await submit()
    assert "You joined SEVENTEEN 'FML' Album" in joined
    assert DEMO_REFERENCE not in joined
    reference = await conn.fetchval(
        "SELECT payment_reference FROM submissions"
        " WHERE buyer_platform = 'telegram' AND buyer_platform_id = $1",
        str(stranger),
    )
    assert f"Payment reference: {reference}" in joined
    # The same person twice: refused, naming only their own reference.
    assert f"You already joined this order (reference {reference})" in again
    assert DEMO_REFERENCE not in again
    # The GOM hears of the possible duplicate (the GOM may see their own order's references).
    alert = await _alert_for(conn, reference)
    assert "Possible duplicate: the same mobile number as" in alert and DEMO_REFERENCE in alert


# -- Discord: the same through a server's modal ----------------------------------------------


@pytest.fixture
async def discord(signer: Signer) -> AsyncIterator[FakeDiscord]:
    server = await FakeDiscord(public_key=signer.public_key).start()
    yield server
    await server.close()


@pytest.fixture
def discord_settings(
    make_settings: Callable[..., Settings], discord: FakeDiscord, signer: Signer
) -> Settings:
    return make_settings(
        enable_discord=True,
        discord_token=TOKEN,
        discord_client_id=APP_ID,
        discord_public_key=signer.public_key,
        discord_api_base_url=discord.base_url,
        gom_alert_digest_threshold=10_000,
    )


async def interact(
    client: httpx.AsyncClient, signer: Signer, payload: dict[str, Any]
) -> dict[str, Any]:
    """A signed interaction; Discord's answer in the response."""
    body = json.dumps(payload).encode()
    response = await client.post("/webhook/discord", content=body, headers=signer.headers(body))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_discord_modal_in_a_server_judges_the_person_and_answers_privately(
    discord_settings: Settings, signer: Signer, conn: asyncpg.Connection, demo: dict[str, Any]
) -> None:
    user = new_user_id()
    values = {
        "name": "Bea Cruz",
        "phone": DEMO_PHONE,
        "quantity": "1",
        "address": "12 Rizal Ave, Quezon City",
        "notes": "",
    }

    form = modal_submit(f"submit:{ORDER_PH_ID}", values, user_id=user)
    async with running_app(discord_settings, mode="web") as client:
        joined = await interact(client, signer, form)
        again = await interact(client, signer, {**form, "id": new_user_id()})
    reference = await conn.fetchval(
        "SELECT payment_reference FROM submissions"
        " WHERE buyer_platform = 'discord' AND buyer_platform_id = $1",
        user,
    )
    assert reference is not None
    assert joined["type"] == 4 and reference in joined["data"]["content"]
    assert DEMO_REFERENCE not in joined["data"]["content"]
    # In a server channel, the buyer's reference and total are for their eyes only.
    assert joined["data"]["flags"] == EPHEMERAL
    assert f"You already joined this order (reference {reference})" in again["data"]["content"]
    assert DEMO_REFERENCE not in again["data"]["content"]
    assert again["data"]["flags"] == EPHEMERAL
    alert = await _alert_for(conn, reference)
    assert "Possible duplicate" in alert and DEMO_REFERENCE in alert


async def test_discord_server_answers_a_buyers_own_data_ephemerally(
    discord_settings: Settings, signer: Signer, demo: dict[str, Any]
) -> None:
    user = new_user_id()
    async with running_app(discord_settings, mode="web") as client:
        status = await interact(client, signer, slash("status", user_id=user))
        settings_answer = await interact(client, signer, slash("settings", user_id=user))
        help_answer = await interact(client, signer, slash("help", user_id=user))
    assert status["data"]["flags"] == EPHEMERAL
    assert settings_answer["data"]["flags"] == EPHEMERAL
    assert help_answer["data"].get("flags", 0) & EPHEMERAL == 0  # public: stays in the channel


@pytest.mark.parametrize("locale", ["en", "fil", "ms"])
def test_the_possible_duplicate_flag_is_optional_and_translated(locale: str) -> None:
    data = {
        "buyer_name": "Juan Dela Cruz",
        "order_title": "SEVENTEEN 'FML' Album",
        "quantity": 1,
        "amount": "1250.00",
        "currency": "PHP",
        "reference": "PH-NEW00001",
    }
    ctx = events.RenderContext(locale=locale)
    plain = events.render("new_submission", data, ctx)["text"]
    flagged = events.render(
        "new_submission", {**data, "possible_duplicate_of": "PH-DEMO0001"}, ctx
    )["text"]
    assert "PH-DEMO0001" not in plain
    line = flagged.removeprefix(plain).strip()
    assert "PH-DEMO0001" in line
    assert (line.startswith("Possible duplicate")) == (locale == "en")
