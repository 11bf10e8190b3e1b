"""Account linking: one-use codes that tie a chat to a buyer's orders or a GOM's profile.

The core app (or a GOM) asks for a code; the person sends it to any bot, as each channel's
registry entry says (``link_how``: a deep link's ``/start <code>``, ``/link <code>``,
``LINK <code>``); the chat bot (`workflows/chat/linking.py`) redeems it with `redeem`. The
channel where a person's address is their phone also links by itself: a submission's phone
is the buyer's address there.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging.channels import registry
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
        "how": registry.link_instructions(code),
    }


@dataclass(frozen=True)
class Redeemed:
    #: The contact the chat belongs to now (the linked buyer's or GOM's).
    contact_id: UUID
    #: The GOM profile the code was for; None for a buyer's code.
    gom_id: UUID | None


async def redeem(
    pool: Pool, code: str, *, contact_id: UUID, used_by: str, now: datetime
) -> Redeemed | None:
    """Use a code once, from the chat whose contact is ``contact_id``; None when not valid.

    The chat's address (and submissions) move to the linked contact, and the chat's own
    contact goes away; a GOM's first linked chat makes its contact the GOM's.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            UPDATE link_tokens SET used_at = $2, used_by = $3
             WHERE upper(token) = upper($1) AND used_at IS NULL AND expires_at > $2
            RETURNING contact_id, profile_id
            """,
            code.strip(),
            now,
            used_by,
        )
        if row is None:
            return None
        if row["profile_id"] is not None:
            gom_contact = await conn.fetchval(
                "SELECT id FROM contacts WHERE profile_id = $1", row["profile_id"]
            )
            if gom_contact is None:
                await conn.execute(
                    "UPDATE contacts SET kind = 'gom', profile_id = $2 WHERE id = $1",
                    contact_id,
                    row["profile_id"],
                )
                target = contact_id
            else:
                target = gom_contact
        else:
            target = row["contact_id"]
        if target != contact_id:
            # This chat now belongs to the linked contact; its old contact goes away.
            await conn.execute(
                "UPDATE contact_addresses SET contact_id = $1 WHERE contact_id = $2",
                target,
                contact_id,
            )
            await conn.execute(
                "UPDATE submission_contacts SET contact_id = $1 WHERE contact_id = $2",
                target,
                contact_id,
            )
            await conn.execute("DELETE FROM contacts WHERE id = $1", contact_id)
    return Redeemed(target, row["profile_id"])
