"""Group commit: items that arrive while a write is in flight go together in the next write.

The dispatcher records sent messages this way, and the sandbox stores what it is sent: a
statement per few items instead of one each, and no item waits for a batch to fill. Each
caller gets its own item's result (or error); a caller that stops waiting (its timeout)
does not cancel a write that others share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Writes the items and gives, in their order, each one's result or the error it alone met.
Write = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Write[T, R]) -> None:
        self._write = write
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, item: T) -> R:
        """Write ``item`` with whatever else is waiting; its result once written."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._writer is None or self._writer.done():
            # Started on the next turn of the loop, so the items of this turn join the write.
            self._writer = asyncio.create_task(self._drain())
        return await done

    async def close(self) -> None:
        """Wait for the writes in flight."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await self._write([item for item, _ in batch])
            except Exception as exc:  # the whole write failed: each caller hears why
                outcomes = [exc] * len(batch)
            except BaseException:  # cancelled (the loop is closing): nobody is left waiting
                for _, done in [*batch, *self._pending]:
                    done.cancel()
                self._pending = []
                raise
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue  # its caller stopped waiting
                if isinstance(outcome, BaseException):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)
