"""A client that streams a huge or slow request body over a real socket, never holding it.

Used by tests/test_limits_process.py and bench/flood.py against a `serve` process: it writes
the body block by block while reading the answer, and stops when the server answers or
closes, so 300 MiB cost the client one block of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fakes.discord import APP_ID, TOKEN
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER

if TYPE_CHECKING:
    from tests.fakes.discord import FakeDiscord, Signer
    from tests.fakes.messenger import FakeGraph
    from tests.fakes.telegram import FakeTelegram
    from tests.fakes.twilio import FakeTwilio

BLOCK = 64 * 1024
WEBHOOKS = ["/webhook/telegram", "/webhook/discord", "/webhooks/whatsapp", "/webhook/status"]
#: On when `all_channels_env` is given a Graph: Meta signs the body, so it is read to check.
MESSENGER_WEBHOOK = "/webhook/messenger"


@dataclass
class Outcome:
    status: int  # 0: the server closed without an answer
    body: bytes
    sent: int  # body bytes written before the server answered or closed


async def read_until_closed(reader: asyncio.StreamReader, into: bytearray) -> None:
    """What the server answers, until it closes (or resets) the connection."""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            into.extend(chunk)


def _status(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body


async def post(
    port: int,
    path: str,
    size: int,
    *,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
    pause: float = 0.0,
    block: int = BLOCK,
    timeout: float = 60.0,
) -> Outcome:
    """POST ``size`` bytes of ``[`` to 127.0.0.1:port, ``pause`` seconds between blocks.

    Returns once the server has answered and closed the connection; a server that keeps it
    open (or keeps reading) past ``timeout`` raises TimeoutError.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = bytearray()
    reading = asyncio.create_task(read_until_closed(reader, answer))
    sent = 0
    payload = b"[" * block
    try:
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionError):
                while sent < size and not answer and not reading.done():
                    part = payload[: min(block, size - sent)]
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                    await writer.drain()
                    sent += len(part)
                    if pause:
                        await asyncio.sleep(pause)
                if chunked and sent >= size:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
            await reading
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status, body = _status(bytes(answer))
    return Outcome(status=status, body=body, sent=sent)


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (the peak resident set) and VmRSS of a process, in KiB, from /proc."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            found[name] = int(value.split()[0])
    return found


def all_channels_env(
    telegram: FakeTelegram,
    twilio: FakeTwilio,
    discord: FakeDiscord,
    signer: Signer,
    graph: FakeGraph | None = None,
) -> dict[str, str]:
    """The environment that turns every channel on, each pointed at its fake platform
    (Messenger too when a fake Graph is given)."""
    messenger: dict[str, str] = {}
    if graph is not None:
        from tests.fakes.messenger import messenger_env

        messenger = {k.upper(): str(v) for k, v in messenger_env(graph.base_url).items()}
    return {
        **messenger,
        "ENABLE_TELEGRAM": "true",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_WEBHOOK_SECRET": "flood-webhook-secret-0123456789",
        "TELEGRAM_API_BASE_URL": telegram.url,
        "ENABLE_WHATSAPP": "true",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_WHATSAPP_NUMBER": SENDER,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "ENABLE_DISCORD": "true",
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_CLIENT_ID": APP_ID,
        "DISCORD_PUBLIC_KEY": signer.public_key,
        "DISCORD_API_BASE_URL": discord.base_url,
    }


async def flood_webhooks(
    port: int, size: int, paths: list[str] = WEBHOOKS
) -> dict[tuple[str, bool], Outcome]:
    """``size`` bytes, unsigned, to each webhook: with a Content-Length, then chunked."""
    outcomes = {}
    for path in paths:
        for chunked in (False, True):
            outcomes[path, chunked] = await post(port, path, size, chunked=chunked)
    return outcomes
