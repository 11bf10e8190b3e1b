"""The dispatcher: delivers claimed outbox messages through their channels.

A worker's drainer (`drainer.py`) claims the due messages of a channel in batches, in one
statement each; they are sent concurrently (each send under its channel's pacer), and the
sends that succeeded are recorded together as they finish (`GroupCommit`: the outcomes that
arrive while a write is in flight go in the next one), so a message costs a fraction of a
queue job and of the round trips of one claimed alone. The SAQ jobs of an older web replica
(one message id, or a batch of them) are claimed by id and sent the same way."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import asyncpg

from gomflow_messaging import metrics, outbox
from gomflow_messaging.channels import pacing
from gomflow_messaging.channels.base import OutboundMessage
from gomflow_messaging.errors import ChannelError, PermanentError, SkipMessage, TransientError
from gomflow_messaging.group_commit import GroupCommit
from gomflow_messaging.logs import request_id_var

if TYPE_CHECKING:
    from gomflow_messaging.channels.base import Channel
    from gomflow_messaging.db import Pool
    from gomflow_messaging.queue import JobQueue
    from gomflow_messaging.settings import Settings

log = logging.getLogger(__name__)

# A job that runs a little before its row is due (clocks of two machines) waits this long.
_EARLY_WAIT_LIMIT = 5.0

# Postgres going away for a moment (a restart, a failover, a network blip).
DB_GONE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)

T = TypeVar("T")


@dataclass(frozen=True)
class _Sent:
    message_id: UUID
    attempt_id: int
    provider_message_id: str
    channel: str
    attempt: int
    created_at: datetime


class Budget:
    """How many messages may be held claimed at once (the worker's concurrency, per drainer
    and for the SAQ jobs): a worker killed at any moment leaves at most that many to be
    attempted again, and a claim never takes more than its channel's pacer can send before
    the lease runs out."""

    def __init__(self, size: int) -> None:
        self._free = size
        # A batch waits for half the budget rather than claiming the one place just given
        # back: claims of one or two would cost a statement each, as before batching.
        self._least = max(size // 2, 1)
        self._changed = asyncio.Event()

    async def take(self, want: int) -> int:
        """Up to ``want`` places: at least half the budget (or ``want``), waiting for them."""
        while self._free < min(want, self._least):
            self._changed.clear()
            await self._changed.wait()
        got = min(want, self._free)
        self._free -= got
        return got

    def give(self, count: int = 1) -> None:
        if count:
            self._free += count
            self._changed.set()


@dataclass
class Dispatcher:
    settings: Settings
    pool: Pool
    queue: JobQueue
    channels: dict[str, Channel]
    worker_id: str = "local"
    #: Per channel, the earliest retry this process scheduled (time.monotonic()): its
    #: drainer looks again then, rather than at its next poll.
    next_retry: dict[str, float] = field(default_factory=dict)
    #: Channels whose last send found the pacer's Redis away: their drainer claims again only
    #: once Redis answers (each claim until then would fail the same way).
    pacing_away: set[str] = field(default_factory=set)
    _budget: Budget = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._budget = Budget(self.settings.worker_concurrency)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter, capped; attempt 1 waits about the base."""
        base = self.settings.dispatch_backoff_base_seconds * (2 ** max(attempt - 1, 0))
        capped: float = min(base, self.settings.dispatch_backoff_max_seconds)
        return capped * random.uniform(0.8, 1.2)

    async def _durably(self, write: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Record an outcome, retrying while Postgres is away and the lease still holds.

        After a send, losing this write would let the lease run out and the message go
        out twice; each write is safe to repeat (it only moves a row still 'sending').
        """
        pause = 0.1
        while True:
            try:
                return await write()
            except DB_GONE as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("recording an outcome: Postgres away (%s)", type(exc).__name__)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _sent_log(self, deadline: float) -> GroupCommit[_Sent, None]:
        """Records the sent messages of one claim in as few statements as possible, each as
        soon as possible: a send never waits for the slowest of its batch to be recorded (a
        worker killed meanwhile would have its lease run out and the message sent twice)."""

        async def record(batch: list[_Sent]) -> list[None]:
            rows = [(b.message_id, b.attempt_id, b.provider_message_id) for b in batch]
            await self._durably(lambda: outbox.finish_sent_many(self.pool, rows), deadline)
            now = datetime.now(UTC)
            for b in batch:
                latency = (now - b.created_at).total_seconds()
                metrics.MESSAGES.labels(b.channel, "sent").inc()
                metrics.DELIVERY_LATENCY.labels(b.channel).observe(max(latency, 0.0))
                log.info(
                    "message %s sent on %s (attempt %d, %.3fs after it was accepted)",
                    b.message_id,
                    b.channel,
                    b.attempt,
                    latency,
                    extra={"message_id": str(b.message_id), "channel": b.channel},
                )
            return [None] * len(batch)

        return GroupCommit(record)

    async def deliver(self, message_id: UUID) -> dict[str, Any]:
        token = request_id_var.set("")
        await self._budget.take(1)
        try:
            return await self._deliver(message_id)
        finally:
            self._budget.give(1)
            request_id_var.reset(token)

    @property
    def channel_names(self) -> list[str]:
        """The channels this worker sends on: it claims messages of these only."""
        return list(self.channels)

    async def _hand_over(self, unclaimed: list[UUID]) -> int:
        """Messages not claimed because their channel is not enabled here are never failed
        here (a rolling deploy turning a channel on shares the queue): their channel's
        doorbell is rung for a worker that has it (a ring waits for the first such worker).
        Returns how many were left to others."""
        foreign = await outbox.due_elsewhere(self.pool, unclaimed, self.channel_names)
        if foreign:
            await self.queue.ring({channel for _, channel in foreign})
        return len(foreign)

    async def _deliver(self, message_id: UUID) -> dict[str, Any]:
        lease = self.settings.dispatch_lease_seconds
        claimed_at = time.monotonic()
        channels = self.channel_names
        row = await outbox.claim(self.pool, message_id, lease, self.worker_id, channels)
        if row is None:
            due = await outbox.not_due_until(self.pool, message_id)
            if due is not None:
                wait = (due - datetime.now(UTC)).total_seconds()
                if wait > _EARLY_WAIT_LIMIT:
                    return {"result": "not_due"}
                await asyncio.sleep(max(wait, 0) + 0.01)
                row = await outbox.claim(self.pool, message_id, lease, self.worker_id, channels)
        if row is None:
            if await self._hand_over([message_id]):
                return {"result": "handed_over"}
            return {"result": "not_claimed"}
        return await self._attempt(row, self._sent_log(claimed_at + lease * 0.9))

    async def deliver_batch(self, message_ids: list[UUID]) -> dict[str, Any]:
        """An older web replica's job: claim the due ones of these messages together (as
        many at a time as the budget allows) and send them concurrently."""
        token = request_id_var.set("")
        lease = self.settings.dispatch_lease_seconds
        counts: Counter[str] = Counter()
        remaining = list(message_ids)
        try:
            while remaining:
                got = await self._budget.take(len(remaining))
                group, remaining = remaining[:got], remaining[got:]
                claimed_at = time.monotonic()
                try:
                    rows = await outbox.claim_many(
                        self.pool, group, lease, self.worker_id, self.channel_names
                    )
                except BaseException:
                    self._budget.give(got)
                    raise
                self._budget.give(got - len(rows))
                if len(rows) < got:
                    claimed = {row["id"] for row in rows}
                    handed = await self._hand_over([m for m in group if m not in claimed])
                    if handed:
                        counts["handed_over"] += handed
                    counts["not_claimed"] += got - len(rows) - handed
                counts.update(await self.send_claimed(rows, claimed_at, self._budget))
        finally:
            request_id_var.reset(token)
        return dict(counts)

    async def claim_due(self, channel: str, limit: int) -> tuple[list[asyncpg.Record], float]:
        """Up to ``limit`` of the messages due on ``channel`` (ours), claimed, and when."""
        claimed_at = time.monotonic()
        lease = self.settings.dispatch_lease_seconds
        rows = await outbox.claim_due(self.pool, channel, limit, lease, self.worker_id)
        return rows, claimed_at

    async def send_claimed(
        self, rows: list[asyncpg.Record], claimed_at: float, budget: Budget
    ) -> Counter[str]:
        """Send these claimed messages concurrently; each one's place in ``budget`` is given
        back once its outcome is recorded. Every attempt runs to its end (the sent ones
        recorded, before their lease ends) before an error rises."""
        lease = self.settings.dispatch_lease_seconds
        sent_log = self._sent_log(claimed_at + lease * 0.9)
        results = await asyncio.gather(
            *(self._attempt_then_give(row, sent_log, budget) for row in rows),
            return_exceptions=True,
        )
        counts: Counter[str] = Counter()
        for result in results:
            if isinstance(result, BaseException):
                raise result
            counts[str(result["result"])] += 1
        return counts

    async def _attempt_then_give(
        self, row: asyncpg.Record, sent_log: GroupCommit[_Sent, None], budget: Budget
    ) -> dict[str, Any]:
        try:
            return await self._attempt(row, sent_log)
        finally:
            budget.give(1)

    async def _attempt(
        self, row: asyncpg.Record, sent_log: GroupCommit[_Sent, None]
    ) -> dict[str, Any]:
        """One claimed attempt: send, then record how it went (before the lease ends)."""
        message_id: UUID = row["id"]
        lease = self.settings.dispatch_lease_seconds
        request_id_var.set(row["request_id"] or "")
        attempt = int(row["attempts"])
        attempt_id = int(row["attempt_id"])
        channel_name = row["channel"]
        if attempt > self.settings.dispatch_max_attempts:
            await outbox.finish_failed(
                self.pool,
                message_id,
                attempt_id,
                reason="too_many_attempts",
                error=f"gave up after {attempt - 1} attempts",
            )
            return {"result": "failed", "reason": "too_many_attempts"}
        channel = self.channels[channel_name]  # claimed only on a channel of ours
        message = OutboundMessage.from_body(message_id, row["address"], row["body"])
        # Leave time to record the outcome before the lease runs out.
        send_timeout = max(lease * 0.8, 1.0)
        try:
            async with asyncio.timeout(send_timeout):  # no task per send, unlike wait_for
                result = await channel.send(message)
        except (SkipMessage, PermanentError) as exc:
            if isinstance(exc, PermanentError) and exc.address_unreachable:
                await outbox.mark_address_unreachable(
                    self.pool, channel_name, row["address"], exc.code or "unreachable"
                )
            return await self._give_up(message_id, attempt_id, channel_name, exc)
        except TransientError as exc:
            if exc.code == "rate_limited":
                metrics.RATE_LIMITED.labels(channel_name).inc()
            return await self._retry(
                message_id,
                attempt,
                attempt_id,
                exc.code or "transient",
                exc.message,
                exc.retry_after,
                channel_name,
            )
        except TimeoutError:
            return await self._retry(
                message_id,
                attempt,
                attempt_id,
                "timeout",
                f"no answer from {channel_name} within {send_timeout:.0f}s",
                None,
                channel_name,
            )
        except Exception as exc:  # an adapter bug must not lose the message
            log.exception("adapter %s raised unexpectedly", channel_name)
            return await self._retry(
                message_id,
                attempt,
                attempt_id,
                "internal_error",
                type(exc).__name__,
                None,
                channel_name,
            )
        # Outcomes must be written before the lease ends, or another worker may resend.
        await sent_log.add(
            _Sent(
                message_id,
                attempt_id,
                result.provider_message_id,
                channel_name,
                attempt,
                row["created_at"],
            )
        )
        return {"result": "sent"}

    async def _give_up(
        self, message_id: UUID, attempt_id: int, channel_name: str, exc: ChannelError
    ) -> dict[str, Any]:
        """This address will not do: try the person's next one, else end the message
        (skipped when the channel declined by rule, failed otherwise)."""
        skipped = isinstance(exc, SkipMessage)
        reason = exc.code or ("skipped" if skipped else "rejected")
        moved = await outbox.fall_back(
            self.pool, message_id, attempt_id, reason=reason, error=f"{channel_name}: {exc.message}"
        )
        if moved is not None:
            metrics.MESSAGES.labels(channel_name, "fallback").inc()
            await self.queue.ring([moved["channel"]])
            log.info(
                "message %s not sent on %s (%s); trying %s next",
                message_id,
                channel_name,
                reason,
                moved["channel"],
            )
            return {"result": "fallback", "channel": moved["channel"]}
        if skipped:
            await outbox.finish_skipped(
                self.pool, message_id, attempt_id, reason=reason, error=exc.message
            )
        else:
            await outbox.finish_failed(
                self.pool, message_id, attempt_id, reason=reason, error=exc.message
            )
        outcome = "skipped" if skipped else "failed"
        metrics.MESSAGES.labels(channel_name, outcome).inc()
        log.info(
            "message %s %s on %s: %s",
            message_id,
            outcome,
            channel_name,
            reason,
            extra={"message_id": str(message_id), "channel": channel_name},
        )
        return {"result": outcome, "reason": reason}

    async def _retry(
        self,
        message_id: UUID,
        attempt: int,
        attempt_id: int,
        code: str,
        error: str,
        retry_after: float | None,
        channel_name: str,
    ) -> dict[str, Any]:
        # Redis away stopped the send in the pacer: the platform was never asked, so it is
        # no attempt towards giving up (found in Postgres by the drainers' poll, the message
        # would otherwise fail within minutes of Redis going; its job used to wait in Redis).
        paced_out = code == pacing.UNAVAILABLE
        if paced_out:
            self.pacing_away.add(channel_name)
        elif attempt >= self.settings.dispatch_max_attempts:
            await outbox.finish_failed(
                self.pool, message_id, attempt_id, reason=code, error=error, outcome="transient"
            )
            metrics.MESSAGES.labels(channel_name, "failed").inc()
            return {"result": "failed", "reason": code}
        metrics.RETRIES.labels(channel_name, code).inc()
        metrics.MESSAGES.labels(channel_name, "retry").inc()
        delay = self.backoff(attempt)
        if retry_after is not None:
            # The platform named its wait: never sooner, and not much later.
            delay = max(retry_after, min(delay, retry_after + 1.0))
        next_at = await outbox.finish_retry(
            self.pool,
            message_id,
            attempt_id,
            delay_seconds=delay,
            error_code=code,
            error=error,
            retry_after=retry_after,
            counted=not paced_out,
        )
        if next_at is None:
            return {"result": "lease_lost"}  # another worker took it over meanwhile
        # This worker's drainer looks again when it is due (any worker's poll would too).
        due = time.monotonic() + max((next_at - datetime.now(UTC)).total_seconds(), 0.0)
        self.next_retry[channel_name] = min(self.next_retry.get(channel_name, due), due)
        log.info(
            "message %s retry %d in %.1fs (%s)",
            message_id,
            attempt,
            delay,
            code,
            extra={"message_id": str(message_id), "channel": channel_name},
        )
        return {"result": "retry", "delay": round(delay, 3), "code": code}

    async def sweep(self) -> list[str]:
        """Ring the doorbell of every channel with a message overdue (due for longer than
        the grace and not taken: its ring was lost, or it waits for a worker with its
        channel, or its worker died holding it). Returns the channels rung."""
        channels = await outbox.overdue_channels(self.pool, self.settings.sweep_grace_seconds)
        if channels and await self.queue.ring(channels):
            log.info("sweeper rang %s", ", ".join(channels))
            return channels
        return []
