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

SECRET = "test-secret-test-secret-test-secret-0001"
AUTH = {"Authorization": f"Bearer {SECRET}"}


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


@contextlib.asynccontextmanager
async def running_app(settings: Settings, mode: str = "serve") -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, mode=mode)  # type: ignore[arg-type]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30
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
