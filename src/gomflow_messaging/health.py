"""Health: can this service do its job? Database, Redis, a live worker, each channel, the agent.

Down (503) is this process unable to do its own job: no Postgres, no Redis, or (``serve``)
no live worker. A ``web`` replica's job is to accept: without a worker it is degraded (200),
so split web and worker services deploy on Railway. A platform or the Smart Agent being
unreachable is degraded too: messages wait in the outbox and receipts go to the GOM.
Without the service secret the answer names nothing (no bot, app, account or worker count).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gomflow_messaging import __version__
from gomflow_messaging.smart_agent import AgentUnavailable, SmartAgent

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


async def _smart_agent(services: Services) -> dict[str, Any]:
    if not services.settings.smart_agent_enabled:
        return {"ok": True, "detail": "not used"}
    try:
        detail = await _timed(SmartAgent(services.settings).health())
    except AgentUnavailable as exc:
        return {"ok": False, "error": exc.code}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "detail": detail}


async def check(services: Services, *, mode: str, detailed: bool = True) -> dict[str, Any]:
    """``detailed`` (the caller gave the secret): each component's own words and counts."""
    names = list(services.channels)
    database, redis, worker, agent, *channel_results = await asyncio.gather(
        _database(services),
        _redis(services),
        _worker(services),
        _smart_agent(services),
        *(_channel(services, name) for name in names),
    )
    channels = dict(zip(names, channel_results, strict=True))
    down = not (database["ok"] and redis["ok"]) or (mode != "web" and not worker["ok"])
    whole = worker["ok"] and agent["ok"] and all(c["ok"] for c in channels.values())
    status = "unavailable" if down else "ok" if whole else "degraded"
    components: dict[str, Any] = {
        "database": database,
        "redis": redis,
        "worker": worker,
        "smart_agent": agent,
        "channels": channels,
    }
    if not detailed:
        return {"ok": not down, "status": status, "mode": mode, "components": _bare(components)}
    return {
        "ok": not down,
        "status": status,
        "version": __version__,
        "mode": mode,
        "components": components,
    }


def _bare(components: dict[str, Any]) -> dict[str, Any]:
    """Only whether each part works: its detail may name a bot, an app or an account."""
    return {
        name: {"ok": part["ok"]} if "ok" in part else _bare(part)
        for name, part in components.items()
    }
