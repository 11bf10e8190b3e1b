"""Linking by consent, tried as an attacker would (issue 20, findings 1 and 2): through the
real signed webhooks (Telegram's secret header, Messenger's X-Hub-Signature-256, Discord's
Ed25519, Twilio's HMAC), a link code shows what it links and changes nothing until that same
person confirms in that chat; it never moves a chat or another person's order."""

from __future__ import annotations

import html
import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from gomflow_messaging.settings import Settings
from tests.fakes.discord import Signer, new_user_id, press, slash
from tests.fakes.messenger import FakeGraph
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, running_app
from tests.test_bot import Chat, texts
from tests.test_discord_interactions import discord_settings, fake
from tests.test_messenger_webhook import Person, fb_settings, graph, payloads
from tests.test_messenger_webhook import texts as fb_texts
from tests.test_payment_proofs import PNG, new_buyer, new_gom, new_order, proofs_of, send_file
from tests.test_telegram_webhook import callback_update, labels, message_update, new_chat, shown
from tests.test_telegram_webhook import post as telegram_post
from tests.test_whatsapp import Chat as WhatsAppChat
from tests.test_whatsapp import new_phone, twilio, wa_settings

# Fixtures shared with the channels' own test modules.
__all__ = ["discord_settings", "fake", "fb_settings", "graph", "twilio", "wa_settings"]

NO_DIGEST = {"gom_alert_digest_threshold": 1000}


async def link_code(client: httpx.AsyncClient, **subject: str) -> str:
    """What the core app asks for: ``POST /api/link-tokens``."""
    response = await client.post("/api/link-tokens", headers=AUTH, json=subject)
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


async def victim_of(
    conn: asyncpg.Connection, order_id: uuid.UUID, *addresses: tuple[str, str]
) -> dict[str, Any]:
    """A buyer with a name, a phone and a delivery address: what an attacker would want."""
    victim = await new_buyer(conn, order_id, *addresses, name="Vera Santos")
    phone = f"+63917{secrets.randbelow(10**7):07d}"
    await conn.execute("UPDATE contacts SET phone = $2 WHERE id = $1", victim["contact_id"], phone)
    await conn.execute(
        "UPDATE submissions SET buyer_phone = $2 WHERE id = $1", victim["submission_id"], phone
    )
    street = f"{secrets.randbelow(900) + 100} Mabini St, Makati"
    await conn.execute(
        "INSERT INTO submission_details (submission_id, address) VALUES ($1, $2)",
        victim["submission_id"],
        street,
    )
    return {**victim, "phone": phone, "street": street, "name": "Vera Santos"}


async def holdings(conn: asyncpg.Connection, contact_id: uuid.UUID) -> dict[str, Any]:
    """What a contact holds: its chats, its submissions, its GOM profile."""
    row = await conn.fetchrow("SELECT kind, profile_id FROM contacts WHERE id = $1", contact_id)
    addresses = await conn.fetch(
        "SELECT channel, address FROM contact_addresses WHERE contact_id = $1 ORDER BY 1, 2",
        contact_id,
    )
    submissions = await conn.fetch(
        "SELECT submission_id FROM submission_contacts WHERE contact_id = $1 ORDER BY 1",
        contact_id,
    )
    return {
        "contact": dict(row) if row else None,
        "addresses": [tuple(r) for r in addresses],
        "submissions": [r["submission_id"] for r in submissions],
    }


async def said(client: httpx.AsyncClient, fake: FakeTelegram, chat: int, text: str) -> str:
    """Every answer to one Telegram message: the webhook response's and those sent after."""
    before = len(fake.texts(chat))
    body = (await telegram_post(client, message_update(chat, text))).json()
    return "\n".join([html.unescape(body.get("text", "")), *fake.texts(chat)[before:]])


