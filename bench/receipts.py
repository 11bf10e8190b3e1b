"""Receipt flood: 6 people x 5 uploads x 20 MB at once, through Telegram's webhook, to `serve`.

Each person has one unpaid submission and sends five different receipts (distinct bytes, so
the duplicate check does not help) of BENCH_RECEIPT_MB megabytes (20 by default; MAX_FILE_SIZE
is 20 MiB) all at the same moment: a minute's flood compressed into one burst. The Smart Agent
(a fake that is unsure, so every stored receipt waits for the GOM) reads each stored one. The
figure is how much the server's peak resident memory (VmHWM) grew, beside a limit of 100 MB;
with it, how many receipts were stored, refused before download, and sent to the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from typing import Any

import asyncpg
import httpx

try:
    from bench import common
except ImportError:  # run as a script
    import common  # type: ignore[no-redef]

from tests.fakes.smart_agent import FakeSmartAgent
from tests.fakes.telegram import FakeTelegram
from tests.flood import memory_kb

PEOPLE = 6
UPLOADS = 5
FILE_MB = float(os.environ.get("BENCH_RECEIPT_MB", "20"))
LIMIT_MB = 100
AGENT_KEY = "bench-agent-key-" + "k" * 32
WEBHOOK_SECRET = "bench-receipts-secret-0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR"


async def _people(database_url: str) -> list[tuple[int, uuid.UUID]]:
    """A GOM, an open order and PEOPLE buyers on Telegram, each with one unpaid submission."""
    conn = await asyncpg.connect(database_url)
    try:
        gom = uuid.uuid4()
        await conn.execute("INSERT INTO profiles (id, name) VALUES ($1, 'Flood GOM')", gom)
        order = await conn.fetchval(
            "INSERT INTO orders (user_id, title, price, currency, deadline, max_orders)"
            " VALUES ($1, 'Flood order', 1250.00, 'PHP', now() + interval '3 days', 100)"
            " RETURNING id",
            gom,
        )
        people = []
        for n in range(PEOPLE):
            chat = 7_000_000_000 + secrets.randbelow(10**8)
            contact = await conn.fetchval(
                "INSERT INTO contacts (display_name) VALUES ($1) RETURNING id", f"Buyer {n}"
            )
            await conn.execute(
                "INSERT INTO contact_addresses (contact_id, channel, address, last_inbound_at)"
                " VALUES ($1, 'telegram', $2, now())",
                contact,
                str(chat),
            )
            submission = await conn.fetchval(
                "INSERT INTO submissions (order_id, buyer_name, buyer_platform, buyer_platform_id,"
                " quantity, total_amount, currency, payment_reference)"
                " VALUES ($1, $2, 'telegram', $3, 2, 2500.00, 'PHP', $4) RETURNING id",
                order,
                f"Buyer {n}",
                str(chat),
                f"PH-{secrets.token_hex(4).upper()}",
            )
            await conn.execute(
                "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)",
                submission,
                contact,
            )
            people.append((chat, submission))
        return people
    finally:
        await conn.close()


def _upload(chat: int, file_id: str, size: int) -> dict[str, Any]:
    now = int(time.time())
    return {
        "update_id": secrets.randbelow(2**31),
        "message": {
            "message_id": secrets.randbelow(2**31),
            "date": now,
            "chat": {"id": chat, "type": "private", "first_name": "Buyer"},
            "from": {"id": chat, "is_bot": False, "first_name": "Buyer", "language_code": "en"},
            "document": {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "file_name": f"{file_id}.png",
                "mime_type": "image/png",
                "file_size": size,
            },
        },
    }


def _kind(answer: dict[str, Any]) -> str:
    text = str(answer.get("text", ""))
    for needle, kind in (
        ("We received your receipt", "stored"),
        ("receipts for", "refused_per_submission"),
        ("in the last hour", "refused_per_person"),
        ("many files", "refused_rate_limit"),
        ("already received", "duplicate"),
    ):
        if needle in text:
            return kind
    return "other" if text else "silent"


async def main() -> dict[str, Any]:
    size = int(FILE_MB * 1_000_000)
    database_url = await common.make_database()
    telegram = await FakeTelegram().start()
    agent = await FakeSmartAgent(secret=AGENT_KEY, mode="low_confidence").start()
    queue = f"bench-receipts-{secrets.token_hex(3)}"
    port = common.free_port()
    env = common.env_for(
        database_url,
        queue,
        PORT=str(port),
        HOST="127.0.0.1",
        ENABLE_TELEGRAM="true",
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        TELEGRAM_API_BASE_URL=telegram.url,
        SMART_AGENT_SERVICE_URL=agent.url,
        SMART_AGENT_API_KEY=AGENT_KEY,
        **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    )
    people = await _people(database_url)
    for chat, _submission in people:
        for n in range(UPLOADS):
            # Distinct bytes: every file is new to the duplicate check.
            head = PNG + f"{chat}-{n}".encode()
            telegram.files[f"docs/r{chat}x{n}.png"] = head + b"\x00" * (size - len(head))
    proc = common.start(["serve"], env)
    url = f"http://127.0.0.1:{port}/webhook/telegram"
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    try:
        await common.wait_http(f"http://127.0.0.1:{port}/api/health", timeout=90, status=200)
        async with httpx.AsyncClient(timeout=300) as client:
            # The upload path's lazy imports and pools are not the flood's.
            warm = _upload(6_999_999_999, "warm-up", 10)  # a stranger: nothing to pay
            await client.post(url, json=warm, headers=headers)
            before = memory_kb(proc.pid)
            started = time.monotonic()
            responses = await asyncio.gather(
                *(
                    client.post(url, json=_upload(chat, f"r{chat}x{n}", size), headers=headers)
                    for chat, _submission in people
                    for n in range(UPLOADS)
                )
            )
            answered_s = round(time.monotonic() - started, 1)
        conn = await asyncpg.connect(database_url)
        try:

            async def all_read() -> bool:
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM payment_proofs WHERE checked_at IS NULL"
                )
                return bool(waiting == 0)

            await common.wait_until(all_read, timeout=300)
            stored = await conn.fetchrow(
                "SELECT count(*) AS proofs, coalesce(sum(size), 0) AS bytes FROM payment_proofs"
            )
        finally:
            await conn.close()
        after = memory_kb(proc.pid)
    finally:
        await common.astop(proc)
        await agent.close()
        await telegram.close()
        await common.forget_queue(queue)
        await common.drop_database(database_url)
    kinds: dict[str, int] = {}
    for response in responses:
        kind = (
            _kind(response.json())
            if response.status_code == 200
            else f"http_{response.status_code}"
        )
        kinds[kind] = kinds.get(kind, 0) + 1
    growth_mb = round((after["VmHWM"] - before["VmHWM"]) / 1024, 1)
    return {
        "people": PEOPLE,
        "uploads_each": UPLOADS,
        "file_mb": FILE_MB,
        "answers": kinds,
        "answered_in_s": answered_s,
        "proofs_stored": stored["proofs"],
        "stored_mb": round(stored["bytes"] / 1_000_000, 1),
        "downloads": len(telegram.requests("getFile")),
        "agent_calls": len(agent.requests),
        "peak_rss_before_mb": round(before["VmHWM"] / 1024, 1),
        "peak_rss_growth_mb": growth_mb,
        "limit_mb": LIMIT_MB,
        "meets_limit": growth_mb < LIMIT_MB,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
