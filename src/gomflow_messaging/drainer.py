"""The drainer: a worker's loop, one per channel, that claims and sends the channel's due messages.

It waits for the channel's doorbell (rung in Redis by whatever makes a message due: a notify,
a fallback to this channel, the sweeper) or for its poll, then claims the due messages in
batches (`FOR UPDATE SKIP LOCKED`, oldest first) for as long as its budget lets it, handing
each batch to the dispatcher to send while it claims the next. A thousand notifies rung
while it works cost one more claim, not a thousand jobs.

The poll makes the doorbell a shortcut, never a condition: with Redis away, or a ring lost
(a worker killed between taking it and claiming), a due message (a scheduled send, a retry,
a lease run out) is still claimed within DISPATCH_POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from gomflow_messaging.dispatcher import DB_GONE, Budget

if TYPE_CHECKING:
    import asyncpg

    from gomflow_messaging.dispatcher import Dispatcher
    from gomflow_messaging.logs import Outage

log = logging.getLogger(__name__)

#: After an error the loop waits this long before it looks again.
PAUSE_AFTER_ERROR = 1.0


class Drainer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        channel: str,
        *,
        redis_outage: Outage,
        postgres_outage: Outage,
    ) -> None:
        settings = dispatcher.settings
        self.dispatcher = dispatcher
        self.channel = channel
        self._size = settings.worker_concurrency
        self._poll = settings.dispatch_poll_seconds
        #: Messages of this channel held claimed at once, by this process.
        self.budget = Budget(self._size)
        self._redis_outage = redis_outage
        self._postgres_outage = postgres_outage
        self._sends: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"drainer-{self.channel}")

    async def stop(self, grace: float) -> None:
        """Claim no more, then let the sends in flight end (up to ``grace`` seconds). The loop
        is not cut in the middle of a claim: it sees the stop within one poll. A send cut off
        keeps its lease; a worker claims the message again once the lease runs out."""
        self._stopping = True
        deadline = time.monotonic() + grace
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), max(grace, self._poll + 1))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sends:
            await asyncio.wait(self._sends, timeout=max(deadline - time.monotonic(), 0.1))
        for task in list(self._sends):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping:
            if self._pacing_away():
                # Its sends need the pacer's Redis: claim again once Redis answers, and not
                # before a poll (a Redis that answers but cannot pace, out of memory or read
                # only, then costs a batch a poll, not a busy loop).
                await asyncio.sleep(self._poll)
                if not await self.dispatcher.queue.ping():
                    continue
                self.dispatcher.pacing_away.discard(self.channel)
            try:
                await self._drain()
            except DB_GONE as exc:
                self._postgres_outage.failed(exc)
                await asyncio.sleep(PAUSE_AFTER_ERROR)
                continue
            except Exception:
                log.exception("claiming %s messages failed", self.channel)
                await asyncio.sleep(PAUSE_AFTER_ERROR)
                continue
            if self._stopping:
                return
            self._postgres_outage.ok()  # it claimed: said now, not at the sweeper's next round
            try:
                rang = await self._wait()
            except (RedisError, OSError) as exc:
                self._redis_outage.failed(exc)
                await asyncio.sleep(min(self._poll, PAUSE_AFTER_ERROR))
                continue
            if rang and self._stopping:
                # Taken while stopping, so never answered here: another worker's to answer.
                await self.dispatcher.queue.ring([self.channel])

    async def _drain(self) -> None:
        """Claim and send until a claim comes back short (nothing more is due now), or a send
        finds the pacer's Redis away."""
        while not self._stopping and not self._pacing_away():
            got = await self.budget.take(self._size)
            if self._stopping:  # told while it waited for places: a new batch would be cut off
                self.budget.give(got)
                return
            try:
                rows, claimed_at = await self.dispatcher.claim_due(self.channel, got)
            except BaseException:
                self.budget.give(got)
                raise
            self.budget.give(got - len(rows))
            if rows:
                task = asyncio.create_task(self._send(rows, claimed_at))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            if len(rows) < got:
                return

    def _pacing_away(self) -> bool:
        return self.channel in self.dispatcher.pacing_away

    async def _send(self, rows: list[asyncpg.Record], claimed_at: float) -> None:
        try:
            await self.dispatcher.send_claimed(rows, claimed_at, self.budget)
        except DB_GONE as exc:
            # An outcome could not be written before its lease ran out: the message is
            # claimed again once it has, and the attempt stays on record.
            self._postgres_outage.failed(exc)
        except Exception:
            log.exception("sending %d %s message(s) failed", len(rows), self.channel)

    async def _wait(self) -> bool:
        """Until the doorbell rings (True: the ring is taken), a retry this process scheduled
        is due, or the poll."""
        timeout = self._poll
        retry = self.dispatcher.next_retry.get(self.channel)
        if retry is not None:
            left = retry - time.monotonic()
            if left <= 0:
                del self.dispatcher.next_retry[self.channel]
                return False
            timeout = min(timeout, left)
        # Redis reads a zero timeout as "forever".
        rang = await self.dispatcher.queue.wait_for_ring(self.channel, max(timeout, 0.01))
        self._redis_outage.ok()
        return rang