async def link_audit(conn: asyncpg.Connection, contact_id: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = await conn.fetch(
        "SELECT action, result, channel, detail FROM audit_log"
        " WHERE actor = $1 AND action LIKE 'link.%' ORDER BY id",
        str(contact_id),
    )
    return [(r["action"], r["result"], r["channel"], r["detail"]) for r in rows]


# -- finding 1: a link code takes over someone else's chat ---------------------------------


async def test_a_deep_link_to_the_attackers_order_asks_first_and_moves_nobody(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
) -> None:
    attacker_chat, victim_chat, group = new_chat(), new_chat(), -(500_000_000 + new_chat())
    order_id = await new_order(conn, await new_gom(conn))
    attacker = await new_buyer(conn, order_id, ("telegram", str(attacker_chat)), name="Carlo Diaz")
    victim_sandbox = f"victim-{uuid.uuid4().hex[:8]}"
    victim = await victim_of(
        conn, order_id, ("telegram", str(victim_chat)), ("sandbox", victim_sandbox)
    )
    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        await send_file(client, victim_sandbox, PNG)  # the victim's receipt
        victim_before = await holdings(conn, victim["contact_id"])
        attacker_before = await holdings(conn, attacker["contact_id"])

        # The attacker's code for his own submission, sent as t.me/<bot>?start=CODE.
        code = await link_code(client, submission_id=str(attacker["submission_id"]))
        offer = (await telegram_post(client, message_update(victim_chat, f"/start {code}"))).json()
        assert f"the order of C. D., {attacker['reference']}" in shown(offer)
        assert labels(offer["reply_markup"]) == [
            ("Confirm", "link confirm"),
            ("Cancel", "link cancel"),
        ]
        assert await holdings(conn, victim["contact_id"]) == victim_before
        assert await holdings(conn, attacker["contact_id"]) == attacker_before

        # The attacker pressing Confirm himself, or the victim in a group: nothing.
        await telegram_post(client, callback_update(attacker_chat, "link confirm"))
        await telegram_post(client, callback_update(group, "link confirm", user_id=victim_chat))
        assert await holdings(conn, victim["contact_id"]) == victim_before
        assert await holdings(conn, attacker["contact_id"]) == attacker_before

        # The victim presses Cancel: nothing changes, and the code is not used.
        await telegram_post(client, callback_update(victim_chat, "link cancel"))
        assert "nothing was linked" in fake_telegram.texts(victim_chat)[-1]
        assert await conn.fetchval("SELECT used_at FROM link_tokens WHERE token = $1", code) is None

        # Even a victim who confirms takes nothing of the attacker's and loses nothing.
        await telegram_post(client, message_update(victim_chat, f"/start {code}"))
        await telegram_post(client, callback_update(victim_chat, "link confirm"))
        assert "nothing was linked here" in fake_telegram.texts(victim_chat)[-1]
        assert await holdings(conn, victim["contact_id"]) == victim_before
        assert await holdings(conn, attacker["contact_id"]) == attacker_before

        # The attacker's own view: his order only.
        status = shown(
            (await telegram_post(client, message_update(attacker_chat, "/status"))).json()
        )
        assert attacker["reference"] in status and victim["reference"] not in status
        export = await client.get(f"/api/contacts/{attacker['contact_id']}/export", headers=AUTH)
        assert export.status_code == 200
        for secret in (victim["name"], victim["phone"], victim["street"], victim["reference"]):
            assert secret not in export.text
        assert str(victim_chat) not in export.text
        erased = await client.delete(f"/api/contacts/{attacker['contact_id']}", headers=AUTH)
        assert erased.status_code == 200

    assert await holdings(conn, victim["contact_id"]) == victim_before
    assert (
        await conn.fetchval(
            "SELECT address FROM submission_details WHERE submission_id = $1",
            victim["submission_id"],
        )
        == victim["street"]
    )
    assert len(await proofs_of(conn, victim["submission_id"])) == 1
    # Each step is audited with the person and the chat.
    audit = await link_audit(conn, victim["contact_id"])
    assert [(a, r) for a, r, _c, _d in audit] == [
        ("link.offer", "shown"),
        ("link.confirm", "nothing_pending"),  # pressed in a group: not where it waits
        ("link.cancel", "cancelled"),
        ("link.offer", "shown"),
        ("link.confirm", "elsewhere"),
    ]
    assert all(d["person"] == str(victim_chat) for _a, _r, _c, d in audit)


async def test_a_messenger_referral_asks_first_and_a_stranger_cannot_confirm_it(
    fb_settings: Callable[..., Settings], graph: FakeGraph, conn: asyncpg.Connection
) -> None:
    order_id = await new_order(conn, await new_gom(conn))
    async with running_app(fb_settings(), mode="web") as client:
        attacker, victim = Person(client, graph), Person(client, graph)
        mine = await new_buyer(conn, order_id, ("messenger", attacker.psid), name="Carlo Diaz")
        theirs = await victim_of(conn, order_id, ("messenger", victim.psid))
        before = await holdings(conn, theirs["contact_id"])
        code = await link_code(client, submission_id=str(mine["submission_id"]))
        # m.me/<page>?ref=CODE: a referral event, as Meta sends it when the thread opens.
        offer = await victim.send(
            referral={"ref": code, "source": "SHORTLINK", "type": "OPEN_THREAD"}
        )
        assert f"the order of C. D., {mine['reference']}" in fb_texts(offer)
        assert payloads(offer)[:2] == ["link confirm", "link cancel"]
        await attacker.tap("link confirm")  # not his to confirm
        assert await holdings(conn, theirs["contact_id"]) == before
        cancelled = await victim.tap("link cancel")
        assert "nothing was linked" in fb_texts(cancelled)
        status = fb_texts(await attacker.say("status"))
    assert theirs["reference"] not in status
    assert await holdings(conn, theirs["contact_id"]) == before
    assert await conn.fetchval("SELECT used_at FROM link_tokens WHERE token = $1", code) is None


# -- finding 2: the GOM's own re-link hands GOM rights to the attacker ---------------------


async def test_the_goms_relink_after_an_attack_gives_the_attacker_nothing(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
) -> None:
    gom_chat, attacker_chat = new_chat(), new_chat()
    gom_id = await new_gom(conn)
    order_id = await new_order(conn, gom_id)
    attacker_sandbox = f"attacker-{uuid.uuid4().hex[:8]}"
    attacker = await new_buyer(
        conn,
        order_id,
        ("telegram", str(attacker_chat)),
        ("sandbox", attacker_sandbox),
        name="Carlo Diaz",
    )
    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        # The GOM links their chat, as the bot says.
        first = await link_code(client, gom_id=str(gom_id))
        await telegram_post(client, message_update(gom_chat, f"/start {first}"))
        await telegram_post(client, callback_update(gom_chat, "link confirm"))
        assert "Only a GOM" not in await said(client, fake_telegram, gom_chat, "/manage")

        # The attacker's junk receipt waits for review; his code goes to the GOM.
        await send_file(client, attacker_sandbox, PNG)
        [junk] = await proofs_of(conn, attacker["submission_id"])
        code = await link_code(client, submission_id=str(attacker["submission_id"]))
        await telegram_post(client, message_update(gom_chat, f"/start {code}"))
        await telegram_post(client, callback_update(gom_chat, "link confirm"))

        # The GOM links again with a fresh GOM code.
        again = await link_code(client, gom_id=str(gom_id))
        relink = await said(client, fake_telegram, gom_chat, f"/start {again}")
        await telegram_post(client, callback_update(gom_chat, "link confirm"))
        assert "linked to your GOM profile" in relink + fake_telegram.texts(gom_chat)[-1]

        # From his own chat the attacker gets no GOM command, and cannot approve.
        for text in ("/manage", "/payments", "/dashboard"):
            assert "Only a GOM" in await said(client, fake_telegram, attacker_chat, text), text
        await telegram_post(client, callback_update(attacker_chat, f"approve {junk['id']}"))
        assert "Only a GOM" in fake_telegram.texts(attacker_chat)[-1]
        # The GOM still is one, in their own chat, and the GOM's alerts still reach it.
        assert "Only a GOM" not in await said(client, fake_telegram, gom_chat, "/manage")
        alert = {
            "event": "custom",
            "data": {"text": "A new buyer joined."},
            "recipients": [{"gom_id": str(gom_id)}],
        }
        sent = await client.post("/api/notify", headers=AUTH, json=alert)
        assert [(m["channel"], m["address"]) for m in sent.json()["messages"]] == [
            ("telegram", str(gom_chat))
        ]

    assert (await holdings(conn, attacker["contact_id"]))["contact"] == {
        "kind": "buyer",
        "profile_id": None,
    }
    [still] = await proofs_of(conn, attacker["submission_id"])
    assert still["status"] == "pending_review" and still["decided_by"] is None
    assert (
        await conn.fetchval(
            "SELECT status FROM submissions WHERE id = $1", attacker["submission_id"]
        )
        == "pending"
    )
    assert not await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject = $1 AND action LIKE 'payment_proof.%'",
        str(junk["id"]),
    )
    gom_contact = await conn.fetchval(
        "SELECT contact_id FROM contact_addresses WHERE channel = 'telegram' AND address = $1",
        str(gom_chat),
    )
    assert (await holdings(conn, gom_contact))["contact"] == {"kind": "gom", "profile_id": gom_id}


