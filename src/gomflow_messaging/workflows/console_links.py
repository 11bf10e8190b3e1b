"""One-time sign-in links to the web console (`/console` in a GOM's chat, `console-link`).

A link is good for one press within LINK_TTL; only its SHA-256 is stored, so the table signs
nobody in. Redeeming is one UPDATE, so two replicas (or a double press) cannot both use it.
Chats fetch link previews: the link's page asks for a press, and only that press redeems.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from gomflow_messaging.db import Pool

LINK_TTL = timedelta(minutes=10)
PATH = "/console/sign-in/"

LinkState = Literal["valid", "used", "expired", "unknown"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(pool: Pool, public_base_url: str, profile_id: UUID, now: datetime) -> str:
    """A new link for this GOM: ``{PUBLIC_BASE_URL}/console/sign-in/<token>``."""
    token = secrets.token_urlsafe(32)
    # Links a day past their end go (until then a used or late one can still say so).
    await pool.execute("DELETE FROM console_links WHERE expires_at < $1", now - timedelta(days=1))
    await pool.execute(
        "INSERT INTO console_links (token_hash, profile_id, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4)",
        token_hash(token),
        profile_id,
        now,
        now + LINK_TTL,
    )
    return f"{public_base_url.rstrip('/')}{PATH}{token}"


async def state(pool: Pool, token: str, now: datetime) -> LinkState:
    """What the link's page says before anyone presses (reads only)."""
    row = await pool.fetchrow(
        "SELECT used_at, expires_at FROM console_links WHERE token_hash = $1", token_hash(token)
    )
    if row is None:
        return "unknown"
    if row["used_at"] is not None:
        return "used"
    return "expired" if row["expires_at"] <= now else "valid"


async def redeem(pool: Pool, token: str, now: datetime) -> UUID | LinkState:
    """The GOM's profile id, once; afterwards (or too late) why not."""
    profile_id: UUID | None = await pool.fetchval(
        """
        UPDATE console_links SET used_at = $2
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
        RETURNING profile_id
        """,
        token_hash(token),
        now,
    )
    if profile_id is not None:
        return profile_id
    found = await state(pool, token, now)
    return "unknown" if found == "valid" else found
