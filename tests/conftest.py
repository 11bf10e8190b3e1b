"""Real Postgres and Redis on loopback: a fresh database and queue name for each test run."""

from __future__ import annotations

import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from gomflow_messaging import db
from gomflow_messaging.settings import Settings
from tests.fakes.discord import Signer
from tests.fakes.telegram import FakeTelegram
from tests.helpers import SECRET, TELEGRAM_WEBHOOK_SECRET

ADMIN_URL = os.environ.get(
    "TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


TEST_DB_PREFIX = "gomflow_test_"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


#: Where the claims of Redis databases live (database 0, keys with a time to live).
REDIS_CLAIM_PREFIX = "gomflow-test:redis-db:"
REDIS_CLAIM_TTL = 900  # seconds; renewed while the run lasts (pytest_runtest_setup)
#: Databases a run may take for itself: not 0 (`make dev`), not 10 (`make bench`).
REDIS_FREE_DBS = [n for n in range(1, 16) if n != 10]


def _claimant() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim_alive(holder: bytes | None) -> bool:
    """Whether the run that holds a claim is still running (a claim by a killed run is stale)."""
    if holder is None:
        return False
    host, _, pid = holder.decode().rpartition(":")
    return host != socket.gethostname() or not pid.isdigit() or _alive(int(pid))


def claim_redis_db(server_url: str, explicit: str | None) -> tuple[str, int]:
    """A Redis database for this run alone, as each run has a Postgres database of its own.

    Some tests flush their database (test_recovery, test_drills), so two runs on one machine
    must never share one. ``TEST_REDIS_URL`` names one explicitly (still claimed, so a run
    picking a free one skips it, and a second run naming the same one stops at once); else
    the first empty, unclaimed database of ``REDIS_FREE_DBS`` is claimed with a ``SET NX`` key
    in database 0 that expires, keyed by this process. The session flushes it at the end.
    """
    admin = SyncRedis.from_url(_with_db(server_url, "0"))
    try:
        if explicit is not None:
            number = int(urlsplit(explicit).path.strip("/") or 0)
            key = f"{REDIS_CLAIM_PREFIX}{number}"
            holder = admin.get(key)
            if holder is not None and holder.decode() != _claimant() and _claim_alive(holder):
                raise pytest.UsageError(
                    f"Redis database {number} (TEST_REDIS_URL) is in use by the test run"
                    f" {holder.decode()}; unset TEST_REDIS_URL to take a free one"
                )
            admin.set(key, _claimant(), ex=REDIS_CLAIM_TTL)
            return explicit, number
        for number in REDIS_FREE_DBS:
            key = f"{REDIS_CLAIM_PREFIX}{number}"
            if not admin.set(key, _claimant(), ex=REDIS_CLAIM_TTL, nx=True):
                holder = admin.get(key)
                if _claim_alive(holder):
                    continue
                # A killed run's claim: take it over unless another run just did.
                if admin.getset(key, _claimant()) != holder:
                    continue
                admin.expire(key, REDIS_CLAIM_TTL)
                with SyncRedis.from_url(_with_db(server_url, str(number))) as stale:
                    stale.flushdb()  # what the killed run left
            url = _with_db(server_url, str(number))
            with SyncRedis.from_url(url) as client:
                if client.dbsize() == 0:
                    return url, number
            # Someone uses it without a claim (a helper's TEST_REDIS_URL, an old run): not ours.
            admin.delete(key)
        raise pytest.UsageError("no free Redis database for the tests; set TEST_REDIS_URL")
    finally:
        admin.close()


REDIS_SERVER_URL = os.environ.get("TEST_REDIS_SERVER_URL", "redis://127.0.0.1:6379/0")
REDIS_URL, REDIS_DB = claim_redis_db(REDIS_SERVER_URL, os.environ.get("TEST_REDIS_URL"))
_claim_renewed = time.monotonic()


def pytest_report_header() -> str:
    return f"redis: database {REDIS_DB} ({REDIS_URL})"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Keep this run's claim of its Redis database alive while it runs (every minute)."""
    global _claim_renewed
    if time.monotonic() - _claim_renewed > 60:
        with SyncRedis.from_url(_with_db(REDIS_SERVER_URL, "0")) as admin:
            admin.set(f"{REDIS_CLAIM_PREFIX}{REDIS_DB}", _claimant(), ex=REDIS_CLAIM_TTL)
        _claim_renewed = time.monotonic()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave nothing behind: this run's database emptied, its claim released."""
    with SyncRedis.from_url(REDIS_URL) as client:
        client.flushdb()
    with SyncRedis.from_url(_with_db(REDIS_SERVER_URL, "0")) as admin:
        key = f"{REDIS_CLAIM_PREFIX}{REDIS_DB}"
        if admin.get(key) == _claimant().encode():
            admin.delete(key)


async def drop_stale_test_databases(admin: asyncpg.Connection) -> list[str]:
    """Drop `gomflow_test_<pid>_*` databases whose creating process is gone (a killed run).

    Other runs on this machine (other worktrees, in parallel) keep theirs: their pid is alive.
    """
    names = await admin.fetch(
        "SELECT datname FROM pg_database WHERE datname LIKE $1", TEST_DB_PREFIX + "%"
    )
    dropped = []
    for (name,) in names:
        pid, _, rest = name.removeprefix(TEST_DB_PREFIX).partition("_")
        if not pid.isdigit() or not rest or _alive(int(pid)):
            continue
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        dropped.append(name)
    return dropped


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = f"{TEST_DB_PREFIX}{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await drop_stale_test_databases(admin)
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_db(ADMIN_URL, name)
    await db.migrate(url)
    yield url
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


#: How long what a test run leaves in Redis lives after the run.
LEFTOVER_TTL_SECONDS = 3600


@pytest.fixture(scope="session", autouse=True)
async def redis_keys_expire() -> AsyncIterator[None]:
    """No key of the test database outlives the run forever.

    SAQ keeps a queue's lists and its not-yet-run jobs (each run's queues, the cron jobs
    it scheduled) without expiry: a worker would take them, but a test queue has none once
    the run ends. The database is the runs' own (tests flush it), so every key left without
    an expiry gets one.
    """
    yield
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(count=1000)]
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.ttl(key)
            ttls = await pipe.execute()
        async with client.pipeline(transaction=False) as pipe:
            for key, ttl in zip(keys, ttls, strict=True):
                if ttl == -1:
                    pipe.expire(key, LEFTOVER_TTL_SECONDS)
            await pipe.execute()
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def queue_name() -> str:
    return f"gomflow-test-{secrets.token_hex(4)}"


