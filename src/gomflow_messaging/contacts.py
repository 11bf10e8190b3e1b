"""Contacts and their channel addresses: who a submission, an order or a GOM reaches."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import time
from typing import TYPE_CHECKING
from uuid import UUID

from gomflow_messaging.channels import registry
from gomflow_messaging.i18n import default_timezone, normalize_locale
from gomflow_messaging.phones import normalize_phone

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

    from gomflow_messaging.db import Connection, Pool


@dataclass
class Address:
    channel: str
    address: str
    reachable: bool = True


@dataclass
class Recipient:
    """One person to reach: their contact (if known) and addresses in the order to try."""

    addresses: list[Address]
    contact_id: UUID | None = None
    locale: str = "en"
    timezone: str = "Asia/Manila"
    opted_out: bool = False
    #: Kinds of notification this contact turned on or off (absent: on).
    preferences: dict[str, bool] = field(default_factory=dict)
    quiet_start: time | None = None
    quiet_end: time | None = None
    #: What this recipient stands for in the request, for the answer (e.g. a submission id).
    ref: dict[str, str] = field(default_factory=dict)


def submission_address(platform: str, platform_id: str | None, phone: str | None) -> Address | None:
    """Where a submission's buyer is reached by default (PRODUCT.md: order data): the chat
    ``buyer_platform`` names, else the channel where the phone is the address.

    A group (as submissions made in one once recorded) is never a person's address: what is
    private goes to the buyer's phone instead, or nowhere.
    """
    phone_channel = registry.phone_channel()
    if platform_id and platform in registry.submission_platforms():
        if platform == phone_channel:
            phone = platform_id
        elif registry.get(platform).is_person(platform_id):
            return Address(platform, platform_id)
    if not phone or phone_channel is None:
        return None
    try:
        return Address(phone_channel, normalize_phone(phone))
    except ValueError:
        return None


# What planning needs of a contact (`_recipient`): its settings and preferences.
_CONTACT = """
    SELECT c.id, c.locale, c.timezone, c.opted_out_at, c.quiet_start, c.quiet_end,
           coalesce((SELECT jsonb_object_agg(p.kind, p.enabled) FROM contact_preferences p
                      WHERE p.contact_id = c.id), '{}'::jsonb) AS preferences
