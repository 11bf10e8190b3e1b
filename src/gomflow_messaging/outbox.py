"""The outbox: one row per message, written before it is enqueued; every attempt recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging.settings import CHANNEL_NAMES

if TYPE_CHECKING:
    import asyncpg

    from gomflow_messaging.db import Connection, Pool

FINAL_STATUSES = frozenset({"sent", "delivered", "read", "failed", "skipped"})


@dataclass
class PlannedMessage:
    """A message a workflow decided to send (or to skip, with the reason)."""

    channel: str
    address: str
    event: str
    body: dict[str, Any]
    locale: str = "en"
    contact_id: UUID | None = None
    status: str = "queued"
    status_reason: str | None = None
    next_attempt_at: datetime | None = None
    #: Other addresses to try, in order, if this one fails permanently.
    routes: list[dict[str, str]] = field(default_factory=list)
    #: The order the message is about (the recipient's submission's), if any.
    order_id: UUID | None = None


# The notification and its audit row; both statements below start with it.
_NOTIFICATION_CTE = """
    WITH n AS (
        INSERT INTO notifications (event, data, locale, send_at, source, request_id)
        {notification} RETURNING id
    ), audit AS (
        INSERT INTO audit_log (direction, actor, action, subject, result, detail)
        SELECT 'admin', $5, 'notify', n.id::text, 'accepted', $7::jsonb FROM n
    )
"""
_NOTIFICATION = "VALUES ($1, $2::jsonb, $3, $4, $5, $6)"
# Only while none of the addresses ($19, $20) belongs to a contact: the caller planned for
# strangers, and the check and the insert see one snapshot (casts: SELECT infers no types).
_NOTIFICATION_UNLESS_KNOWN = """
        SELECT $1::text, $2::jsonb, $3::text, $4::timestamptz, $5::text, $6::text
         WHERE NOT EXISTS (SELECT 1 FROM contact_addresses ca
                             JOIN unnest($19::text[], $20::text[]) AS k(channel, address)
                               USING (channel, address))
"""
_MESSAGES = """
    INSERT INTO messages (notification_id, contact_id, channel, address, event, locale,
                          body, status, status_reason, next_attempt_at, routes, order_id)
    SELECT n.id, u.contact_id, u.channel, u.address, u.event, u.locale, u.body::jsonb,
           u.status, u.status_reason, coalesce(u.next_attempt_at, now()), u.routes::jsonb,
           u.order_id
    FROM n, unnest($8::uuid[], $9::text[], $10::text[], $11::text[], $12::text[],
                   $13::text[], $14::text[], $15::text[], $16::timestamptz[], $17::text[],
                   $18::uuid[])
         WITH ORDINALITY AS u(contact_id, channel, address, event, locale, body, status,
                              status_reason, next_attempt_at, routes, order_id, n)
    ORDER BY u.n
    RETURNING id, notification_id, channel, address, status, status_reason, next_attempt_at