async def test_a_goms_relink_from_a_chat_merged_by_the_old_linking_gives_the_rights_to_the_gom(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
) -> None:
    """Data the old linking left behind: the GOM's chat was moved into the attacker's contact
    and the GOM's contact deleted. The GOM's fresh code gives the rights to the GOM's chat
    alone, split into a contact of its own; the attacker's contact stays a buyer's."""
    gom_chat, attacker_chat = new_chat(), new_chat()
    gom_id = await conn.fetchval("INSERT INTO profiles (name) VALUES ('Merged GOM') RETURNING id")
    order_id = await new_order(conn, gom_id)
    attacker = await new_buyer(
        conn, order_id, ("telegram", str(attacker_chat)), ("telegram", str(gom_chat))
    )
    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        code = await link_code(client, gom_id=str(gom_id))
        await telegram_post(client, message_update(gom_chat, f"/start {code}"))
        await telegram_post(client, callback_update(gom_chat, "link confirm"))
        assert "Only a GOM" not in await said(client, fake_telegram, gom_chat, "/manage")
        assert "Only a GOM" in await said(client, fake_telegram, attacker_chat, "/manage")
    held = await holdings(conn, attacker["contact_id"])
    assert held["contact"] == {"kind": "buyer", "profile_id": None}
    assert held["addresses"] == [("telegram", str(attacker_chat))]
    assert held["submissions"] == [attacker["submission_id"]]
    gom_contact = await conn.fetchval(
        "SELECT contact_id FROM contact_addresses WHERE channel = 'telegram' AND address = $1",
        str(gom_chat),
    )
    assert await holdings(conn, gom_contact) == {
        "contact": {"kind": "gom", "profile_id": gom_id},
        "addresses": [("telegram", str(gom_chat))],
        "submissions": [],
    }


