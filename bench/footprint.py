"""Footprint: `gomflow-messaging serve` from launch to a 200 on /api/health, and its resident
memory (RSS) once idle, with only the sandbox channel and with every channel on (Telegram,
WhatsApp through Twilio, Discord and Messenger, each pointed at its fake platform, and the
sandbox; WhatsApp's other provider, Meta's Cloud API, replaces Twilio rather than adding to it,
so it is not in this count). Three starts each; the median is reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import time
from typing import Any

try:
    from bench import common
except ImportError:  # run as a script
    import common  # type: ignore[no-redef]

from tests.fakes.discord import FakeDiscord, Signer
from tests.fakes.messenger import FakeGraph
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio
from tests.flood import all_channels_env

RUNS = int(os.environ.get("BENCH_FOOTPRINT_RUNS", "3"))
#: What "every channel" is in this benchmark (and in bench/flood.py).
ALL_CHANNELS = ["telegram", "whatsapp (twilio)", "discord", "messenger", "sandbox"]
IDLE_SECONDS = 3.0


async def one_start(env: dict[str, str]) -> tuple[float, float]:
    port = common.free_port()
    env = {**env, "PORT": str(port), "HOST": "127.0.0.1"}
    started = time.monotonic()
    proc = common.start(["serve"], env)
    try:
        await common.wait_http(f"http://127.0.0.1:{port}/api/health", timeout=60, status=200)
        ready = time.monotonic() - started
        await asyncio.sleep(IDLE_SECONDS)
        return ready, common.rss_mb(proc.pid)
    finally:
        common.stop(proc)


async def measure(env: dict[str, str]) -> dict[str, Any]:
    runs = [await one_start(env) for _ in range(RUNS)]
    return {
        "start_to_healthy_s": round(statistics.median(r[0] for r in runs), 2),
        "idle_rss_mb": round(statistics.median(r[1] for r in runs), 1),
        "runs": RUNS,
    }


async def main() -> dict[str, Any]:
    database_url = await common.make_database()
    signer = Signer()
    telegram = await FakeTelegram().start()
    twilio = await FakeTwilio().start()
    discord = await FakeDiscord(public_key=signer.public_key).start()
    graph = await FakeGraph().start()
    queue = f"bench-footprint-{secrets.token_hex(3)}"
    base = common.env_for(database_url, queue, LOG_LEVEL="WARNING")
    channels = all_channels_env(telegram, twilio, discord, signer, graph)
    try:
        sandbox = await measure(base)
        everything = await measure({**base, **channels})
    finally:
        await graph.close()
        await discord.close()
        await twilio.close()
        await telegram.close()
        await common.forget_queue(queue)
        await common.drop_database(database_url)
    return {
        "sandbox_only": {
            **sandbox,
            "channels": ["sandbox"],
            "rss_aim_mb": 100,
            "meets_aim": sandbox["idle_rss_mb"] < 100,
        },
        "all_channels": {
            **everything,
            "channels": ALL_CHANNELS,
            "rss_aim_mb": 250,
            "meets_aim": everything["idle_rss_mb"] < 250,
        },
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
