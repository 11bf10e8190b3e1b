"""Idle sockets: 1,000 connections to `serve` that send no request head (half of them half a
request line), and `/api/health`'s latency while they are open, beside its latency without them.

Before api/connections.py each such socket held one of HTTP_LIMIT_CONCURRENCY's places until
the client let go: 1,000 of them made every request 503. The figures: health's p50/p95 and
how many answers were not 200 with and without the sockets, and how long the server took to
close all of them (HTTP_HEADER_TIMEOUT_SECONDS, 10 s by default).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import statistics
import time
from typing import Any

import httpx

try:
    from bench import common
except ImportError:  # run as a script
    import common  # type: ignore[no-redef]

SOCKETS = 1000
REQUESTS = 100
HEADER_TIMEOUT_S = 10.0


async def _health(port: int) -> dict[str, Any]:
    """REQUESTS sequential GET /api/health on one keep-alive client: p50, p95, not-200s."""
    took: list[float] = []
    bad = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for _ in range(REQUESTS):
            started = time.perf_counter()
            response = await client.get("/api/health")
            took.append(time.perf_counter() - started)
            bad += response.status_code != 200
    ordered = sorted(took)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
        "not_200": bad,
    }


async def _closed(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):
        pass


async def main() -> dict[str, Any]:
    database_url = await common.make_database()
    queue = f"bench-idle-{secrets.token_hex(3)}"
    port = common.free_port()
    env = common.env_for(
        database_url,
        queue,
        PORT=str(port),
        HOST="127.0.0.1",
        HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_S),
    )
    proc = common.start(["serve"], env)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await common.wait_http(f"http://127.0.0.1:{port}/api/health", timeout=90, status=200)
        without = await _health(port)
        opened = time.monotonic()
        for i in range(SOCKETS):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if i % 2:
                writer.write(b"GET /api/heal")
            conns.append((reader, writer))
        with_idle = await _health(port)
        measured_within_s = round(time.monotonic() - opened, 2)
        if measured_within_s >= HEADER_TIMEOUT_S:
            raise RuntimeError(
                f"health was measured for {measured_within_s} s: not all of it "
                "while the sockets were open"
            )
        await asyncio.wait_for(
            asyncio.gather(*(_closed(r) for r, _ in conns)), HEADER_TIMEOUT_S + 60
        )
        all_closed_after_s = round(time.monotonic() - opened, 1)
    finally:
        for _, writer in conns:
            writer.close()
        await common.astop(proc)
        await common.forget_queue(queue)
        await common.drop_database(database_url)
    return {
        "idle_sockets": SOCKETS,
        "requests": REQUESTS,
        "header_timeout_s": HEADER_TIMEOUT_S,
        "health_without": without,
        "health_with_idle": with_idle,
        "measured_while_open_s": measured_within_s,
        "all_closed_after_s": all_closed_after_s,
        "ratio_p95": round(with_idle["p95_ms"] / max(without["p95_ms"], 0.01), 2),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
