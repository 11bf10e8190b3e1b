"""Console: an order page of 1,000 buyers, signed in as its GOM.

Server time is taken in-process (httpx's ASGI transport: routing, session, queries and the
template, no socket), p50 and p95 of BENCH_CONSOLE_N requests after a warm-up, with the
process's own CPU per page, the collector's full (generation 2) pauses among them and the
machine's load average beside it. The page's
queries are counted on the wire: the app talks to Postgres through a loopback proxy that
counts the Execute messages of the extended protocol, for the 1,000-buyer order and for a
10-buyer one (the same count: no query per buyer).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import statistics
import struct
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

try:
    from bench import common
except ImportError:  # run as a script
    import common  # type: ignore[no-redef]

BUYERS = int(os.environ.get("BENCH_CONSOLE_BUYERS", "1000"))
REQUESTS = int(os.environ.get("BENCH_CONSOLE_N", "60"))
AIM_P95_MS = 200

_SSL_REQUEST = 80877103


class CountingProxy:
    """A loopback proxy to Postgres that counts the queries clients execute through it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.executes = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def upstream() -> None:
            # Untyped messages first (SSLRequest, StartupMessage), then typed ones.
            typed = False
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    if typed:
                        kind = await reader.readexactly(1)
                        head = await reader.readexactly(4)
                        body = await reader.readexactly(struct.unpack(">I", head)[0] - 4)
                        self.executes += kind == b"E"
                        up_writer.write(kind + head + body)
                    else:
                        head = await reader.readexactly(4)
                        body = await reader.readexactly(struct.unpack(">I", head)[0] - 4)
                        up_writer.write(head + body)
                        typed = struct.unpack(">I", body[:4])[0] != _SSL_REQUEST
                    await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(upstream(), downstream())


async def _order(conn: asyncpg.Connection, gom_id: uuid.UUID, buyers: int) -> uuid.UUID:
    """An order with ``buyers`` buyers: 1 in 10 with no chat, 3 messages each in mixed states."""
    tag = secrets.token_hex(3)
    order_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO orders (user_id, title, price, currency, deadline, max_orders)"
        " VALUES ($1, $2, 1250, 'PHP', now() + interval '3 days', $3) RETURNING id",
        gom_id,
        f"Bench order of {buyers}",
        buyers * 2,
    )
    await conn.execute(
        """
        WITH b AS MATERIALIZED (
            SELECT g, gen_random_uuid() AS contact, gen_random_uuid() AS sub
              FROM generate_series(1, $2::int) g),
        c AS (INSERT INTO contacts (id, display_name) SELECT contact, 'Buyer ' || g FROM b),
        s AS (INSERT INTO submissions (id, order_id, buyer_name, quantity, total_amount,
                                       currency, payment_reference, status)
              SELECT sub, $1, '<Buyer> ' || g, 1, 1250, 'PHP', 'PH-' || $3 || g,
                     CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'pending' END FROM b),
        sc AS (INSERT INTO submission_contacts SELECT sub, contact FROM b),
        a AS (INSERT INTO contact_addresses (contact_id, channel, address)
              SELECT contact, ch, $3 || '-' || ch || '-' || g
                FROM b, unnest(ARRAY['sandbox', 'telegram']) ch WHERE g % 10 <> 0)
        INSERT INTO messages (contact_id, order_id, channel, address, event, body, status,
                              status_reason, created_at)
        SELECT contact, $1, 'sandbox', $3 || '-' || g, 'payment_reminder', '{}'::jsonb,
               (ARRAY['sent', 'delivered', 'failed', 'queued'])[(g + k) % 4 + 1],
               CASE WHEN (g + k) % 4 = 2 THEN 'blocked' END,
               now() - make_interval(mins => k)
          FROM b, generate_series(1, 3) k
        """,
        order_id,
        buyers,
        tag,
    )
    return order_id


def _full_collections(pauses: list[float]) -> Any:
    """A `gc.callbacks` entry that appends each generation-2 collection's length."""
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    return callback


@contextlib.asynccontextmanager
async def _signed_in(database_url: str, gom_id: uuid.UUID) -> AsyncIterator[httpx.AsyncClient]:
    from gomflow_messaging.app import create_app
    from gomflow_messaging.db import create_pool
    from gomflow_messaging.workflows import console_links

    queue = f"bench-console-{secrets.token_hex(3)}"
    settings = common.services_settings(database_url, queue, public_base_url="http://bench")
    app = create_app(settings, mode="web")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=60
        ) as client,
    ):
        pool = await create_pool(database_url, max_size=2)
        try:
            link = await console_links.issue(pool, "http://bench", gom_id, datetime.now(UTC))
        finally:
            await pool.close()
        token = link.rsplit("/", 1)[1]
        signed = await client.post(
            "/console/sign-in", data={"token": token}, headers={"Origin": "http://bench"}
        )
        assert signed.status_code == 303, signed.text
        yield client
    await common.forget_queue(queue)


async def main() -> dict[str, Any]:
    database_url = await common.make_database()
    proxy: CountingProxy | None = None
    try:
        conn = await asyncpg.connect(database_url)
        try:
            gom_id = uuid.uuid4()
            await conn.execute("INSERT INTO profiles (id, name) VALUES ($1, 'Bench GOM')", gom_id)
            big = await _order(conn, gom_id, BUYERS)
            small = await _order(conn, gom_id, 10)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        timings: list[float] = []
        cpu: list[float] = []
        full_gc: list[float] = []
        async with _signed_in(database_url, gom_id) as client:
            for n in range(REQUESTS + 5):
                if n == 5:
                    gc.callbacks.append(_full_collections(full_gc))
                started, cpu_started = time.perf_counter(), time.process_time()
                page = await client.get(f"/console/orders/{big}")
                elapsed = time.perf_counter() - started
                assert page.status_code == 200, page.text[:300]
                if n >= 5:
                    timings.append(elapsed)
                    cpu.append(time.process_time() - cpu_started)
            gc.callbacks.pop()
            size = len(page.content)
        parts = urlsplit(database_url)
        proxy = await CountingProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
        proxied = urlunsplit(
            parts._replace(
                netloc=f"{parts.username}@127.0.0.1:{proxy.port}", query="sslmode=disable"
            )
        )
        queries: dict[str, int] = {}
        async with _signed_in(proxied, gom_id) as client:
            for name, order_id in (("buyers_1000", big), ("buyers_10", small)):
                await client.get(f"/console/orders/{order_id}")  # statements prepared
                before = proxy.executes
                page = await client.get(f"/console/orders/{order_id}")
                assert page.status_code == 200
                queries[name] = proxy.executes - before
        ordered = sorted(timings)
        return {
            "buyers": BUYERS,
            "requests": len(timings),
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[max(int(len(ordered) * 0.95) - 1, 0)] * 1000, 1),
            "aim_p95_ms": AIM_P95_MS,
            # This process's own CPU per page (Postgres apart): what the server time is
            # made of when the machine's cores are shared with other work.
            "cpu_p50_ms": round(statistics.median(cpu) * 1000, 1),
            # Full collections walk every object of the process: one can be most of a
            # slow page, so the p95 depends on how many fall among the requests.
            "gc_full_collections": len(full_gc),
            "gc_full_max_ms": round(max(full_gc, default=0) * 1000, 1),
            "load_average": round(os.getloadavg()[0], 2),
            "page_kib": round(size / 1024, 1),
            "queries": queries,
            "query_per_buyer": queries["buyers_1000"] != queries["buyers_10"],
        }
    finally:
        if proxy is not None:
            await proxy.close()
        await common.drop_database(database_url)
