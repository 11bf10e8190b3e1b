"""`serve` as a real process with every channel on: unsigned floods and slow bodies hold nothing.

A 300 MiB body streamed to each webhook (declared, and chunked without a length) is refused
with 413 before it is read, and the process's peak resident memory (VmHWM) grows by less than
50 MB over all of them; a body trickling in is cut with 408 and its connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from gomflow_messaging.settings import Settings
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
    read_until_closed,
)
from tests.helpers import AUTH, SECRET, eventually

MIB = 1024 * 1024
ALL_WEBHOOKS = [*WEBHOOKS, MESSENGER_WEBHOOK]
FLOOD = 300 * MIB
MAX_GROWTH_KB = 50 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _spawn(env: dict[str, str], where: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    log = open(where / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gomflow_messaging", "serve"],
        env=env,
        cwd=where,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    return proc, log


@pytest.fixture
async def serve(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """(pid, port) of `gomflow-messaging serve` with Telegram, Discord and WhatsApp on."""
    signer = Signer()
    telegram = await FakeTelegram().start()
    twilio = await FakeTwilio().start()
    discord = await FakeDiscord(public_key=signer.public_key).start()
    graph = await FakeGraph().start()
    port = _free_port()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env = {
        **keep,
        "ENVIRONMENT": "test",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SERVICE_SECRET": SECRET,
        "QUEUE_NAME": settings.queue_name,
        "ENABLE_SANDBOX": "true",
        "LOG_LEVEL": "WARNING",
        "BODY_READ_TIMEOUT_SECONDS": "2",
        **all_channels_env(telegram, twilio, discord, signer, graph),
    }
    proc, log = _spawn(env, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def healthy() -> bool:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    return (await client.get("/api/health")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, timeout=90, interval=0.2)
            # Each webhook once with a small unsigned body: its lazy imports are not the flood's.
            for path in ALL_WEBHOOKS:
                answer = await client.post(path, content=b"{}")
                assert answer.status_code in (401, 403), (path, answer.text)
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
        log.close()
        await graph.close()
        await discord.close()
        await twilio.close()
        await telegram.close()


async def test_300_mib_unsigned_to_each_webhook_is_413_and_costs_no_memory(
    serve: tuple[int, int],
) -> None:
    pid, port = serve
    before = memory_kb(pid)
    outcomes = await flood_webhooks(port, FLOOD, ALL_WEBHOOKS)
    after = memory_kb(pid)
    for (path, chunked), outcome in outcomes.items():
        # Seen once on a loaded machine: an answer without a body (say which, if again).
        assert outcome.body, (path, chunked, outcome)
        code = json.loads(outcome.body)["error"]["code"]
        if chunked and path == "/webhook/telegram":
            # Its secret is a header: refused on that alone, before the body is read at all.
            assert (outcome.status, code) == (401, "unauthorized"), outcome
        else:
            assert (outcome.status, code) == (413, "too_large"), (path, chunked, outcome)
        # Refused long before the end: the server stopped reading, the client stopped sending.
        assert outcome.sent < FLOOD, (path, chunked, outcome.sent)
    growth = after["VmHWM"] - before["VmHWM"]
    assert growth < MAX_GROWTH_KB, f"peak RSS grew by {growth} KiB: {before} -> {after}"


async def test_a_trickling_body_is_cut_with_408_and_its_connection_closed(
    serve: tuple[int, int],
) -> None:
    _pid, port = serve
    # 1,000 bytes declared, one sent every 0.2 s: it would take 200 s; the limit is 2 s.
    slow = [
        post(port, "/webhook/discord", 1000, block=1, pause=0.2, timeout=60),
        post(port, MESSENGER_WEBHOOK, 1000, block=1, pause=0.2, timeout=60),
        post(port, "/api/notify", 1000, block=1, pause=0.2, timeout=60, headers=AUTH),
    ]
    for outcome in await asyncio.gather(*slow):
        assert outcome.status == 408, outcome
        assert json.loads(outcome.body)["error"]["code"] == "request_timeout"
        assert outcome.sent < 1000


async def test_endless_headers_are_refused_before_they_fill_memory(
    serve: tuple[int, int],
) -> None:
    pid, port = serve
    before = memory_kb(pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /webhook/discord HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    answer = bytearray()
    reading = asyncio.create_task(read_until_closed(reader, answer))
    sent = 0
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(60):
            while sent < FLOOD and not reading.done():
                writer.write(b"X-Pad: " + b"a" * 65_000 + b"\r\n")
                await writer.drain()
                sent += 65_009
    await asyncio.wait_for(reading, 30)
    writer.close()
    after = memory_kb(pid)
    # uvicorn answers 400 and closes at once; with input still unread the close is a reset,
    # which can overtake the answer. Either way the server stopped reading.
    assert not answer or answer.startswith(b"HTTP/1.1 400 "), bytes(answer[:200])
    assert sent < FLOOD
    assert after["VmHWM"] - before["VmHWM"] < MAX_GROWTH_KB
