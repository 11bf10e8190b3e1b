"""Account linking: one-use codes that tie a person to a buyer's order or a GOM's profile.

The core app (or a GOM) asks for a code; the person sends it to any bot, as each channel's
registry entry says (``link_how``: a deep link's ``/start <code>``, ``/link <code>``,
``LINK <code>``, or the code alone). The chat bot (`workflows/chat/linking.py`) first shows
what the code links (`offer`, which changes nothing) and links only when that same person
confirms in that same chat (`confirm`).

Linking is by consent, never by moving people: confirming attaches the code's subject (a
submission, or GOM rights) to the confirming person's own contact. No chat address ever
moves into another person's contact, no contact is deleted, and a submission that another
person already follows in a chat stays theirs. A GOM code gives the confirming person GOM
rights beside their own purchases, which stay theirs as a buyer's, untouched; when their
chat shares a contact with other chats (the linking before this one merged a chat into
whoever's code it used), that chat alone is split into a GOM contact of its own.

The channel where a person's address is their phone also links by itself: a submission's
phone is the buyer's address there (`contacts.for_chat`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from gomflow_messaging.channels import registry
from gomflow_messaging.errors import ValidationFailed

if TYPE_CHECKING:
    from gomflow_messaging.db import Connection, Pool

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
        if submission_id is not None:
            if not await conn.fetchval("SELECT 1 FROM submissions WHERE id = $1", submission_id):
                raise ValidationFailed({"submission_id": "no such submission"})
        elif not await conn.fetchval("SELECT 1 FROM profiles WHERE id = $1", gom_id):
            raise ValidationFailed({"gom_id": "no such GOM profile"})
        code = new_code()
        await conn.execute(
            "INSERT INTO link_tokens (token, submission_id, profile_id, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            code,
            submission_id,
            gom_id,
            now + TOKEN_TTL,
        )
    return {
        "code": code,
        "expires_at": (now + TOKEN_TTL).isoformat(),
        "how": registry.link_instructions(code),
    }


#: Why a code cannot be used: never issued (or mistyped), used once already, past its time.
Unusable = Literal["unknown", "used", "expired"]


@dataclass(frozen=True)
class Offer:
    """What a valid code would link, to show before anything changes."""

    code: str
    #: The GOM profile a GOM code is for; None for a buyer's code.
    gom_id: UUID | None
    #: The GOM's name (GOM code), or the buyer's initials ("A. C.") of the submission.
    name: str
    #: The submissions' payment references and order titles (buyer code).
    orders: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Linked:
    #: The GOM profile the person now holds rights to; None for a buyer's code.
    gom_id: UUID | None
    #: "linked"; "already" when the person held it already; "elsewhere" when another
    #: person follows the order in a chat (nothing changed, the code stays unused);
    #: "other_gom" when the person holds another GOM profile's rights.
    result: Literal["linked", "already", "elsewhere", "other_gom"]
    #: What it was about, for the audit row: "submission:<id>,..." or "gom:<id>".
    subject: str
    #: The confirming person's contact now.
    contact_id: UUID


def initials(name: str) -> str:
    """``Ana Cruz`` -> ``A. C.``: enough to recognise one's own order, little to a stranger."""
    return " ".join(f"{part[0].upper()}." for part in name.split()[:3] if part[:1].isalnum())