"""


async def _contacts(
    conn: Connection, contact_ids: set[UUID]
) -> tuple[dict[UUID, asyncpg.Record], dict[UUID, list[Address]]]:
    if not contact_ids:
        return {}, {}
    ids = list(contact_ids)
    rows = await conn.fetch(_CONTACT + " FROM contacts c WHERE c.id = ANY($1::uuid[])", ids)
    addresses: dict[UUID, list[Address]] = defaultdict(list)
    for row in await conn.fetch(
        """
        SELECT contact_id, channel, address, reachable FROM contact_addresses
         WHERE contact_id = ANY($1::uuid[]) ORDER BY contact_id, priority, id
        """,
        ids,
    ):
        addresses[row["contact_id"]].append(
            Address(row["channel"], row["address"], row["reachable"])
        )
    return {row["id"]: row for row in rows}, addresses


def _recipient(
    contact_id: UUID | None,
    first: Address | None,
    contacts: dict[UUID, asyncpg.Record],
    addresses: dict[UUID, list[Address]],
    ref: dict[str, str],
) -> Recipient:
    ordered: list[Address] = []
    known = addresses.get(contact_id, []) if contact_id else []
    if first is not None:
        # The chat a submission came from goes first, with what we know of its reachability.
        match = next(
            (a for a in known if (a.channel, a.address) == (first.channel, first.address)), None
        )
        ordered.append(match or first)
    ordered += [a for a in known if a not in ordered]
    contact = contacts.get(contact_id) if contact_id else None
    return Recipient(
        addresses=ordered,
        contact_id=contact_id,
        locale=contact["locale"] if contact else "en",
        timezone=contact["timezone"] if contact else "Asia/Manila",
        opted_out=bool(contact and contact["opted_out_at"]),
        preferences=dict(contact["preferences"]) if contact else {},
        quiet_start=contact["quiet_start"] if contact else None,
        quiet_end=contact["quiet_end"] if contact else None,
        ref=ref,
    )


async def for_submissions(
    conn: Connection, *, order_id: UUID | None = None, submission_id: UUID | None = None
) -> list[Recipient]:
    """The buyers of one submission, or of every submission of an order (one each) but the
    ones let go (cancelled, or expired unpaid: those buyers are no longer in the order)."""
    rows = await conn.fetch(
        """
        SELECT s.id, s.buyer_platform, s.buyer_platform_id, s.buyer_phone, sc.contact_id
          FROM submissions s
          LEFT JOIN submission_contacts sc ON sc.submission_id = s.id
         WHERE ($1::uuid IS NULL OR s.order_id = $1)
           AND ($2::uuid IS NULL OR s.id = $2)
           AND ($2::uuid IS NOT NULL OR s.status NOT IN ('cancelled', 'expired'))
         ORDER BY s.created_at, s.id
        """,
        order_id,
        submission_id,
    )
    firsts = [
        submission_address(r["buyer_platform"], r["buyer_platform_id"], r["buyer_phone"])
        for r in rows
    ]
    # A submission not linked to a contact is matched by its address.
    missing = {
        (a.channel, a.address)
        for r, a in zip(rows, firsts, strict=True)
        if a is not None and r["contact_id"] is None
    }
    by_address: dict[tuple[str, str], UUID] = {}
    if missing:
        channels, values = zip(*missing, strict=True)
        for row in await conn.fetch(
            """
            SELECT ca.channel, ca.address, ca.contact_id
              FROM unnest($1::text[], $2::text[]) AS u(channel, address)
              JOIN contact_addresses ca USING (channel, address)
            """,
            list(channels),
            list(values),
        ):
            by_address[(row["channel"], row["address"])] = row["contact_id"]
    contact_ids = [
        r["contact_id"] or (by_address.get((a.channel, a.address)) if a else None)
        for r, a in zip(rows, firsts, strict=True)
    ]
    contacts, addresses = await _contacts(conn, {c for c in contact_ids if c})
    recipients: list[Recipient] = []
    seen: set[object] = set()
    for row, first, contact_id in zip(rows, firsts, contact_ids, strict=True):
        identity: object = row["id"]
        if contact_id:
            identity = contact_id
        elif first:
            identity = (first.channel, first.address)
        if identity in seen:
            continue  # one buyer with several submissions hears it once
        seen.add(identity)
        recipients.append(
            _recipient(contact_id, first, contacts, addresses, {"submission_id": str(row["id"])})
        )
    return recipients


async def for_gom(conn: Connection, profile_id: UUID) -> Recipient | None:
    """The GOM reached on every chat linked to the profile, or None when it does not exist.

    Each chat that confirmed a GOM code is its person's own contact (a chat never moves
    into another); the first linked one's settings apply, its addresses come first.
    """
    exists = await conn.fetchval("SELECT 1 FROM profiles WHERE id = $1", profile_id)
    if not exists:
        return None
    linked = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM contacts WHERE profile_id = $1 ORDER BY created_at, id", profile_id
        )
    ]
    contacts, addresses = await _contacts(conn, set(linked))
    first = linked[0] if linked else None
    every = {first: [a for c in linked for a in addresses.get(c, [])]} if first else {}
    return _recipient(first, None, contacts, every, {"gom_id": str(profile_id)})


def stranger(channel: str, address: str) -> Recipient:
    """A direct address no contact holds: reached there only, with the default settings."""
    return Recipient(addresses=[Address(channel, address)])


async def for_address(conn: Connection, channel: str, address: str) -> Recipient:
    """Whoever holds a direct address, reached there only: the contact and this address's
    reachability in one query (its other addresses are not used)."""
    row = await conn.fetchrow(
        _CONTACT
        + """, ca.reachable FROM contact_addresses ca JOIN contacts c ON c.id = ca.contact_id
         WHERE ca.channel = $1 AND ca.address = $2""",
        channel,
        address,
    )
    if row is None:
        return stranger(channel, address)
    held = Address(channel, address, row["reachable"])
    return _recipient(row["id"], held, {row["id"]: row}, {row["id"]: [held]}, {})


# -- a person writing to a chat bot ---------------------------------------------------------

_CHAT_CONTACT = "c.id, c.locale, c.timezone, c.kind, c.profile_id, c.opted_out_at"


async def for_chat(
    pool: Pool, channel: str, address: str, name: str, language: str, now: datetime
) -> asyncpg.Record:
    """The contact behind a chat address, created on first contact; marks it reachable.

    Returns id, locale, timezone, kind, profile_id and opted_out_at.
    """
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"""
            UPDATE contact_addresses ca
               SET last_inbound_at = $3, reachable = true, unreachable_reason = NULL
              FROM contacts c
             WHERE ca.channel = $1 AND ca.address = $2 AND c.id = ca.contact_id
            RETURNING {_CHAT_CONTACT}
            """,
            channel,
            address,
            now,
        )
        if row is not None:
            return row
        async with conn.transaction():
            locale = normalize_locale(language)
            contact_id = await conn.fetchval(
                "INSERT INTO contacts (display_name, locale, timezone) VALUES ($1, $2, $3)"
                " RETURNING id",
                name[:100] or None,
                locale,
                chat_timezone(locale, channel, address),
            )
            linked = await conn.fetchval(
                """
                INSERT INTO contact_addresses (contact_id, channel, address, priority,
                                               last_inbound_at)
                VALUES ($1, $2, $3, 10, $4)
                ON CONFLICT (channel, address) DO NOTHING RETURNING id
                """,
                contact_id,
                channel,
                address,
                now,
            )
            if linked is None:  # another replica created it a moment ago
                await conn.execute("DELETE FROM contacts WHERE id = $1", contact_id)
            elif channel == registry.phone_channel():
                await _link_by_phone(conn, contact_id, address)
        row = await conn.fetchrow(
            f"""
            SELECT {_CHAT_CONTACT}
              FROM contact_addresses ca JOIN contacts c ON c.id = ca.contact_id
             WHERE ca.channel = $1 AND ca.address = $2
            """,
            channel,
            address,
        )
        assert row is not None
        return row


def chat_timezone(locale: str, channel: str, address: str) -> str:
    """The zone of a chat person who has not chosen one: Malaysia's for a Malay speaker or a
    +60 number (on the phone channel), else Manila's."""
    phone = address if channel == registry.phone_channel() else ""
    return default_timezone(locale, phone)