# -- every chat's buttons, and the codes' own answers --------------------------------------


async def test_a_discord_link_waits_for_the_same_persons_confirm(
    discord_settings: Callable[..., Settings], signer: Signer, conn: asyncpg.Connection
) -> None:
    gom_id = await new_gom(conn)
    person, other = new_user_id(), new_user_id()
    async with running_app(discord_settings(), mode="web") as client:
        code = await link_code(client, gom_id=str(gom_id))

        async def answer(payload: dict[str, Any]) -> dict[str, Any]:
            body = json.dumps(payload).encode()
            response = await client.post(
                "/webhook/discord", content=body, headers=signer.headers(body)
            )
            assert response.status_code == 200, response.text
            data: dict[str, Any] = response.json()["data"]
            return data

        async def interact(payload: dict[str, Any]) -> str:
            return str((await answer(payload)).get("content", ""))

        offer = await answer(slash("link", {"code": code}, user_id=person))
        assert "GOM account of Proof GOM" in offer["content"]
        buttons = [b for row in offer["components"] for b in row["components"]]
        assert [(b["label"], b["custom_id"]) for b in buttons] == [
            ("Confirm", "link confirm"),
            ("Cancel", "link cancel"),
        ]
        assert "No link is waiting" in await interact(press("link confirm", user_id=other))
        assert "Only a GOM" in await interact(slash("manage", user_id=person))
        assert "linked to your GOM profile" in await interact(press("link confirm", user_id=person))
        assert "used already" in await interact(slash("link", {"code": code}, user_id=other))
    for who, profile in ((person, gom_id), (other, None)):
        held = await conn.fetchval(
            "SELECT c.profile_id FROM contacts c JOIN contact_addresses ca"
            " ON ca.contact_id = c.id WHERE ca.channel = 'discord' AND ca.address = $1",
            who,
        )
        assert held == profile


