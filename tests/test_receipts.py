"""Receipts held against a flood and a forger (issue 20, findings 4 and 6).

One proof per distinct file per submission; bounds per submission and per person, checked
before the download; images deleted after the retention period (the row kept); /payments
pages through every waiting proof; buyer names one line and quoted in what the GOM reads.
Through the real webhooks (Telegram's secret header, Discord's Ed25519 signature) where a
platform is involved.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from gomflow_messaging.settings import Settings
from tests.fakes.discord import FakeDiscord, Signer, modal_submit, new_user_id, slash
from tests.fakes.smart_agent import FakeSmartAgent
from tests.fakes.telegram import FakeTelegram
from tests.helpers import SECRET, eventually, running_app
from tests.test_payment_proofs import (
    AGENT_KEY,
    PNG,
    actions,
    discord_settings,
    interact,
    new_buyer,
    new_gom,
    new_order,
    png,
    proofs_of,
    sandbox_address,
    sandbox_events,
    say,
    send_file,
    telegram_settings,
    texts,
    tg_post,
)
from tests.test_payment_proofs import (
    document_update as tg_document,
)
from tests.test_telegram_webhook import new_chat

FORGED = "✅ Smart Agent's certainty: 99%; matches this order at 99%"


@pytest.fixture
async def agent() -> AsyncIterator[FakeSmartAgent]:
    fake = await FakeSmartAgent(secret=AGENT_KEY, mode="low_confidence").start()
    yield fake
    await fake.close()


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = await FakeTelegram().start()
    yield fake
    await fake.close()


async def test_the_same_receipt_again_is_already_received_and_never_decided_twice(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, agent: FakeSmartAgent
) -> None:
    """The same file twice used to be two proofs: one rejected, one confirmed, both told."""
    gom_chat, buyer_chat = sandbox_address("gom"), sandbox_address("buyer")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    buyer = await new_buyer(conn, await new_order(conn, gom_id), ("sandbox", buyer_chat))
    settings = make_settings(smart_agent_service_url=agent.url, smart_agent_api_key=AGENT_KEY)
    async with running_app(settings, mode="serve") as client:
        first = await send_file(client, buyer_chat, PNG)
        again = await send_file(client, buyer_chat, PNG)
        await eventually(lambda: sandbox_events(conn, gom_chat))  # the agent was unsure
        [proof] = await proofs_of(conn, buyer["submission_id"])
        await say(client, gom_chat, f"reject {proof['id']} amount")
        after_rejection = await send_file(client, buyer_chat, PNG)
        heard = await eventually(lambda: sandbox_events(conn, buyer_chat))
        other = await send_file(client, buyer_chat, png(2))
    assert "We are checking it now" in texts(first)
    assert "already received this receipt for " + buyer["reference"] in texts(again)
    assert "not accepted" in texts(after_rejection)
    assert "We are checking it now" in texts(other)  # another file is another proof
    proofs = await proofs_of(conn, buyer["submission_id"])
    assert [p["status"] for p in proofs] == ["rejected", "pending_review"]
    assert [e for e, _t in heard] == ["payment_rejected"]
    # The repeats cost no agent call: one for each distinct file.
    await eventually(lambda: _true(len(agent.requests) == 2))
    assert len(agent.requests) == 2


async def test_the_same_receipt_sent_three_times_at_once_is_one_proof(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    """A double tap (or a retried upload) arrives together: the lock makes it one proof."""
    buyer_chat = sandbox_address("buyer")
    buyer = await new_buyer(
        conn, await new_order(conn, await new_gom(conn)), ("sandbox", buyer_chat)
    )
    async with running_app(make_settings(), mode="web") as client:
        answers = await asyncio.gather(*(send_file(client, buyer_chat, PNG) for _ in range(3)))
    assert sum("We received your receipt" in texts(a) for a in answers) == 1
    assert sum("already received" in texts(a) for a in answers) == 2
    assert len(await proofs_of(conn, buyer["submission_id"])) == 1


async def _true(value: bool) -> bool:
    return value


async def test_receipts_are_bounded_per_submission_and_per_person_before_download(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, telegram: FakeTelegram
) -> None:
    gom_id = await new_gom(conn)
    order_id = await new_order(conn, gom_id)
    one_chat, two_chat = new_chat(), new_chat()
    one = await new_buyer(conn, order_id, ("telegram", str(one_chat)))
    two = await new_buyer(conn, order_id, ("telegram", str(two_chat)), name="Bea Lim")
    two_b = await new_buyer(
        conn, await new_order(conn, gom_id), contact_id=two["contact_id"], name="Bea Lim"
    )
    for n in range(8):
        telegram.files[f"docs/r{n}.png"] = png(n)
    settings = make_settings(
        **telegram_settings(telegram),
        proof_max_pending_per_submission=2,
        proof_max_per_person_hour=3,
        rate_limit_max_uploads=50,
    )

    def upload(chat: int, n: int, caption: str = "") -> dict[str, Any]:
        update = tg_document(chat, f"r{n}", len(png(n)), f"r{n}.png", "image/png")
        if caption:
            update["message"]["caption"] = caption
        return update

    async with running_app(settings, mode="web") as client:
        one_answers = [await tg_post(client, upload(one_chat, n)) for n in range(3)]
        two_answers = [
            await tg_post(client, upload(two_chat, 3, two["reference"])),
            await tg_post(client, upload(two_chat, 4, two_b["reference"])),
            await tg_post(client, upload(two_chat, 5, two_b["reference"])),
            await tg_post(client, upload(two_chat, 6, two["reference"])),
        ]
    assert "We received your receipt" in one_answers[0] + one_answers[1]
    assert "already has 2 receipts for " + one["reference"] in one_answers[2]
    assert all("We received your receipt" in a for a in two_answers[:3])
    assert "3 receipts in the last hour" in two_answers[3]
    # Past a bound the file is not even fetched from Telegram.
    fetched = [c.params["file_id"] for c in telegram.requests("getFile")]
    assert fetched == ["r0", "r1", "r3", "r4", "r5"]
    assert len(await proofs_of(conn, one["submission_id"])) == 2
    assert len(await proofs_of(conn, two["submission_id"])) == 1
    assert len(await proofs_of(conn, two_b["submission_id"])) == 2


async def test_payments_pages_through_every_waiting_proof_oldest_first(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    gom_chat = sandbox_address("gom")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    order_id = await new_order(conn, gom_id)
    references = []
    for n in range(13):
        buyer = await new_buyer(conn, order_id, name=f"Buyer {n:02d}")
        references.append(buyer["reference"])
        await conn.execute(
            """
            INSERT INTO payment_proofs (submission_id, contact_id, channel, content, mime, size,
                                        sha256, status, checked_at, created_at)
            VALUES ($1, $2, 'sandbox', $3, 'image/png', 10, $4, 'pending_review', now(),
                    now() - make_interval(mins => $5))
            """,
            buyer["submission_id"],
            buyer["contact_id"],
            png(n),
            uuid.uuid4().hex,
            100 - n,
        )
    async with running_app(make_settings(), mode="web") as client:
        first = await say(client, gom_chat, "/payments")
        [more] = [a for a in actions(first) if a.startswith("payments after ")]
        second = await say(client, gom_chat, more)
    assert first[0]["text"] == "Payment proofs to review: 13. Here are 1 to 10, oldest first."
    assert "3 more waiting after these." in texts(first)
    assert second[0]["text"] == "Payment proofs to review: 13. Here are 11 to 13, oldest first."
    assert not [a for a in actions(second) if a.startswith("payments after")]
    seen = re.findall(r"PH-[0-9A-F]{8}", texts(first) + texts(second))
    assert seen == references  # every one, once, oldest first
    assert all(len(a.encode()) <= 64 for a in actions(first))


async def test_receipt_images_are_deleted_after_the_retention_period_by_run_job(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    gom_chat = sandbox_address("gom")
    gom_id = await new_gom(conn, ("sandbox", gom_chat))
    order_id = await new_order(conn, gom_id)
    kinds = {
        # (status, age in days): an old undecided receipt, a fresh one, a decided one.
        "old_waiting": ("pending_review", 40),
        "fresh_waiting": ("pending_review", 1),
        "old_rejected": ("rejected", 35),
    }
    ids = {}
    for n, (kind, (status, days)) in enumerate(kinds.items()):
        buyer = await new_buyer(conn, order_id, name=f"Keep {kind}")
        ids[kind] = await conn.fetchval(
            """
            INSERT INTO payment_proofs (submission_id, contact_id, channel, content, mime, size,
                                        sha256, status, checked_at, created_at)
            VALUES ($1, $2, 'sandbox', $3, 'image/png', 10, $4, $5, now(),
                    now() - make_interval(days => $6))
            RETURNING id
            """,
            buyer["submission_id"],
            buyer["contact_id"],
            png(n),
            uuid.uuid4().hex,
            status,
            days,
        )
    settings = make_settings(auto_delete_processed_images=False, proof_image_retention_days=30)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        SERVICE_SECRET=SECRET,
        QUEUE_NAME=settings.queue_name,
        ENVIRONMENT="test",
        AUTO_DELETE_PROCESSED_IMAGES="false",
        PROOF_IMAGE_RETENTION_DAYS="30",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gomflow_messaging",
        "run-job",
        "proof-images",
        "--at",
        datetime.now(UTC).isoformat(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["result"]["images_deleted"] >= 2
    rows = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id, status, content, sha256 FROM payment_proofs WHERE id = ANY($1::uuid[])",
            list(ids.values()),
        )
    }
    assert rows[ids["old_waiting"]]["content"] is None
    assert rows[ids["old_rejected"]]["content"] is None
    assert rows[ids["fresh_waiting"]]["content"] is not None
    # The rows stay: the decision, and the hash that still answers "already received".
    assert rows[ids["old_rejected"]]["status"] == "rejected"
    assert rows[ids["old_waiting"]]["status"] == "pending_review"
    async with running_app(settings, mode="web") as client:
        listing = texts(await say(client, gom_chat, "/payments"))
    assert "The receipt image is no longer kept." in listing


# -- names and free text ------------------------------------------------------------------


def test_a_name_is_one_line_without_control_or_bidi_characters() -> None:
    from gomflow_messaging.free_text import one_line, quoted

    assert one_line(f"Ana Cruz\n{FORGED}", 200) == f"Ana Cruz {FORGED}"
    assert one_line("Ana\u202e\u2066 Cruz\r\n\t\x00\x1b[31m", 100) == "Ana Cruz [31m"
    assert one_line("Ana\u2028Cruz\u2029!", 100) == "Ana Cruz !"
    assert one_line("x" * 500, 100) == "x" * 100
    assert quoted('Ana" ✅ verified "x') == "“Ana' ✅ verified 'x”"


async def test_the_gom_review_card_shows_a_forged_verdict_only_inside_the_quoted_name(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection, telegram: FakeTelegram
) -> None:
    """A name with a line break (as the core's database may hold one) forged a Smart Agent
    line in the GOM's alert and review card. Receipt through Telegram's webhook, GOM on
    Discord through signed interactions."""
    signer = Signer()
    discord = await FakeDiscord(public_key=signer.public_key).start()
    try:
        gom_discord = new_user_id()
        gom_id = await new_gom(conn, ("discord", gom_discord))
        chat = new_chat()
        buyer = await new_buyer(
            conn,
            await new_order(conn, gom_id),
            ("telegram", str(chat)),
            name=f"Ana Cruz\n{FORGED}",
        )
        telegram.files["docs/forged.png"] = PNG
        settings = make_settings(**telegram_settings(telegram), **discord_settings(discord, signer))
        async with running_app(settings, mode="serve") as client:
            update = tg_document(chat, "forged", len(PNG), "r.png", "image/png")
            assert "We received your receipt" in await tg_post(client, update)
            [alert] = await eventually(lambda: _now(discord.dm_messages(gom_discord)))
            listing = slash("payments", user_id=gom_discord, guild_id="")
            await interact(client, signer, listing)
            [(_m, card)] = await eventually(lambda: _now(discord.follow_ups(listing["token"])))
    finally:
        await discord.close()
    for shown in (_discord_text(alert), _discord_text(card)):
        lines = shown.splitlines()
        forged = [line for line in lines if "99%" in line]
        assert forged, shown
        for line in forged:
            # Inside our quotation marks, after the name, never a line of its own.
            assert re.search(r"“Ana Cruz ✅ Smart Agent's certainty: 99%; [^”]*”", line), line
            assert not line.lstrip("*_ ").startswith("✅")
    assert "Smart Agent: not used" in _discord_text(card)  # our own line says the truth
    assert buyer["reference"] in _discord_text(card)


def _discord_text(message: dict[str, Any]) -> str:
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f.get('name')}\n{f.get('value')}" for f in embed.get("fields") or []]
    return "\n".join(parts)


async def _now(value: Any) -> Any:
    return value


async def test_a_name_typed_in_the_discord_modal_is_stored_on_one_line(
    make_settings: Callable[..., Settings], conn: asyncpg.Connection
) -> None:
    buyer_user = new_user_id()
    order_id = await conn.fetchval(
        """
        INSERT INTO orders (user_id, title, price, currency, deadline, max_orders, is_active)
        VALUES ($1, 'Names order', 100.00, 'PHP', now() + interval '3 days', 100, true)
        RETURNING id
        """,
        await new_gom(conn),
    )
    signer = Signer()
    discord = await FakeDiscord(public_key=signer.public_key).start()
    try:
        values = {
            "name": f"Ana Cruz\n{FORGED}\u202e",
            "phone": "0917 555 0" + buyer_user[-3:],
            "quantity": "1",
            "address": "12 Rizal Ave,\nQuezon City",
            "notes": "leave at\r\nthe gate\u2066",
        }
        settings = make_settings(**discord_settings(discord, signer))
        async with running_app(settings, mode="web") as client:
            done = await interact(
                client, signer, modal_submit(f"submit:{order_id}", values, user_id=buyer_user)
            )
    finally:
        await discord.close()
        # Closed again, so other tests' listings of open orders stay as they were.
        await conn.execute("UPDATE orders SET is_active = false WHERE id = $1", order_id)
    assert done["type"] == 4
    row = await conn.fetchrow(
        "SELECT s.buyer_name, d.address, d.notes FROM submissions s"
        " JOIN submission_details d ON d.submission_id = s.id"
        " WHERE s.buyer_platform = 'discord' AND s.buyer_platform_id = $1",
        buyer_user,
    )
    assert row["buyer_name"] == f"Ana Cruz {FORGED}"
    assert row["address"] == "12 Rizal Ave, Quezon City"
    assert row["notes"] == "leave at the gate"
