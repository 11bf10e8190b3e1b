"""Health: can this service do its job? Database, Redis, a live worker, each channel, the agent.

Down (503) is this process unable to do its own job: no Postgres, no Redis, or (``serve``)
no live worker. A ``web`` replica's job is to accept: without a worker it is degraded (200),
so split web and worker services deploy on Railway. A platform or the Smart Agent being
unreachable is degraded too: messages wait in the outbox and receipts go to the GOM. So are
live workers that disagree about their channels (a rolling deploy turning one on, or a
mistake), messages waiting for a channel this process has but no live worker sends on, and
production with no channel that reaches anyone.
Without the service secret the answer names nothing: no bot, app, account, channel, worker
count, nor whether the Smart Agent is configured (``platforms`` is one flag for them all).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gomflow_messaging import __version__, outbox
from gomflow_messaging.channels import registry
from gomflow_messaging.settings import Environment
from gomflow_messaging.smart_agent import AgentUnavailable, SmartAgent

if TYPE_CHECKING:
    from gomflow_messaging.bootstrap import Services

CHECK_TIMEOUT = 2.0


async def _timed(coro: Any) -> Any:
    return await asyncio.wait_for(coro, CHECK_TIMEOUT)


async def _database(services: Services) -> dict[str, Any]:
    try:
        backlog = await _timed(outbox.due_by_channel(services.pool))
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    oldest = max((row["oldest_due_seconds"] for row in backlog), default=None)
    return {
        "ok": True,
        "pending_messages": sum(row["pending"] for row in backlog),
        "oldest_due_seconds": round(float(oldest), 1) if oldest is not None else None,
        "pending_by_channel": {row["channel"]: row["pending"] for row in backlog},
    }


async def _redis(services: Services) -> dict[str, Any]:
    try:
        await _timed(services.queue.redis.ping())
        depth = await _timed(services.queue.depth())
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, **depth}


async def _worker(services: Services, pending: dict[str, int]) -> dict[str, Any]:
    """Live workers; with any, the channels they send on and whether they agree about them,
    and the channels whose due messages no live worker sends on (they wait, queued)."""
    try:
        workers = await _timed(services.queue.live_worker_channels())
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    if not workers:
        return {"ok": False, "live": 0}
    known = [channels for channels in workers.values() if channels is not None]
    served = set().union(*known)
    result: dict[str, Any] = {
        "ok": True,
        "live": len(workers),
        "channels": {name: sum(name in c for c in known) for name in sorted(served)},
        "agree": len(set(known)) <= 1,
    }
    if len(known) == len(workers):  # a worker that does not say may send on any channel
        unserved = {name: n for name, n in pending.items() if name not in served}
        if unserved:
            result["waiting_for_a_worker"] = unserved
    return result


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


def _no_channel_reaches_anyone(services: Services) -> str | None:
    if services.settings.environment is not Environment.production:
        return None
    if any(not registry.get(name).local for name in services.channels):
        return None
    return "no channel that reaches buyers is enabled"


async def check(services: Services, *, mode: str, detailed: bool = True) -> dict[str, Any]:
    """``detailed`` (the caller gave the secret): each component's own words and counts."""
    names = list(services.channels)
    database, redis, agent, *channel_results = await asyncio.gather(
        _database(services),
        _redis(services),
        _smart_agent(services),
        *(_channel(services, name) for name in names),
    )
    worker = await _worker(services, database.get("pending_by_channel", {}))
    channels = dict(zip(names, channel_results, strict=True))
    problems = [
        problem
        for problem in (
            _no_channel_reaches_anyone(services),
            None if worker.get("agree", True) else "live workers send on different channels",
            # This process takes messages for it, and no live worker sends them. (Messages of a
            # channel enabled nowhere, left from before it was switched off, are only shown.)
            "messages wait for a channel enabled here that no live worker sends on"
            if set(worker.get("waiting_for_a_worker", ())) & set(names)
            else None,
        )
        if problem is not None
    ]
    down = not (database["ok"] and redis["ok"]) or (mode != "web" and not worker["ok"])
    reach = agent["ok"] and all(c["ok"] for c in channels.values())
    whole = worker["ok"] and reach and not problems
    status = "unavailable" if down else "ok" if whole else "degraded"
    if not detailed:
        return {
            "ok": not down,
            "status": status,
            "mode": mode,
            "components": {
                "database": {"ok": database["ok"]},
                "redis": {"ok": redis["ok"]},
                "worker": {"ok": worker["ok"]},
                "platforms": {"ok": reach},
            },
        }
    report: dict[str, Any] = {
        "ok": not down,
        "status": status,
        "version": __version__,
        "mode": mode,
        "components": {
            "database": database,
            "redis": redis,
            "worker": worker,
            "smart_agent": agent,
            "channels": channels,
        },
    }
    if problems:
        report["problems"] = problems
    return report
