"""Postgres through asyncpg: the pool, with JSON codecs, and the migration runner."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg

log = logging.getLogger(__name__)

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)

# A fixed advisory lock id so that replicas starting together migrate one at a time.
_MIGRATION_LOCK = 0x6F6D_666C_6F77  # "omflow"


def migrations_dir() -> Path:
    """The SQL files: `migrations/` of the checkout, else of the working directory."""
    for candidate in (
        Path(__file__).resolve().parents[2] / "migrations",  # a checkout (editable install)
        Path.cwd() / "migrations",  # the container's working directory
    ):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("no migrations/ directory found next to the package or in the cwd")


async def _init_connection(conn: Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Pooled connections hold no session state (no SET, LISTEN or session advisory lock;
    idempotency uses transaction-scoped locks), so asyncpg's reset query, one more round
    trip on every release, is skipped. An open transaction is still rolled back."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=30,
        timeout=5,
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection[asyncpg.Record]:
    conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(dsn, timeout=5)
    await _init_connection(conn)
    return conn


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


async def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply every SQL file not yet applied, in name order, under an advisory lock.

    Returns the names applied by this call. A file changed after it was applied is
    refused: migrations are append-only.
    """
    directory = directory or migrations_dir()
    files = sorted(directory.glob("*.sql"))
    applied_now: list[str] = []
    conn = await connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            done = {
                r["name"]: r["checksum"]
                for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")
            }
            for path in files:
                sql = path.read_text(encoding="utf-8")
                checksum = _checksum(sql)
                if path.name in done:
                    if done[path.name] != checksum:
                        raise RuntimeError(
                            f"migration {path.name} changed after it was applied; "
                            "add a new file instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                        path.name,
                        checksum,
                    )
                log.info("applied migration %s", path.name)
                applied_now.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now


def record(row: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None
