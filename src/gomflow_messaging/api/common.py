"""What every route shares: bearer auth, JSON bodies, the error shape."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from gomflow_messaging.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.db import Pool

MAX_BODY_BYTES = 5 * 1024 * 1024


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def first_time(pool: Pool, platform: str, update_id: str) -> bool:
    """Record an inbound update's id; False when it came before (a retry or a replay).

    Telegram's ``update_id``, Twilio's ``MessageSid``, Discord's interaction ``id``: the
    table's primary key makes it once even when two replicas get it at the same moment.
    """
    inserted = await pool.fetchval(
        "INSERT INTO inbound_updates (platform, update_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        platform,
        update_id,
    )
    return inserted is not None


def require_service_secret(request: Request) -> None:
    """Bearer SERVICE_SECRET (or the previous one while rotating), compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    supplied = token.strip().encode()
    valid = False
    for secret in services(request).settings.service_secrets():
        # Every secret is compared, so the timing does not tell which one matched.
        valid |= hmac.compare_digest(supplied, secret)
    if scheme.lower() != "bearer" or not supplied or not valid:
        raise ApiError(
            401,
            "unauthorized",
            "Missing or wrong bearer token.",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type:
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(
            422, "validation_error", "The body is not valid JSON.", {"body": str(exc)[:200]}
        ) from None
    if b"\\u0000" in raw and _has_nul(body):
        # Postgres stores no NUL character in text or jsonb: refuse it here, by name.
        raise ApiError(
            422,
            "validation_error",
            "The body contains a NUL character (\\u0000), which cannot be stored.",
            {"body": "must not contain \\u0000"},
        )
    return body


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