async def test_whatsapp_link_confirms_with_a_numbered_choice_and_codes_say_what_they_are(
    wa_settings: Settings, conn: asyncpg.Connection, demo: dict[str, Any]
) -> None:
    order_id = await new_order(conn, await new_gom(conn))
    reference = f"PH-{secrets.token_hex(4).upper()}"
    web = await conn.fetchval(
        "INSERT INTO submissions (order_id, buyer_name, quantity, total_amount, currency,"
        " payment_reference) VALUES ($1, 'Lea Ramos', 1, 1250.00, 'PHP', $2) RETURNING id",
        order_id,
        reference,
    )
    _typed, phone = new_phone()
    async with running_app(wa_settings, mode="web") as client:
        chat = WhatsAppChat(client, phone)
        code = await link_code(client, submission_id=str(web))
        offer = "\n".join(await chat.say(f"LINK {code}"))
        assert f"the order of L. R., {reference}" in offer
        assert "1. Confirm (LINK confirm)" in offer and "2. Cancel (LINK cancel)" in offer
        assert "linked to your GOMFLOW orders" in "\n".join(await chat.say("1"))
        assert reference in "\n".join(await chat.say("STATUS"))
        # The code alone, once used: it says so.
        assert "used already" in "\n".join(await chat.say(code))
        expired = await link_code(client, submission_id=str(web))
        await conn.execute(
            "UPDATE link_tokens SET expires_at = $2 WHERE token = $1",
            expired,
            datetime.now(UTC) - timedelta(minutes=1),
        )
        assert "has expired" in "\n".join(await chat.say(f"LINK {expired}"))
        assert "not valid" in "\n".join(await chat.say("LINK ZZZZ2222ZZ"))


async def test_a_gom_code_for_a_buyer_adds_gom_rights_and_leaves_their_orders_theirs(
    telegram_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    chat = new_chat()
    gom_id = await new_gom(conn)
    bought = await new_buyer(
        conn, await new_order(conn, await new_gom(conn)), ("telegram", str(chat))
    )
    async with running_app(telegram_settings(**NO_DIGEST), mode="web") as client:
        code = await link_code(client, gom_id=str(gom_id))
        await telegram_post(client, message_update(chat, f"/start {code}"))
        await telegram_post(client, callback_update(chat, "link confirm"))
        status = shown((await telegram_post(client, message_update(chat, "/status"))).json())
        manage = shown((await telegram_post(client, message_update(chat, "/manage"))).json())
    assert bought["reference"] in status and "Only a GOM" not in manage
    held = await holdings(conn, bought["contact_id"])
    assert held["submissions"] == [bought["submission_id"]]
    assert held["contact"]["profile_id"] == gom_id


async def test_codes_made_before_linking_asked_first_and_cancel_forgets_a_shown_code(
    settings: Settings, conn: asyncpg.Connection, demo: dict[str, Any]
) -> None:
    """A code of the old shape names a contact: its submissions, if no one chats from it."""
    order_id = await new_order(conn, await new_gom(conn))
    web = await new_buyer(conn, order_id, name="Lea Ramos")  # a contact without a chat
    person = await new_buyer(conn, order_id, ("sandbox", f"old-{uuid.uuid4().hex[:8]}"))
    codes = {}
    for name, contact in (("web", web), ("person", person)):
        codes[name] = f"OLD{secrets.token_hex(4).upper()}"
        await conn.execute(
            "INSERT INTO link_tokens (token, contact_id, expires_at)"
            " VALUES ($1, $2, now() + interval '1 hour')",
            codes[name],
            contact["contact_id"],
        )
    async with running_app(settings, mode="web") as client:
        chat = Chat(client)
        await chat.say(f"/link {codes['web']}")
        assert "Cancelled: nothing was linked." in texts(await chat.say("/cancel"))
        assert "No link is waiting" in texts(await chat.say("link confirm"))
        await chat.say(f"/link {codes['web']}")
        assert "now linked" in texts(await chat.say("link confirm"))
        assert web["reference"] in texts(await chat.say("/status"))
        await chat.say(codes["person"])  # the code alone
        assert "another chat" in texts(await chat.say("link confirm"))
    mine = await conn.fetchval(
        "SELECT contact_id FROM contact_addresses WHERE channel = 'sandbox' AND address = $1",
        chat.address,
    )
    assert (await holdings(conn, mine))["submissions"] == [web["submission_id"]]
    assert (await holdings(conn, person["contact_id"]))["submissions"] == [person["submission_id"]]
    assert (await holdings(conn, web["contact_id"]))["contact"] is not None  # never deleted
