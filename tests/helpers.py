"""Test helpers: polling without fixed sleeps, a cuttable TCP proxy, running the app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from gomflow_messaging.app import create_app
from gomflow_messaging.settings import Settings
from tests.fakes.telegram import FakeTelegram

SECRET = "test-secret-test-secret-test-secret-0001"
AUTH = {"Authorization": f"Bearer {SECRET}"}
#: The secret the ``telegram_settings`` fixture registers; webhook posts send it.
TELEGRAM_WEBHOOK_SECRET = "test-webhook-secret_0123456789"


async def eventually(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 15.0,
    interval: float = 0.05,
) -> Any:
    """Poll until ``check`` returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def quiet(seconds: float = 0.5) -> None:
    """A bounded window in which nothing more should arrive (a duplicate, a second delivery).

    The only way to show that something does NOT happen is to watch for a while: there is no
    event to wait on for an absence. Each caller first waits for what must happen
    (``eventually``); this window then gives a duplicate in flight (a retried job, a second
    worker's send) time to land before the caller counts. Every such window is this helper.
    """
    await asyncio.sleep(seconds)


async def sweepable(conn: Any, text: str, grace_seconds: float, count: int = 1) -> bool:
    """The ``count`` queued messages with this text are past the sweeper's grace, by its own
    rule (``outbox.stuck_messages``) and Postgres's clock: what a test waits for instead of
    sleeping out the grace."""
    return bool(
        await conn.fetchval(
            "SELECT count(*) = $3 FROM messages WHERE body->>'text' = $1 AND status = 'queued'"
            " AND next_attempt_at <= now() - make_interval(secs => $2)",
            text,
            grace_seconds,
            count,
        )
    )


async def wait_status(client: httpx.AsyncClient, message_id: str, *statuses: str) -> dict[str, Any]:
    """The message as ``GET /api/messages/{id}`` shows it, once its status is one of these."""

    async def check() -> dict[str, Any] | None:
        body: dict[str, Any] = (
            await client.get(f"/api/messages/{message_id}", headers=AUTH)
        ).json()
        return body if body["status"] in statuses else None

    result: dict[str, Any] = await eventually(check)
    return result


@contextlib.asynccontextmanager
async def running_app(settings: Settings, mode: str = "serve") -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, mode=mode)  # type: ignore[arg-type]

    async def telegram_answers(response: httpx.Response) -> None:
        """Every reply carried in a /webhook/telegram response meets the fake Bot API's rules,
        as Telegram applies them (an invalid one is dropped: `FakeTelegram.webhook_answer`)."""
        if response.request.url.path != "/webhook/telegram" or response.status_code != 200:
            return
        fake = FakeTelegram.at(settings.telegram_api_base_url)
        body = json.loads(await response.aread() or b"{}")
        if fake is not None and isinstance(body, dict) and body.get("method"):
            fake.webhook_answer(body)

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            timeout=30,
            event_hooks={"response": [telegram_answers]},
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client


class TcpProxy:
    """A loopback TCP proxy to Postgres or Redis that a test can cut, like a network fault."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)

    def freeze(self) -> None:
        """Hold every byte, both ways, on open and new connections alike, with no error or
        reset: a peer gone silent, as behind a network partition."""
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def close(self) -> None:
        await self.cut()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


async def queued_jobs(redis: Redis, queue: str) -> list[list[str]]:
    """The message ids each job waiting in SAQ's queue carries."""
    jobs = []
    for job_id in await redis.lrange(f"saq:{queue}:queued", 0, -1):  # type: ignore[misc]
        kwargs = json.loads(await redis.get(job_id))["kwargs"]
        jobs.append(kwargs.get("message_ids", [kwargs.get("message_id")]))
    return jobs
