"""`serve` as a real process: sockets that send no request head (or half of one) take no request
slot and are closed at the head's deadline; a head over HTTP_MAX_HEADER_BYTES is refused however
it arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gomflow_messaging.settings import Settings
from tests.flood import read_until_closed
from tests.test_deployer import free_port, served

HEAD_TIMEOUT = 2.0
IDLE_SOCKETS = 1000


@pytest.fixture
def port(settings: Settings, tmp_path: Path) -> Iterator[int]:
    """The port of `gomflow-messaging serve` (sandbox only) with a 2 s head deadline."""
    port = free_port()
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ENABLE_SANDBOX": "true",
        "LOG_LEVEL": "WARNING",
        "HTTP_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
    }
    with served(tmp_path, **env) as log, httpx.Client() as client:
        deadline = time.monotonic() + 90
        while True:
            try:
                if client.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    answer = bytearray()
    await asyncio.wait_for(read_until_closed(reader, answer), seconds)
    return bytes(answer)


async def test_a_thousand_idle_or_half_sent_sockets_leave_health_answering(port: int) -> None:
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for i in range(IDLE_SOCKETS):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if i % 2:
                writer.write(b"GET /api/heal")  # half a request line, never finished
            conns.append((reader, writer))
        opened = time.monotonic()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            # While every one of them is still open (the deadline is 2 s away).
            response = await client.get("/api/health")
            assert time.monotonic() - opened < HEAD_TIMEOUT
            assert response.status_code == 200, response.text
            assert response.json()["status"] in ("ok", "degraded")
        answers = await asyncio.gather(
            *(_closed_within(reader, HEAD_TIMEOUT + 20) for reader, _ in conns)
        )
        # The server closed each one; a half-sent head is told why.
        assert all(a == b"" for a in answers[0::2])
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers[1::2]), answers[1][:100]
    finally:
        for _, writer in conns:
            writer.close()


async def test_a_trickled_head_is_closed_at_the_deadline_also_after_a_response(
    port: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        await reader.readexactly(length)
        # Now a keep-alive connection: one byte of the next head every 0.3 s, never finished.
        started = time.monotonic()
        closed = asyncio.create_task(_closed_within(reader, HEAD_TIMEOUT + 20))
        for byte in b"GET /api/health HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.3)
        answer = await closed
        # Each byte did not extend the deadline (keep-alive 5 s, head 2 s).
        assert time.monotonic() - started < HEAD_TIMEOUT + 3
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    finally:
        writer.close()


async def _one_request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)  # the whole head in one write
        await writer.drain()
        answer = bytearray()
        await asyncio.wait_for(read_until_closed(reader, answer), 30)
        return bytes(answer)
    finally:
        writer.close()


async def test_a_100_kb_header_is_refused_even_in_one_piece(port: int) -> None:
    def head(pad: int) -> bytes:
        return (
            b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"X-Pad: " + b"a" * pad + b"\r\n\r\n"
        )

    refused = await _one_request(port, head(100 * 1024))
    assert refused.startswith(b"HTTP/1.1 400 "), refused[:200]
    # Under the bound (65,536 bytes with the request line), the same request is answered.
    accepted = await _one_request(port, head(60 * 1024))
    assert accepted.startswith(b"HTTP/1.1 200 "), accepted[:200]