def settings_for(database_url: str, queue_name: str, /, **overrides: Any) -> Settings:
    """The tests' settings on this run's database and queue; keyword overrides on top."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "service_secret": SECRET,
        "queue_name": queue_name,
        "enable_sandbox": True,
        "dispatch_lease_seconds": 3,
        "dispatch_backoff_base_seconds": 0.1,
        "sweep_interval_seconds": 0.3,
        "dispatch_poll_seconds": 0.3,
        "sweep_grace_seconds": 0.5,
        "shutdown_grace_seconds": 10,
        "worker_concurrency": 10,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def make_settings(database_url: str, queue_name: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return settings_for(database_url, queue_name, **overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    """A small pool of its own, for channels and workflows built without the app."""
    p = await db.create_pool(database_url, max_size=4)
    yield p
    await p.close()


@pytest.fixture
def signer() -> Signer:
    """An Ed25519 key pair that signs interactions as Discord does."""
    return Signer()


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A fake Bot API server on loopback, driven by aiogram through TELEGRAM_API_BASE_URL."""
    server = await FakeTelegram().start()
    yield server
    await server.close()
    # Telegram drops an invalid reply in a webhook response without a word: a test that made
    # one fails here, whatever it asserted (clear ``webhook_answers`` when it is the point).
    assert not server.dropped_answers, [(c.params, c.result) for c in server.dropped_answers]


@pytest.fixture
def telegram_settings(
    make_settings: Callable[..., Settings], fake_telegram: FakeTelegram
) -> Callable[..., Settings]:
    """Settings with Telegram on, pointed at ``fake_telegram``; keyword overrides on top."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "enable_telegram": True,
            "telegram_bot_token": fake_telegram.token,
            "telegram_webhook_secret": TELEGRAM_WEBHOOK_SECRET,
            "telegram_api_base_url": fake_telegram.url,
        }
        return make_settings(**{**values, **overrides})

    return make


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await db.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def demo(conn: asyncpg.Connection) -> dict[str, Any]:
    from gomflow_messaging import demo as demo_data

    return await demo_data.seed(conn)


def unique_text(prefix: str = "msg") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
