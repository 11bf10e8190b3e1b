"""Migrations: applied once each, in order, safe when two replicas start together."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import asyncpg
import pytest

from gomflow_messaging import db
from tests.conftest import ADMIN_URL, _with_db


@pytest.fixture
async def fresh_db() -> str:
    name = f"gomflow_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield _with_db(ADMIN_URL, name)
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_applied_twice_is_a_no_op(fresh_db: str) -> None:
    first = await db.migrate(fresh_db)
    assert first == sorted(p.name for p in db.migrations_dir().glob("*.sql"))
    assert await db.migrate(fresh_db) == []
    conn = await db.connect(fresh_db)
    try:
        rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [r["name"] for r in rows] == first
    finally:
        await conn.close()


async def test_two_replicas_migrating_at_once(fresh_db: str) -> None:
    results = await asyncio.gather(*(db.migrate(fresh_db) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(p.name for p in db.migrations_dir().glob("*.sql"))


async def test_core_tables_are_left_alone(fresh_db: str) -> None:
    conn = await db.connect(fresh_db)
    try:
        # The real core database already has its own orders table: we must not touch it.
        await conn.execute("CREATE TABLE profiles (id uuid PRIMARY KEY, name text, note text)")
        await conn.execute("INSERT INTO profiles VALUES (gen_random_uuid(), 'kept', 'core')")
    finally:
        await conn.close()
    await db.migrate(fresh_db)
    conn = await db.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT note FROM profiles") == "core"
    finally:
        await conn.close()


async def test_changed_migration_is_refused(fresh_db: str, tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("CREATE TABLE a (id int);")
    await db.migrate(fresh_db, tmp_path)
    (tmp_path / "001_a.sql").write_text("CREATE TABLE a (id bigint);")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await db.migrate(fresh_db, tmp_path)
