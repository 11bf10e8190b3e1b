"""`doctor`: checks the settings, Postgres, Redis, the live workers, each enabled channel and
the Smart Agent; says what is wrong, and warns about what works but should not stay so (a
platform or the agent unreachable now, workers that disagree about their channels)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gomflow_messaging import db, outbox
from gomflow_messaging.channels.registry import build_channel
from gomflow_messaging.queue import live_worker_channels, redis_client
from gomflow_messaging.smart_agent import AgentUnavailable, SmartAgent

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from gomflow_messaging.settings import Settings


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    #: Works, but should not stay so (printed as WARN; doctor still passes).
    warning: bool = False


def agent_credential(settings: Settings) -> Finding | None:
    """Without SMART_AGENT_API_KEY receipts go out with no credential (production refuses to
    start that way; SERVICE_SECRET is never sent in its place)."""
    if settings.smart_agent_enabled and settings.smart_agent_api_key is None:
        return Finding(
            "smart agent credential",
            True,
            "SMART_AGENT_API_KEY is unset, so receipts go to the agent with no credential "
            "(SERVICE_SECRET is never sent); production refuses to start like this",
            warning=True,
        )
    return None


def where(url: str) -> str:
    """host:port/db of a URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or ''}{parts.path}"


class Away(Exception):
    """Unreachable now (network, 5xx, timeout), not refused: a warning, not a failure."""


async def _step(
    name: str, check: Callable[[], Awaitable[str]], *, away_warns: bool = False
) -> Finding:
    """``away_warns``: the service runs degraded without this part (messages wait in the
    outbox, receipts go to the GOM), so its being unreachable now is a warning."""
    try:
        return Finding(name, True, await asyncio.wait_for(check(), 10))
    except TimeoutError:
        return Finding(name, away_warns, "no answer within 10 s", warning=away_warns)
    except Away as exc:
        return Finding(name, True, str(exc), warning=True)
    except Exception as exc:
        return Finding(name, False, f"{type(exc).__name__}: {str(exc)[:200]}")


def _agent_away(exc: AgentUnavailable) -> bool:
    return exc.code.startswith(("network", "timeout", "http_5"))


async def run(settings: Settings) -> list[Finding]:
    findings = [
        Finding(
            "settings",
            True,
            f"{settings.environment.value}; channels: "
            f"{', '.join(settings.enabled_channels) or 'none'}",
        )
    ]
    findings += [Finding("settings", True, text, warning=True) for text in settings.warnings()]

    async def postgres() -> str:
        conn = await db.connect(settings.database_url)
        try:
            version = await conn.fetchval("SHOW server_version")
            applied = (
                {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
                if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
                else set()
            )
        finally:
            await conn.close()
        pending = [
            p.name for p in sorted(db.migrations_dir().glob("*.sql")) if p.name not in applied
        ]
        if pending:
            raise RuntimeError(
                f"migrations not applied: {', '.join(pending)}; run `gomflow-messaging migrate`"
            )
        return f"PostgreSQL {version} at {where(settings.database_url)}, schema up to date"

    async def redis() -> str:
        client = redis_client(settings.redis_url)
        try:
            info = await client.info("server")
        finally:
            await client.aclose()
        return f"Redis {info.get('redis_version')} at {where(settings.redis_url)}"

    credential = agent_credential(settings)
    if credential is not None:
        findings.append(credential)
    postgres_found = await _step("postgres", postgres)
    redis_found = await _step("redis", redis)
    findings += [postgres_found, redis_found]
    if settings.smart_agent_enabled:

        async def smart_agent() -> str:
            at = where(settings.smart_agent_service_url)
            try:
                status = await SmartAgent(settings).health()
            except AgentUnavailable as exc:
                if _agent_away(exc):
                    raise Away(
                        f"unreachable now at {at} ({exc}): receipts go to the GOM meanwhile"
                    ) from None
                raise
            return f"{status} at {at}"

        findings.append(await _step("smart agent", smart_agent, away_warns=True))
    if not postgres_found.ok:
        return findings
    pool = await db.create_pool(settings.database_url, max_size=2)
    shared_redis = redis_client(settings.redis_url)
    try:
        for name in settings.enabled_channels:

            async def channel_check(name: str = name) -> str:
                channel = build_channel(name, settings, pool, shared_redis)
                await channel.start()
                try:
                    result = await channel.health()
                finally:
                    await channel.close()
                if not result.ok:
                    raise (Away if result.away else RuntimeError)(result.detail)
                return result.detail

            findings.append(await _step(f"channel {name}", channel_check, away_warns=True))
        if redis_found.ok:
            findings.append(await _workers(settings, pool, shared_redis))
    finally:
        await shared_redis.aclose()
        await pool.close()
    return findings


async def _workers(settings: Settings, pool: db.Pool, redis: Redis) -> Finding:
    """The live workers on this queue: whether they agree about their channels, and whether
    messages wait for a channel none of them sends on."""
    name = "workers"
    try:
        workers = await live_worker_channels(redis, settings.queue_name)
        pending = {row["channel"]: row["pending"] for row in await outbox.due_by_channel(pool)}
    except Exception as exc:
        return Finding(name, False, f"{type(exc).__name__}: {str(exc)[:200]}")
    if not workers:
        return Finding(name, True, f"none live on queue {settings.queue_name} now")
    known = [s for s in workers.values() if s is not None]
    served = set().union(*known)
    said = "; ".join(sorted({", ".join(sorted(s)) or "no channel" for s in known}))
    problems = []
    if len(set(known)) > 1:
        problems.append(
            f"live workers send on different channels ({said}): a rolling deploy "
            "in progress, or ENABLE_* set differently"
        )
    if len(known) == len(workers):
        waiting = {c: n for c, n in pending.items() if c not in served}
        if waiting:
            problems.append(
                "messages wait for a channel no live worker sends on: "
                + ", ".join(f"{c} ({n})" for c, n in sorted(waiting.items()))
            )
    if problems:
        return Finding(name, True, "; ".join(problems), warning=True)
    return Finding(name, True, f"{len(workers)} live, sending on {said or 'channels not said'}")


def report(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        label = "FAIL" if not f.ok else "WARN" if f.warning else "ok"
        lines.append(f"[{label}] {f.name}: {f.detail}")
    bad = [f.name for f in findings if not f.ok]
    warned = list(dict.fromkeys(f.name for f in findings if f.warning))
    if bad:
        lines.append(f"problems: {', '.join(bad)}")
    elif warned:
        count = sum(f.warning for f in findings)
        lines.append(
            f"no check failed, but {count} warning{'s' * (count > 1)}: {', '.join(warned)}"
        )
    else:
        lines.append("all checks passed")
    return "\n".join(lines)
