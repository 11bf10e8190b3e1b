"""Account linking: one-use codes that tie a chat to a buyer's orders or a GOM's profile.

The core app (or a GOM) asks for a code; the person sends it to any bot (Telegram
`/start <code>` deep link, Discord `/link <code>`, WhatsApp `LINK <code>`); `workflows/bot.py`
redeems it. WhatsApp also links by itself: a submission's phone is the buyer's WhatsApp address.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging.errors import ValidationFailed

if TYPE_CHECKING:
    from gomflow_messaging.db import Pool

TOKEN_TTL = timedelta(days=7)
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_code() -> str:
    """10 characters: short enough to type on a phone, too many to guess (32^10)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(10))


async def create_link_token(
    pool: Pool,
    *,
    submission_id: UUID | None = None,
    gom_id: UUID | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    if (submission_id is None) == (gom_id is None):
        raise ValidationFailed({"body": "give exactly one of submission_id or gom_id"})
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        contact_id = None
        if submission_id is not None:
            sub = await conn.fetchrow(
                "SELECT s.id, s.buyer_name, s.buyer_phone, sc.contact_id FROM submissions s"
                " LEFT JOIN submission_contacts sc ON sc.submission_id = s.id WHERE s.id = $1",
                submission_id,
            )
            if sub is None:
                raise ValidationFailed({"submission_id": "no such submission"})
            contact_id = sub["contact_id"]
            if contact_id is None:
                contact_id = await conn.fetchval(
                    "INSERT INTO contacts (display_name, phone) VALUES ($1, $2) RETURNING id",
                    sub["buyer_name"],
                    sub["buyer_phone"],
                )
                await conn.execute(
                    "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)",
                    submission_id,
                    contact_id,
                )
        elif not await conn.fetchval("SELECT 1 FROM profiles WHERE id = $1", gom_id):
            raise ValidationFailed({"gom_id": "no such GOM profile"})
        code = new_code()
        await conn.execute(
            "INSERT INTO link_tokens (token, contact_id, profile_id, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            code,
            contact_id,
            gom_id,
            now + TOKEN_TTL,
        )
    return {
        "code": code,
        "expires_at": (now + TOKEN_TTL).isoformat(),
        "how": {
            "telegram": f"/start {code}",
            "discord": f"/link {code}",
            "whatsapp": f"LINK {code}",
        },
    }