def looks_like_code(text: str) -> bool:
    """A link code sent alone: ours (10 of our characters), or letters and digits mixed."""
    text = text.strip()
    if len(text) == 10 and all(c in _ALPHABET for c in text.upper()):
        return True
    return (
        8 <= len(text) <= 12
        and text.isascii()
        and text.isalnum()
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


async def _token(conn: Connection, code: str, *, lock: bool = False) -> Any:
    return await conn.fetchrow(
        "SELECT token, contact_id, submission_id, profile_id, expires_at, used_at"
        " FROM link_tokens WHERE upper(token) = upper($1)" + (" FOR UPDATE" if lock else ""),
        code.strip(),
    )


def _unusable(row: Any, now: datetime) -> Unusable | None:
    if row is None:
        return "unknown"
    if row["used_at"] is not None:
        return "used"
    if row["expires_at"] <= now:
        return "expired"
    return None


async def _subject_submissions(conn: Connection, row: Any) -> list[UUID]:
    if row["submission_id"] is not None:
        return [row["submission_id"]]
    # A code made before linking asked first names a contact: its submissions.
    return [
        r["submission_id"]
        for r in await conn.fetch(
            "SELECT submission_id FROM submission_contacts WHERE contact_id = $1"
            " ORDER BY submission_id",
            row["contact_id"],
        )
    ]


async def offer(pool: Pool, code: str, now: datetime) -> Offer | Unusable:
    """What ``code`` links, reading only; or why it cannot be used."""
    async with pool.acquire() as conn:
        row = await _token(conn, code)
        unusable = _unusable(row, now)
        if unusable is not None:
            return unusable
        if row["profile_id"] is not None:
            name = await conn.fetchval("SELECT name FROM profiles WHERE id = $1", row["profile_id"])
            return Offer(row["token"], row["profile_id"], name or "")
        rows = await conn.fetch(
            "SELECT s.buyer_name, s.payment_reference, o.title FROM submissions s"
            " JOIN orders o ON o.id = s.order_id WHERE s.id = ANY($1::uuid[])"
            " ORDER BY s.created_at",
            await _subject_submissions(conn, row),
        )
        if not rows:
            return "unknown"
        return Offer(
            row["token"],
            None,
            initials(rows[0]["buyer_name"] or ""),
            tuple((r["payment_reference"], r["title"]) for r in rows),
        )


async def confirm(
    pool: Pool, code: str, *, contact_id: UUID, channel: str, address: str, now: datetime
) -> Linked | Unusable:
    """Use ``code`` for the person at ``address`` on ``channel``, whose contact is
    ``contact_id`` (they confirmed it there).

    Only rows of that contact and the code's subject change: a submission nobody follows in
    a chat (made on the web, or by a code made before linking asked first) is attached to
    the person; one another person follows stays theirs and the code stays unused.
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await _token(conn, code, lock=True)
        unusable = _unusable(row, now)
        if unusable is not None:
            return unusable
        if row["profile_id"] is not None:
            linked = await _link_gom(conn, row["profile_id"], contact_id, channel, address)
        else:
            linked = await _link_submissions(conn, row, contact_id)
        if linked.result in ("linked", "already"):
            await conn.execute(
                "UPDATE link_tokens SET used_at = $2, used_by = $3 WHERE token = $1",
                row["token"],
                now,
                f"{channel}:{address}",
            )
    return linked


async def _link_gom(
    conn: Connection, profile_id: UUID, contact_id: UUID, channel: str, address: str
) -> Linked:
    subject = f"gom:{profile_id}"
    held = await conn.fetchval(
        "SELECT profile_id FROM contacts WHERE id = $1 FOR UPDATE", contact_id
    )
    if held == profile_id:
        return Linked(profile_id, "already", subject, contact_id)
    if held is not None:
        return Linked(profile_id, "other_gom", subject, contact_id)
    shared = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM contact_addresses WHERE contact_id = $1"
        " AND (channel, address) <> ($2, $3))",
        contact_id,
        channel,
        address,
    )
    if shared:
        # The chat's contact holds other chats too (linking before it asked first merged a
        # chat into whoever's code it used): the rights go to the person who confirmed,
        # in a contact of their own with this chat alone, never to the others.
        person = await conn.fetchval(
            "INSERT INTO contacts (kind, profile_id, locale, timezone)"
            " SELECT 'gom', $2, locale, timezone FROM contacts WHERE id = $1 RETURNING id",
            contact_id,
            profile_id,
        )
        await conn.execute(
            "UPDATE contact_addresses SET contact_id = $1 WHERE channel = $2 AND address = $3",
            person,
            channel,
            address,
        )
        return Linked(profile_id, "linked", subject, person)
    # GOM rights beside the person's own purchases: their submissions stay theirs, a buyer's.
    await conn.execute(
        "UPDATE contacts SET kind = 'gom', profile_id = $2, updated_at = now() WHERE id = $1",
        contact_id,
        profile_id,
    )
    return Linked(profile_id, "linked", subject, contact_id)


async def _link_submissions(conn: Connection, row: Any, contact_id: UUID) -> Linked:
    submissions = await _subject_submissions(conn, row)
    subject = ",".join(f"submission:{s}" for s in submissions)
    if not submissions:
        return Linked(None, "elsewhere", subject, contact_id)
    holders = await conn.fetch(
        """
        SELECT sc.submission_id, sc.contact_id,
               EXISTS (SELECT 1 FROM contact_addresses ca WHERE ca.contact_id = sc.contact_id)
               OR c.profile_id IS NOT NULL AS a_person
          FROM submission_contacts sc JOIN contacts c ON c.id = sc.contact_id
         WHERE sc.submission_id = ANY($1::uuid[])
           FOR UPDATE OF sc
        """,
        submissions,
    )
    held = {r["submission_id"]: r for r in holders}
    if any(r["a_person"] and r["contact_id"] != contact_id for r in holders):
        return Linked(None, "elsewhere", subject, contact_id)
    mine = [s for s in submissions if s in held and held[s]["contact_id"] == contact_id]
    if len(mine) == len(submissions):
        return Linked(None, "already", subject, contact_id)
    changed = 0
    for s in submissions:
        if s in mine:
            continue
        if s in held:  # a contact nobody chats from (a code made before linking asked first)
            status = await conn.execute(
                "UPDATE submission_contacts SET contact_id = $2"
                " WHERE submission_id = $1 AND contact_id = $3",
                s,
                contact_id,
                held[s]["contact_id"],
            )
        else:  # a concurrent link by someone else wins: theirs stays theirs
            status = await conn.execute(
                "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)"
                " ON CONFLICT (submission_id) DO NOTHING",
                s,
                contact_id,
            )
        changed += int(status.split()[-1])
    return Linked(None, "linked" if changed else "elsewhere", subject, contact_id)
