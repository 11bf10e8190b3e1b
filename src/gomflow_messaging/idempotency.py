"""Idempotency keys: a replay gets the first answer, another body 422, a concurrent one 409."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from gomflow_messaging.errors import ApiError

if TYPE_CHECKING:
    from gomflow_messaging.db import Connection

MAX_KEY_LENGTH = 255


def request_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lock_id(scope: str, key: str) -> int:
    digest = hashlib.sha256(f"idempotency:{scope}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            422,
            "validation_error",
            "The Idempotency-Key header is not valid.",
            {"Idempotency-Key": f"must be 1 to {MAX_KEY_LENGTH} printable characters"},
        )
    return key


async def begin(
    conn: Connection, scope: str, key: str, body_hash: str
) -> tuple[int, dict[str, Any]] | None:
    """Inside the caller's transaction: the stored answer to replay, or None to go ahead.

    The transaction-scoped advisory lock is what makes a concurrent request a 409: it is
    held until the first request commits (or rolls back, leaving the key free again).
    """
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _lock_id(scope, key)):
        raise ApiError(
            409,
            "idempotency_in_flight",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )
    row = await conn.fetchrow(
        "SELECT request_hash, status_code, response FROM idempotency_keys"
        " WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    if row is None:
        return None
    if row["request_hash"] != body_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request body.",
            {"Idempotency-Key": "already used for another request"},
        )
    return int(row["status_code"]), dict(row["response"])


async def store(
    conn: Connection, scope: str, key: str, body_hash: str, status: int, response: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)"
        " VALUES ($1, $2, $3, $4, $5::jsonb)",
        scope,
        key,
        body_hash,
        status,
        response,
    )
