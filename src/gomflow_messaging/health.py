"""Health: can this service do its job? Database, Redis, a live worker, each channel."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gomflow_messaging import __version__

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services

CHECK_TIMEOUT = 2.0


async def _timed(coro: Any) -> Any:
    return await asyncio.wait_for(coro, CHECK_TIMEOUT)


async def _database(services: Services) -> dict[str, Any]:
    try:
        backlog = await _timed(
            services.pool.fetchrow(
                """
                SELECT count(*) AS pending,
                       extract(epoch FROM now() - min(next_attempt_at)) AS oldest_due_seconds
                  FROM messages
                 WHERE status IN ('queued', 'sending') AND next_attempt_at <= now()
                """
            )
        )
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    oldest = backlog["oldest_due_seconds"]
    return {
        "ok": True,
        "pending_messages": backlog["pending"],
        "oldest_due_seconds": round(float(oldest), 1) if oldest is not None else None,
    }


async def _redis(services: Services) -> dict[str, Any]:
    try:
        await _timed(services.queue.redis.ping())
        depth = await _timed(services.queue.depth())
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, **depth}


async def _worker(services: Services) -> dict[str, Any]:
    try:
        live = await _timed(services.queue.live_workers())
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": live > 0, "live": live}


async def _channel(services: Services, name: str) -> dict[str, Any]:
    try:
        result = await _timed(services.channels[name].health())
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": result.ok, "detail": result.detail}


async def check(services: Services, *, mode: str) -> dict[str, Any]:
    names = list(services.channels)
    database, redis, worker, *channel_results = await asyncio.gather(
        _database(services),
        _redis(services),
        _worker(services),
        *(_channel(services, name) for name in names),
    )
    channels = dict(zip(names, channel_results, strict=True))
    ok = database["ok"] and redis["ok"] and worker["ok"] and all(c["ok"] for c in channels.values())
    return {
        "ok": ok,
        "status": "ok" if ok else "unavailable",
        "version": __version__,
        "mode": mode,
        "components": {
            "database": database,
            "redis": redis,
            "worker": worker,
            "channels": channels,
        },
    }
