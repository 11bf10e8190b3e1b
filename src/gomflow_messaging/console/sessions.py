"""Who is looking at the console: a GOM's session (from a one-time link) or an operator.

A GOM's session is a random cookie (HttpOnly, SameSite=Lax, Secure when PUBLIC_BASE_URL is
https) whose SHA-256 is kept in Postgres with the session's CSRF token, so any replica
knows it; it ends after a day without a visit, or at sign-out. An operator sends HTTP Basic
with the service secret as password on each request (as for `/saq`): they read everything
and change nothing here. Nobody is ever asked for a password by the browser: a visit
without either gets the sign-in page.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from gomflow_messaging.api.operators import authorized
from gomflow_messaging.workflows.console_links import token_hash

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from gomflow_messaging.db import Pool
    from gomflow_messaging.settings import Settings

COOKIE = "gomflow_console"
IDLE = timedelta(days=1)
OPERATOR_LOCALE = "en"
OPERATOR_TIMEZONE = "Asia/Manila"


@dataclass(frozen=True)
class Viewer:
    #: The GOM's profile id; None for an operator, who sees every GOM's orders.
    gom_id: UUID | None
    name: str
    locale: str
    timezone: str
    #: The token every POST of this session carries ("" for an operator, who cannot POST).
    csrf: str = ""
    #: The session's hash, to end it at sign-out.
    session: str = ""

    @property
    def operator(self) -> bool:
        return self.gom_id is None


async def current(request: Request, pool: Pool, settings: Settings) -> Viewer | None:
    """The operator (Basic or Bearer secret), else the GOM of a live session, else None."""
    header = request.headers.get("authorization", "")
    if header and authorized(header, settings.service_secrets()):
        return Viewer(None, "operator", OPERATOR_LOCALE, OPERATOR_TIMEZONE)
    token = request.cookies.get(COOKIE, "")
    if not token or len(token) > 100:
        return None
    now = datetime.now(UTC)
    row = await pool.fetchrow(
        """
        WITH live AS (
            UPDATE console_sessions SET last_seen_at = $2
             WHERE token_hash = $1 AND ended_at IS NULL
               AND last_seen_at > $2::timestamptz - $3::interval
            RETURNING profile_id, csrf)
        SELECT live.profile_id, live.csrf, p.name,
               coalesce(c.locale, 'en') AS locale, coalesce(c.timezone, p.timezone) AS timezone
          FROM live JOIN profiles p ON p.id = live.profile_id
          LEFT JOIN contacts c ON c.profile_id = live.profile_id
        """,
        token_hash(token),
        now,
        IDLE,
    )
    if row is None:
        return None
    return Viewer(
        row["profile_id"],
        row["name"],
        row["locale"],
        row["timezone"] or OPERATOR_TIMEZONE,
        csrf=row["csrf"],
        session=token_hash(token),
    )


async def start(pool: Pool, profile_id: UUID) -> str:
    """A new session for this GOM; the cookie's value. Ended and idle sessions go."""
    token = secrets.token_urlsafe(32)
    await pool.execute(
        "DELETE FROM console_sessions WHERE ended_at IS NOT NULL"
        " OR last_seen_at < now() - $1::interval",
        IDLE,
    )
    await pool.execute(
        "INSERT INTO console_sessions (token_hash, profile_id, csrf) VALUES ($1, $2, $3)",
        token_hash(token),
        profile_id,
        secrets.token_urlsafe(24),
    )
    return token


async def end(pool: Pool, viewer: Viewer) -> None:
    if viewer.session:
        await pool.execute(
            "UPDATE console_sessions SET ended_at = now() WHERE token_hash = $1", viewer.session
        )


def csrf_valid(viewer: Viewer, supplied: str) -> bool:
    return bool(viewer.csrf) and hmac.compare_digest(viewer.csrf.encode(), supplied.encode())


def set_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(IDLE.total_seconds()) * 30,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=settings.public_base_url.startswith("https://"),
    )


def clear_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=settings.public_base_url.startswith("https://"),
    )
