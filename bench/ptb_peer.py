"""The campaign's peer: the same messages through python-telegram-bot and its AIORateLimiter.

Run by bench/campaign.py in its own process, like our worker:
    python bench/ptb_peer.py API_URL TOKEN CAP FIRST_CHAT COUNT
Sends COUNT messages to chats FIRST_CHAT.., all at once through the limiter (how a broadcast
is written with PTB), with the limiter's own retries on 429 (max_retries=3). Prints a JSON
line with how many calls raised, and the CPU seconds this process used beside the elapsed ones
(equal: the peer is bound by its own core, not by the limiter).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, ExtBot


async def main(api_url: str, token: str, cap: float, first: int, count: int) -> dict[str, object]:
    limiter = AIORateLimiter(overall_max_rate=cap, overall_time_period=1, max_retries=3)
    bot = ExtBot(
        token,
        base_url=f"{api_url}/bot",
        base_file_url=f"{api_url}/file/bot",
        rate_limiter=limiter,
    )
    errors: dict[str, int] = {}
    async with bot:
        started, cpu = time.monotonic(), time.process_time()

        async def one(chat_id: int) -> None:
            try:
                await bot.send_message(chat_id, "campaign bench (python-telegram-bot)")
            except TelegramError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

        await asyncio.gather(*(one(first + i) for i in range(count)))
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    return {"errors": errors, "elapsed_s": round(elapsed, 2), "cpu_s": round(cpu, 2)}


if __name__ == "__main__":
    url, token, cap, first, count = sys.argv[1:6]
    print(json.dumps(asyncio.run(main(url, token, float(cap), int(first), int(count)))))