"""
_INSERT = _NOTIFICATION_CTE.format(notification=_NOTIFICATION) + _MESSAGES
_INSERT_UNLESS_KNOWN = _NOTIFICATION_CTE.format(notification=_NOTIFICATION_UNLESS_KNOWN) + _MESSAGES
_INSERT_ALONE = _NOTIFICATION_CTE.format(notification=_NOTIFICATION) + "SELECT id FROM n"


async def insert_notification(
    conn: Connection,
    *,
    event: str,
    data: dict[str, Any],
    locale: str | None,
    send_at: datetime | None,
    source: str,
    request_id: str | None,
    audit: dict[str, Any],
    planned: list[PlannedMessage],
    unless_known: list[tuple[str, str]] | None = None,
) -> tuple[UUID, list[asyncpg.Record]] | None:
    """The notification, its audit row and all its messages in ONE statement: atomic without
    a transaction, and one round trip for the whole of a notify (found profiling ingest).

    With ``unless_known`` (channel, address) pairs, nothing is written and None is returned
    when one of them belongs to a contact: the caller planned as if none did, to spare the
    lookup's round trip, and must resolve and plan again.
    """
    head = (event, data, locale, send_at, source, request_id, audit)
    if not planned:
        notification_id: UUID = await conn.fetchval(_INSERT_ALONE, *head)
        return notification_id, []
    rows = await conn.fetch(
        _INSERT if unless_known is None else _INSERT_UNLESS_KNOWN,
        *head,
        [p.contact_id for p in planned],
        [p.channel for p in planned],
        [p.address for p in planned],
        [p.event for p in planned],
        [p.locale for p in planned],
        [_json(p.body) for p in planned],
        [p.status for p in planned],
        [p.status_reason for p in planned],
        [p.next_attempt_at for p in planned],
        [_json(p.routes) for p in planned],
        [p.order_id for p in planned],
        *(
            ()
            if unless_known is None
            else ([c for c, _ in unless_known], [a for _, a in unless_known])
        ),
    )
    if not rows:
        return None
    return rows[0]["notification_id"], list(rows)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# Due for an attempt: queued and due, or held by a worker whose lease ran out.
_DUE = """((status = 'queued' AND next_attempt_at <= now())
          OR (status = 'sending' AND claimed_until < now()))"""


# The outcome of attempt $4 moves its message only while that attempt is the message's
# latest: a worker whose lease ran out before it wrote the outcome may find the message
# claimed again by another worker (a drainer's poll does so within a second), whose live
# claim must stand.
_LATEST_ATTEMPT = (
    "NOT EXISTS (SELECT 1 FROM delivery_attempts later WHERE later.message_id = $1"
    " AND later.id > $4)"
)

# Claims the picked rows for one attempt each and opens their attempt records.
_CLAIM_PICKED = """
    ), claimed AS (
        UPDATE messages m
           SET status = 'sending', attempts = m.attempts + 1, updated_at = now(),
               claimed_until = now() + make_interval(secs => $2)
          FROM picked
         WHERE m.id = picked.id
        RETURNING m.id, m.channel, m.address, m.event, m.locale, m.body, m.attempts,
                  m.contact_id, m.created_at, m.notification_id
    ), attempt AS (
        INSERT INTO delivery_attempts (message_id, attempt, worker)
        SELECT id, attempts, $3 FROM claimed
        RETURNING id, message_id
    )
    SELECT claimed.*, attempt.id AS attempt_id,
           (SELECT request_id FROM notifications n
             WHERE n.id = claimed.notification_id) AS request_id
      FROM claimed JOIN attempt ON attempt.message_id = claimed.id
