"""`doctor`: checks the settings, Postgres, Redis, each enabled channel and the Smart Agent;
says what is wrong, and warns about what works but should not stay so."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gomflow_messaging import db
from gomflow_messaging.channels.registry import build_channel
from gomflow_messaging.queue import redis_client
from gomflow_messaging.smart_agent import SmartAgent

if TYPE_CHECKING:
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


async def _step(name: str, check: Callable[[], Awaitable[str]]) -> Finding:
    try:
        return Finding(name, True, await asyncio.wait_for(check(), 10))
    except TimeoutError:
        return Finding(name, False, "no answer within 10 s")
    except Exception as exc:
        return Finding(name, False, f"{type(exc).__name__}: {str(exc)[:200]}")


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
    findings += [postgres_found, await _step("redis", redis)]
    if settings.smart_agent_enabled:

        async def smart_agent() -> str:
            status = await SmartAgent(settings).health()
            return f"{status} at {where(settings.smart_agent_service_url)}"

        findings.append(await _step("smart agent", smart_agent))
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
                    raise RuntimeError(result.detail)
                return result.detail

            findings.append(await _step(f"channel {name}", channel_check))
    finally:
        await shared_redis.aclose()
        await pool.close()
    return findings


def report(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        label = "FAIL" if not f.ok else "WARN" if f.warning else "ok"
        lines.append(f"[{label}] {f.name}: {f.detail}")
    bad = [f.name for f in findings if not f.ok]
    warned = sum(f.warning for f in findings)
    passed = "all checks passed" + (f" ({warned} warning{'s' * (warned > 1)})" if warned else "")
    lines.append(passed if not bad else f"problems: {', '.join(bad)}")
    return "\n".join(lines)
