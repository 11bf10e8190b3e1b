"""Flood: 300 MiB unsigned, streamed to each webhook of `serve` with every channel on
(Telegram, WhatsApp through Twilio, Discord, Messenger and the sandbox: bench/footprint.py's
ALL_CHANNELS), each webhook of theirs flooded: Telegram's, Discord's, Twilio's messages and
status callbacks, and Messenger's.

Each webhook gets the body twice (with a Content-Length, then chunked without one); the
figure is how much the process's peak resident memory (VmHWM) grew over all of them, beside
its limit of 50 MB, and how many bytes the server let the client send before refusing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

try:
    from bench import common
except ImportError:  # run as a script
    import common  # type: ignore[no-redef]

from tests.fakes.discord import FakeDiscord, Signer
from tests.fakes.messenger import FakeGraph
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio
from tests.flood import (
    MESSENGER_WEBHOOK,
    WEBHOOKS,
    all_channels_env,
    flood_webhooks,
    memory_kb,
    post,
)

MIB = 1024 * 1024
SIZE = 300 * MIB
LIMIT_MB = 50
ALL_WEBHOOKS = [*WEBHOOKS, MESSENGER_WEBHOOK]


async def main() -> dict[str, Any]:
    database_url = await common.make_database()
    signer = Signer()
    telegram = await FakeTelegram().start()
    twilio = await FakeTwilio().start()
    discord = await FakeDiscord(public_key=signer.public_key).start()
    graph = await FakeGraph().start()
    queue = f"bench-flood-{secrets.token_hex(3)}"
    port = common.free_port()
    env = common.env_for(
        database_url,
        queue,
        PORT=str(port),
        HOST="127.0.0.1",
        **all_channels_env(telegram, twilio, discord, signer, graph),
    )
    proc = common.start(["serve"], env)
    try:
        await common.wait_http(f"http://127.0.0.1:{port}/api/health", timeout=90, status=200)
        for path in ALL_WEBHOOKS:  # lazy imports on each route's first request are not the flood's
            await post(port, path, 2)
        before = memory_kb(proc.pid)
        outcomes = await flood_webhooks(port, SIZE, ALL_WEBHOOKS)
        after = memory_kb(proc.pid)
    finally:
        await common.astop(proc)
        await graph.close()
        await discord.close()
        await twilio.close()
        await telegram.close()
        await common.forget_queue(queue)
        await common.drop_database(database_url)
    growth_mb = round((after["VmHWM"] - before["VmHWM"]) / 1024, 1)
    return {
        "body_mib": SIZE // MIB,
        "channels": ["telegram", "whatsapp (twilio)", "discord", "messenger", "sandbox"],
        "webhooks": ALL_WEBHOOKS,
        "requests": len(outcomes),
        "answers": sorted({o.status for o in outcomes.values()}),
        "max_sent_mib": round(max(o.sent for o in outcomes.values()) / MIB, 1),
        "peak_rss_before_mb": round(before["VmHWM"] / 1024, 1),
        "peak_rss_growth_mb": growth_mb,
        "limit_mb": LIMIT_MB,
        "meets_limit": growth_mb < LIMIT_MB,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