"""
_CLAIM = (
    """
    WITH picked AS (
        SELECT id FROM messages
         WHERE id = ANY($1::uuid[]) AND channel = ANY($4::text[]) AND """
    + _DUE
    + """
         FOR UPDATE SKIP LOCKED"""
    + _CLAIM_PICKED
)
# The oldest due of one channel (its index: messages_due_idx). A row 'sending' was due when
# it was claimed, so `next_attempt_at <= now()` bounds the index scan for both kinds.
_CLAIM_DUE = (
    """
    WITH picked AS (
        SELECT id FROM messages
         WHERE channel = $4 AND status IN ('queued', 'sending') AND next_attempt_at <= now()
           AND """
    + _DUE
    + """
         ORDER BY next_attempt_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED"""
    + _CLAIM_PICKED
)


async def claim(
    pool: Pool, message_id: UUID, lease_seconds: float, worker: str, channels: list[str]
) -> asyncpg.Record | None:
    """Take the message for one attempt and open its attempt record, in one statement.

    None when it is not due, already finished, leased by a live worker, or for a channel
    not in ``channels`` (the ones this worker sends on).
    """
    rows = await claim_many(pool, [message_id], lease_seconds, worker, channels)
    return rows[0] if rows else None


async def claim_many(
    pool: Pool, message_ids: list[UUID], lease_seconds: float, worker: str, channels: list[str]
) -> list[asyncpg.Record]:
    """Take those of these messages that are due, on one of ``channels``, for one attempt each
    and open their attempt records, in ONE statement; rows another worker is claiming right
    now are skipped, not waited for (it has them)."""
    return list(
        await pool.fetch(
            _CLAIM,
            message_ids,
            lease_seconds,
            worker,
            channels,
        )
    )


async def claim_due(
    pool: Pool, channel: str, limit: int, lease_seconds: float, worker: str
) -> list[asyncpg.Record]:
    """Take up to ``limit`` of the messages due on ``channel``, oldest first, as `claim_many`
    does: rows another worker is claiming right now are skipped (it has them)."""
    return list(await pool.fetch(_CLAIM_DUE, limit, lease_seconds, worker, channel))


async def due_elsewhere(
    pool: Pool, message_ids: list[UUID], channels: list[str]
) -> list[tuple[UUID, str]]:
    """(id, channel) of those of these messages that are due on a channel not in
    ``channels``: another worker's to send (a rolling deploy), never this one's to fail."""
    rows = await pool.fetch(
        "SELECT id, channel FROM messages WHERE id = ANY($1::uuid[])"
        " AND channel <> ALL($2::text[]) AND " + _DUE,
        message_ids,
        channels,
    )
    return [(row["id"], row["channel"]) for row in rows]


# Per channel, so each reads its own range of messages_due_idx (channel, due time): a filter
# on the due time alone reads every unfinished message, a scheduled campaign's included.
_DUE_BY_CHANNEL = """
    SELECT c.channel, d.pending, extract(epoch FROM now() - d.oldest) AS oldest_due_seconds
      FROM unnest($1::text[]) AS c(channel),
           LATERAL (SELECT count(*) AS pending, min(next_attempt_at) AS oldest
                      FROM messages m
                     WHERE m.channel = c.channel AND m.status IN ('queued', 'sending')
                       AND m.next_attempt_at <= now()) AS d
     WHERE d.pending > 0
"""


async def due_by_channel(pool: Pool) -> list[asyncpg.Record]:
    """Per channel, the messages due and not finished, and how long the oldest has been due."""
    return list(await pool.fetch(_DUE_BY_CHANNEL, list(CHANNEL_NAMES)))


async def not_due_until(pool: Pool, message_id: UUID) -> datetime | None:
    """When a queued message becomes due, if it is queued for later."""
    value: datetime | None = await pool.fetchval(
        "SELECT next_attempt_at FROM messages WHERE id = $1 AND status = 'queued'"
        " AND next_attempt_at > now()",
        message_id,
    )
    return value


# The audit row every finished message leaves: who, what, when, result.
_AUDIT = """
    INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
    SELECT 'outbound', coalesce(m.contact_id::text, 'address:' || m.channel), 'message',
           m.channel, m.id::text, {result},
           jsonb_build_object('event', m.event, 'attempts', m.attempts,
                              'notification_id', m.notification_id)
      FROM done m
"""


async def finish_sent(
    pool: Pool, message_id: UUID, attempt_id: int, provider_message_id: str
) -> None:
    await finish_sent_many(pool, [(message_id, attempt_id, provider_message_id)])


async def finish_sent_many(pool: Pool, sent: list[tuple[UUID, int, str]]) -> None:
    """Messages sent, as (message id, attempt id, platform's id): their rows, attempts and
    audit rows in ONE statement."""
    await pool.execute(
        """
        WITH s AS (
            SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[])
                       AS s(message_id, attempt_id, provider_message_id)
        ), done AS (
            UPDATE messages m
               SET status = 'sent', provider_message_id = nullif(s.provider_message_id, ''),
                   sent_at = now(), updated_at = now(), claimed_until = NULL, last_error = NULL
              FROM s
             WHERE m.id = s.message_id AND m.status = 'sending'
            RETURNING m.id, m.contact_id, m.channel, m.event, m.attempts, m.notification_id
        ), attempt AS (
            UPDATE delivery_attempts a SET finished_at = now(), outcome = 'sent'
              FROM s WHERE a.id = s.attempt_id
        )
        """
        + _AUDIT.format(result="'sent'"),
        [m for m, _, _ in sent],
        [a for _, a, _ in sent],
        [p for _, _, p in sent],
    )


async def finish_retry(
    pool: Pool,
    message_id: UUID,
    attempt_id: int,
    *,
    delay_seconds: float,
    error_code: str,
    error: str,
    retry_after: float | None,
    counted: bool = True,
) -> datetime | None:
    """Back to the queue for another attempt after ``delay_seconds``; ``counted=False`` when
    the attempt never reached the platform, so it does not count towards giving up."""
    next_at: datetime | None = await pool.fetchval(
        """
        WITH done AS (
            UPDATE messages
               SET status = 'queued', next_attempt_at = now() + make_interval(secs => $2),
                   attempts = attempts - CASE WHEN $8 THEN 0 ELSE 1 END,
                   claimed_until = NULL, last_error = $3, updated_at = now()
             WHERE id = $1 AND status = 'sending' AND """
        + _LATEST_ATTEMPT
        + """
            RETURNING next_attempt_at
        ), attempt AS (
            UPDATE delivery_attempts
               SET finished_at = now(), outcome = 'transient', error_code = $5, error = $6,
                   retry_after = $7
             WHERE id = $4
        )
        SELECT next_attempt_at FROM done
        """,
        message_id,
        delay_seconds,
        f"{error_code}: {error}" if error_code else error,
        attempt_id,
        error_code,
        error,
        retry_after,
        counted,
    )
    return next_at


async def finish_failed(
    pool: Pool,
    message_id: UUID,
    attempt_id: int | None,
    *,
    reason: str,
    error: str,
    outcome: str = "permanent",
    status: str = "failed",
) -> None:
    """End a message as failed (or skipped, e.g. no template outside a platform's window)."""
    await pool.execute(
        """
        WITH done AS (
            UPDATE messages
               SET status = $6, status_reason = $2, last_error = $3,
                   claimed_until = NULL, updated_at = now()
             WHERE id = $1 AND status IN ('queued', 'sending')
               AND ($4::bigint IS NULL OR """
        + _LATEST_ATTEMPT
        + """)
            RETURNING id, contact_id, channel, event, attempts, notification_id
        ), attempt AS (
            UPDATE delivery_attempts
               SET finished_at = now(), outcome = $5, error_code = $2, error = $3
             WHERE id = $4
        )
        """
        + _AUDIT.format(result="$6 || ':' || $2"),
        message_id,
        reason,
        error,
        attempt_id,
        outcome,
        status,
    )


async def fall_back(
    pool: Pool, message_id: UUID, attempt_id: int, *, reason: str, error: str
) -> asyncpg.Record | None:
    """Move a permanently failed message to its next route, or None when it has none."""
    return await pool.fetchrow(
        """
        WITH moved AS (
            UPDATE messages
               SET channel = routes -> 0 ->> 'channel', address = routes -> 0 ->> 'address',
                   routes = routes - 0, status = 'queued', next_attempt_at = now(),
                   claimed_until = NULL, last_error = $3, updated_at = now()
             WHERE id = $1 AND status = 'sending' AND jsonb_array_length(routes) > 0
               AND """
        + _LATEST_ATTEMPT
        + """
            RETURNING channel, address, attempts
        ), attempt AS (
            UPDATE delivery_attempts
               SET finished_at = now(), outcome = 'permanent', error_code = $2, error = $3
             WHERE id = $4 AND EXISTS (SELECT 1 FROM moved)
        )
        SELECT channel, address, attempts FROM moved
        """,
        message_id,
        reason,
        error,
        attempt_id,
    )


async def finish_skipped(
    pool: Pool, message_id: UUID, attempt_id: int | None, *, reason: str, error: str
) -> None:
    """The channel declined to send by rule (`SkipMessage`), e.g. no WhatsApp template."""
    await finish_failed(
        pool,
        message_id,
        attempt_id,
        reason=reason,
        error=error,
        outcome="skipped",
        status="skipped",
    )


# Receipts only move a message forward: "delivered" arriving after "read" changes nothing.
# Evidence of delivery outranks a failure report, and nothing moves a skipped message.
RECEIPT_RANK = {"queued": 0, "sending": 1, "sent": 2, "failed": 3, "delivered": 4, "read": 5}
_RANK_SQL = " ".join(f"WHEN '{name}' THEN {rank}" for name, rank in RECEIPT_RANK.items())


async def record_receipt(
    pool: Pool,
    channel: str,
    *,
    status: str,
    provider_message_id: str,
    message_id: UUID | None = None,
    reason: str | None = None,
    error: str | None = None,
) -> asyncpg.Record | None:
    """A platform's delivery report (sent, delivered, read, failed), applied in one UPDATE.

    The message is found by our id when the platform echoes it, else by the platform's id.
    Returns the message (id, address, status) when it moved, None when the report was stale
    or matched nothing.
    """
    # Two statements rather than one with an OR, so each keeps its index; both are constants.
    match = "id = $2" if message_id is not None else "provider_message_id = $2"
    return await pool.fetchrow(
        f"""
        UPDATE messages
           SET status = $3,
               status_reason = CASE WHEN $3 = 'failed' THEN $4 END,
               last_error = CASE WHEN $3 = 'failed' THEN $5 ELSE last_error END,
               provider_message_id = coalesce(provider_message_id, $6),
               sent_at = coalesce(sent_at, now()),
               delivered_at = CASE WHEN $3 IN ('delivered', 'read')
                                   THEN coalesce(delivered_at, now()) ELSE delivered_at END,
               read_at = CASE WHEN $3 = 'read' THEN coalesce(read_at, now()) ELSE read_at END,
               claimed_until = NULL, updated_at = now()
         WHERE channel = $1 AND {match}
           AND (CASE status {_RANK_SQL} ELSE 99 END) < $7
        RETURNING id, address, status
        """,
        channel,
        message_id if message_id is not None else provider_message_id,
        status,
        reason,
        error,
        provider_message_id,
        RECEIPT_RANK[status],
    )


async def mark_address_unreachable(pool: Pool, channel: str, address: str, reason: str) -> None:
    await pool.execute(
        "UPDATE contact_addresses SET reachable = false, unreachable_reason = $3"
        " WHERE channel = $1 AND address = $2",
        channel,
        address,
        reason,
    )


_OVERDUE_CHANNELS = """
    SELECT channel FROM unnest($2::text[]) AS c(channel)
     WHERE EXISTS (SELECT 1 FROM messages m
                    WHERE m.channel = c.channel AND m.status IN ('queued', 'sending')
                      AND m.next_attempt_at <= now() - make_interval(secs => $1)
                      AND (m.status = 'queued' OR m.claimed_until < now()))
"""


async def overdue_channels(pool: Pool, grace_seconds: float) -> list[str]:
    """The channels with a message due for more than the grace and not taken (its ring was
    lost, or no worker has its channel), or held by a worker whose lease ran out."""
    rows = await pool.fetch(_OVERDUE_CHANNELS, grace_seconds, list(CHANNEL_NAMES))
    return sorted(row["channel"] for row in rows)


async def get_message(pool: Pool, message_id: UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        """
        SELECT id, notification_id, contact_id, channel, address, event, locale, status,
               status_reason, attempts, last_error, provider_message_id, created_at,
               updated_at, next_attempt_at, sent_at, delivered_at, read_at
          FROM messages WHERE id = $1
        """,
        message_id,
    )
    if row is None:
        return None
    attempts = await pool.fetch(
        """
        SELECT attempt, started_at, finished_at, outcome, error_code, error, retry_after
          FROM delivery_attempts WHERE message_id = $1 ORDER BY id
        """,
        message_id,
    )
    result = dict(row)
    result["attempt_log"] = [dict(a) for a in attempts]
    return result
