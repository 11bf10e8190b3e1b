"""Webhook: from a Telegram update posted to /webhook/telegram to the reply the fake Bot API
receives, against `gomflow-messaging web` (a separate process) with the demo data.

Each update is `/orders` from a new chat (so no per-user limit applies); its first reply
(the list of open orders, followed by one card per order) travels through the Bot API, and
the latency is taken at the fake, on the bench's clock. Also the round trip of `/help`,
whose single reply rides in the webhook response itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from typing import Any

import httpx

try:
    from bench import common
    from bench.campaign import WEBHOOK_SECRET, telegram_env
except ImportError:  # run as a script
    import common  # type: ignore[no-redef]
    from campaign import WEBHOOK_SECRET, telegram_env  # type: ignore[no-redef]

from tests.drill import campaign_chats
from tests.fakes.telegram import FakeTelegram

UPDATES = int(os.environ.get("BENCH_WEBHOOK_N", "200"))
CLIENTS = int(os.environ.get("BENCH_WEBHOOK_CLIENTS", "4"))


def update(chat: int, text: str, update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private", "first_name": "Ana"},
            "from": {"id": chat, "is_bot": False, "first_name": "Ana", "language_code": "en"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text)}],
        },
    }


async def main() -> dict[str, Any]:
    database_url = await common.make_database(seed=True)
    fake = await FakeTelegram().start()
    port = common.free_port()
    queue = f"bench-webhook-{secrets.token_hex(3)}"
    env = common.env_for(
        database_url, queue, PORT=str(port), HOST="127.0.0.1", **telegram_env(fake, 1000)
    )
    proc = common.start(["web"], env)
    base = f"http://127.0.0.1:{port}"
    ids = iter(range(secrets.randbelow(10**6) * 1000, 10**12))
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    posted: dict[str, float] = {}
    in_response: list[float] = []
    try:
        await common.wait_http(base + "/api/health")
        chats = campaign_chats(UPDATES + 20)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def post(chat: str, text: str) -> httpx.Response:
                body = json.dumps(update(int(chat), text, next(ids)))
                response = await client.post("/webhook/telegram", content=body, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"webhook answered {response.status_code}")
                return response

            for chat in chats[UPDATES:]:  # warm-up
                await post(chat, "/orders")
            pending = list(chats[:UPDATES])

            async def one_client() -> None:
                while pending:
                    chat = pending.pop()
                    posted[chat] = time.monotonic()
                    await post(chat, "/orders")
                    started = time.monotonic()
                    answer = await post(chat, "/help")
                    in_response.append(time.monotonic() - started)
                    assert answer.json().get("method") == "sendMessage"

            await asyncio.gather(*(one_client() for _ in range(CLIENTS)))

        async def all_replied() -> bool:
            return {c.chat_id for c in fake.sent()} >= set(posted)

        await common.wait_until(all_replied, timeout=60)
        first: dict[str, float] = {}
        for call in fake.sent():
            if call.chat_id in posted and call.chat_id not in first:
                first[call.chat_id] = call.at
        latencies = [first[chat] - posted[chat] for chat in posted]
    finally:
        common.stop(proc)
        await fake.close()
        await common.forget_queue(queue)
        await common.drop_database(database_url)
    return {
        "updates": UPDATES,
        "clients": CLIENTS,
        "to_first_reply_at_bot_api": common.percentiles(latencies),
        "answered_in_response": common.percentiles(in_response),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