async def _link_by_phone(conn: Connection, contact_id: UUID, phone: str) -> None:
    """A new contact on the phone channel owns the submissions made (on the web, say) with
    that number."""
    rows = await conn.fetch(
        """
        SELECT s.id, s.buyer_phone FROM submissions s
         WHERE right(regexp_replace(s.buyer_phone, '\\D', '', 'g'), 9) = right($1, 9)
           AND NOT EXISTS (SELECT 1 FROM submission_contacts sc WHERE sc.submission_id = s.id)
        """,
        phone,
    )
    mine = []
    for row in rows:
        try:
            if normalize_phone(row["buyer_phone"]) == phone:
                mine.append((row["id"], contact_id))
        except ValueError:
            continue
    if mine:
        await conn.executemany(
            "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING",
            mine,
        )


async def chat_address(pool: Pool, channel: str, address: str) -> asyncpg.Record | None:
    """Who is behind a chat address, reading only: contact_id, locale, timezone."""
    return await pool.fetchrow(
        """
        SELECT ca.contact_id, c.locale, c.timezone FROM contact_addresses ca
          JOIN contacts c ON c.id = ca.contact_id
         WHERE ca.channel = $1 AND ca.address = $2
        """,
        channel,
        address,
    )


async def chat_settings(pool: Pool, contact_id: UUID) -> asyncpg.Record | None:
    """quiet_start, quiet_end and preferences ({kind: enabled}) of one contact."""
    return await pool.fetchrow(
        """
        SELECT c.quiet_start, c.quiet_end,
               coalesce((SELECT jsonb_object_agg(p.kind, p.enabled)
                           FROM contact_preferences p WHERE p.contact_id = c.id),
                        '{}'::jsonb) AS preferences
          FROM contacts c WHERE c.id = $1
        """,
        contact_id,
    )


async def set_quiet_hours(
    pool: Pool, contact_id: UUID, start: time | None, end: time | None
) -> None:
    await pool.execute(
        "UPDATE contacts SET quiet_start = $2, quiet_end = $3, updated_at = now() WHERE id = $1",
        contact_id,
        start,
        end,
    )


async def set_timezone(pool: Pool, contact_id: UUID, zone: str) -> None:
    await pool.execute(
        "UPDATE contacts SET timezone = $2, updated_at = now() WHERE id = $1", contact_id, zone
    )


async def set_locale(pool: Pool, contact_id: UUID, locale: str) -> None:
    await pool.execute(
        "UPDATE contacts SET locale = $2, updated_at = now() WHERE id = $1", contact_id, locale
    )


async def set_preference(pool: Pool, contact_id: UUID, kind: str, enabled: bool) -> None:
    await pool.execute(
        """
        INSERT INTO contact_preferences (contact_id, kind, enabled) VALUES ($1, $2, $3)
        ON CONFLICT (contact_id, kind)
        DO UPDATE SET enabled = excluded.enabled, updated_at = now()
        """,
        contact_id,
        kind,
        enabled,
    )


async def opt_out(pool: Pool, contact_id: UUID, now: datetime) -> None:
    """STOP: nothing but what they ask for reaches them (the first STOP's moment is kept)."""
    await pool.execute(
        "UPDATE contacts SET opted_out_at = coalesce(opted_out_at, $2), updated_at = now()"
        " WHERE id = $1",
        contact_id,
        now,
    )


async def opt_in(pool: Pool, contact_id: UUID) -> None:
    await pool.execute(
        "UPDATE contacts SET opted_out_at = NULL, updated_at = now() WHERE id = $1", contact_id
    )


async def remember_buyer(conn: Connection, contact_id: UUID, name: str, phone: str) -> None:
    """What a buyer typed when joining an order: their phone, and a name if none yet."""
    await conn.execute(
        "UPDATE contacts SET display_name = coalesce(display_name, $2), phone = $3,"
        " updated_at = now() WHERE id = $1",
        contact_id,
        name,
        phone,
    )
