"""The ingest benchmark's limit: a bare Starlette endpoint doing the same database insert and
doorbell ring as `POST /api/notify`, and nothing else (no auth, validation, contacts, rendering,
audit or idempotency), under uvicorn with the service's default server settings (h11 and its
header bound, as `gomflow-messaging web`). Run by bench/foundation.py:

    python bench/bare.py   (PORT, DATABASE_URL, REDIS_URL, QUEUE_NAME, DB_POOL_SIZE, and
                            BARE_HTTP_PARSER=httptools to show what the parser costs)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

import asyncpg
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gomflow_messaging.settings import Settings

state: dict[str, object] = {}


async def notify(request: Request) -> Response:
    body = json.loads(await request.body())
    recipient = body["recipients"][0]
    pool: asyncpg.Pool = state["pool"]  # type: ignore[assignment]
    redis: Redis = state["redis"]  # type: ignore[assignment]
    async with pool.acquire() as conn, conn.transaction():
        notification_id = await conn.fetchval(
            "INSERT INTO notifications (event, data) VALUES ($1, $2::jsonb) RETURNING id",
            body["event"],
            json.dumps(body["data"]),
        )
        message_id = await conn.fetchval(
            "INSERT INTO messages (notification_id, channel, address, event, body)"
            " VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
            notification_id,
            recipient["channel"],
            recipient["address"],
            body["event"],
            json.dumps(body["data"]),
        )
    # The channel's doorbell, as JobQueue.ring does: one ring waiting at most.
    doorbell = f"gomflow:{os.environ['QUEUE_NAME']}:due:{recipient['channel']}"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lpush(doorbell, 1)
        pipe.ltrim(doorbell, 0, 0)
        await pipe.execute()
    return JSONResponse(
        {"notification_id": str(notification_id), "messages": [{"id": str(message_id)}]},
        status_code=202,
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=1, max_size=int(os.environ["DB_POOL_SIZE"])
    )
    redis = Redis.from_url(os.environ["REDIS_URL"])
    state.update(pool=pool, redis=redis)
    yield
    await redis.aclose()
    await pool.close()


_SERVER = {
    name: Settings.model_fields[name].default
    for name in (
        "http_parser",
        "http_max_header_bytes",
        "http_limit_concurrency",
        "http_keep_alive_seconds",
    )
}

app = Starlette(routes=[Route("/api/notify", notify, methods=["POST"])], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        log_config=None,
        access_log=False,
        log_level="warning",
        # The server settings `gomflow-messaging web` runs with by default (cli.py), so the
        # ratio is the cost of the service's own work, not of another HTTP parser.
        http=os.environ.get("BARE_HTTP_PARSER") or _SERVER["http_parser"],
        h11_max_incomplete_event_size=_SERVER["http_max_header_bytes"],
        limit_concurrency=_SERVER["http_limit_concurrency"],
        timeout_keep_alive=_SERVER["http_keep_alive_seconds"],
        proxy_headers=True,
        forwarded_allow_ips="*",
    )
