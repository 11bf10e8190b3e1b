"""Data rights: export everything we hold about a contact, or erase it.

Erasure covers messaging's own tables (the core order tables belong to the core app): the
contact, their addresses and preferences, what they wrote to the bots (audit detail), the text
of messages sent to them, their delivery details (platform message ids and errors that
quote an address), the link codes they used (who used them), their payment receipts and
chat state.
What stays is anonymised:
message rows keep event, channel, status and times (for counts), with no address or text.
Both requests are themselves recorded in the audit log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from gomflow_messaging.channels import registry
from gomflow_messaging.channels.base import choices_key
from gomflow_messaging.errors import ApiError
from gomflow_messaging.workflows.chat.linking import pending_key

if TYPE_CHECKING:
    from gomflow_messaging.workflows.ports import Ports

ERASED = "erased"


async def export(ports: Ports, contact_id: UUID, actor: str) -> dict[str, Any]:
    async with ports.pool.acquire() as conn, conn.transaction():
        contact = await conn.fetchrow("SELECT * FROM contacts WHERE id = $1", contact_id)
        if contact is None:
            raise ApiError(404, "not_found", "No contact with this id.")
        addresses = await conn.fetch(
            "SELECT channel, address, reachable, last_inbound_at, created_at"
            " FROM contact_addresses WHERE contact_id = $1 ORDER BY priority, id",
            contact_id,
        )
        preferences = await conn.fetch(
            "SELECT kind, enabled, updated_at FROM contact_preferences WHERE contact_id = $1",
            contact_id,
        )
        submissions = await conn.fetch(
            """
            SELECT s.id, s.payment_reference, s.buyer_name, s.buyer_phone, s.buyer_email,
                   s.quantity, s.total_amount, s.currency, s.status, s.created_at,
                   d.address AS delivery_address, d.notes, o.title AS order_title
              FROM submission_contacts sc JOIN submissions s ON s.id = sc.submission_id
              JOIN orders o ON o.id = s.order_id
              LEFT JOIN submission_details d ON d.submission_id = s.id
             WHERE sc.contact_id = $1 ORDER BY s.created_at
            """,
            contact_id,
        )
        messages = await conn.fetch(
            "SELECT id, event, channel, address, status, body->>'text' AS text, created_at,"
            " sent_at FROM messages WHERE contact_id = $1 ORDER BY created_at",
            contact_id,
        )
        proofs = await conn.fetch(
            "SELECT id, submission_id, channel, mime, size, sha256, status, reason, created_at,"
            " decided_at FROM payment_proofs WHERE contact_id = $1"
            " OR submission_id = ANY($2::uuid[]) ORDER BY created_at",
            contact_id,
            [r["id"] for r in submissions],
        )
        inbound = await conn.fetch(
            "SELECT at, action, channel, detail FROM audit_log WHERE direction = 'inbound'"
            " AND actor = $1 ORDER BY at",
            str(contact_id),
        )
        await conn.execute(
            "INSERT INTO audit_log (direction, actor, action, subject, result)"
            " VALUES ('admin', $1, 'contact.export', $2, 'exported')",
            actor,
            str(contact_id),
        )
    return {
        "contact": dict(contact),
        "addresses": [dict(r) for r in addresses],
        "preferences": [dict(r) for r in preferences],
        "submissions": [dict(r) for r in submissions],
        "messages": [dict(r) for r in messages],
        "payment_proofs": [dict(r) for r in proofs],
        "inbound": [dict(r) for r in inbound],
    }


async def erase(ports: Ports, contact_id: UUID, actor: str) -> dict[str, Any]:
    async with ports.pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", contact_id):
            raise ApiError(404, "not_found", "No contact with this id.")
        addresses = [
            (r["channel"], r["address"])
            for r in await conn.fetch(
                "SELECT channel, address FROM contact_addresses WHERE contact_id = $1", contact_id
            )
        ]
        submission_ids = [
            r["submission_id"]
            for r in await conn.fetch(
                "SELECT submission_id FROM submission_contacts WHERE contact_id = $1", contact_id
            )
        ]
        # Notifications that speak of this person: to them alone, or about their submission
        # (an alert to the GOM names the buyer). Their data and every copy sent go.
        personal = [
            r["id"]
            for r in await conn.fetch(
                """
                SELECT n.id FROM notifications n
                 WHERE n.data ->> 'reference' IN (
                           SELECT payment_reference FROM submissions WHERE id = ANY($2::uuid[]))
                    OR (EXISTS (SELECT 1 FROM messages m WHERE m.notification_id = n.id
                                   AND m.contact_id = $1)
                        AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.notification_id = n.id
                                           AND m.contact_id IS DISTINCT FROM $1))
                """,
                contact_id,
                submission_ids,
            )
        ]
        await conn.execute(
            "UPDATE notifications SET data = '{}'::jsonb WHERE id = ANY($1::uuid[])", personal
        )
        # What a channel keeps itself (a local record of messages), whether it is on now or not.
        for plugin in registry.plugins():
            if plugin.erase is not None:
                mine = [a for c, a in addresses if c == plugin.name]
                await plugin.erase(conn, contact_id, personal, mine)
        channels = [c for c, _ in addresses]
        values = [a for _, a in addresses]
        # Message rows stay for counts (event, channel, status, times): no text, no address.
        # One still waiting is not sent any more.
        anonymised = await conn.fetch(
            """
            UPDATE messages m
               SET body = jsonb_build_object('erased', true), last_error = NULL,
                   routes = '[]'::jsonb,
                   provider_message_id = CASE WHEN m.contact_id = $1 OR (m.channel, m.address)
                                                   IN (SELECT * FROM unnest($3::text[], $4::text[]))
                                              THEN NULL ELSE m.provider_message_id END,
                   address = CASE WHEN m.contact_id = $1 OR (m.channel, m.address) IN
                                       (SELECT * FROM unnest($3::text[], $4::text[]))
                                  THEN $5 ELSE m.address END,
                   contact_id = CASE WHEN m.contact_id = $1 THEN NULL ELSE m.contact_id END,
                   status = CASE WHEN m.status = 'queued' THEN 'skipped' ELSE m.status END,
                   status_reason = CASE WHEN m.status = 'queued' THEN 'erased'
                                        ELSE m.status_reason END
             WHERE m.contact_id = $1 OR m.notification_id = ANY($2::uuid[])
                OR (m.channel, m.address) IN (SELECT * FROM unnest($3::text[], $4::text[]))
            RETURNING m.id, m.address = $5 AS address_erased
            """,
            contact_id,
            personal,
            channels,
            values,
            ERASED,
        )
        counts: dict[str, Any] = {"messages_anonymised": len(anonymised)}
        # A platform's error can quote the address it failed on ("chat 123 not found").
        await conn.execute(
            "UPDATE delivery_attempts SET error = NULL WHERE message_id = ANY($1::uuid[])",
            [r["id"] for r in anonymised],
        )
        # /api/notify keeps its answers for a day (Idempotency-Key replays), and they name
        # each message's address: the same addresses go from them, the rest stays replayable.
        await conn.execute(
            """
            WITH gone AS (
                SELECT e.value AS entry, e.ordinality AS i, k.scope, k.key
                  FROM idempotency_keys k,
                       jsonb_array_elements(
                           CASE WHEN jsonb_typeof(k.response -> 'messages') = 'array'
                                THEN k.response -> 'messages' ELSE '[]'::jsonb END
                       ) WITH ORDINALITY AS e
            ), scrubbed AS (
                SELECT scope, key,
                       jsonb_agg(CASE WHEN entry ->> 'id' = ANY($1::text[])
                                        OR (entry ->> 'channel', entry ->> 'address') IN
                                           (SELECT * FROM unnest($2::text[], $3::text[]))
                                      THEN entry || jsonb_build_object('address', $4::text)
                                      ELSE entry END ORDER BY i) AS messages,
                       bool_or(entry ->> 'id' = ANY($1::text[])
                               OR (entry ->> 'channel', entry ->> 'address') IN
                                  (SELECT * FROM unnest($2::text[], $3::text[]))) AS touched
                  FROM gone GROUP BY scope, key
            )
            UPDATE idempotency_keys k
               SET response = jsonb_set(k.response, '{messages}', s.messages)
              FROM scrubbed s
             WHERE s.touched AND (k.scope, k.key) = (s.scope, s.key)
            """,
            [str(r["id"]) for r in anonymised if r["address_erased"]],
            channels,
            values,
            ERASED,
        )
        # Receipts (the files, what the agent read, the reasons) go; the decisions' audit
        # rows keep who decided and when, without detail.
        proofs = [
            str(r["id"])
            for r in await conn.fetch(
                "DELETE FROM payment_proofs WHERE contact_id = $1"
                " OR submission_id = ANY($2::uuid[]) RETURNING id",
                contact_id,
                submission_ids,
            )
        ]
        await conn.execute(
            "UPDATE audit_log SET detail = '{}'::jsonb WHERE subject = ANY($1::text[])", proofs
        )
        counts["payment_proofs_deleted"] = len(proofs)
        status = await conn.execute(
            "UPDATE audit_log SET actor = $2, subject = NULL, detail = '{}'::jsonb"
            " WHERE actor = $1 OR subject = ANY($3::text[])",
            str(contact_id),
            ERASED,
            values,
        )
        counts["inbound_anonymised"] = int(status.split()[-1])
        await conn.execute(
            "DELETE FROM submission_details WHERE submission_id = ANY($1::uuid[])", submission_ids
        )
        await conn.execute("DELETE FROM link_tokens WHERE contact_id = $1", contact_id)
        # A code this person used keeps that it was used, not by whom.
        await conn.execute(
            "UPDATE link_tokens SET used_by = $2 WHERE used_by = ANY($1::text[])",
            [f"{channel}:{address}" for channel, address in addresses],
            ERASED,
        )
        await conn.execute("DELETE FROM contacts WHERE id = $1", contact_id)
        counts["addresses_deleted"] = len(addresses)
        counts["submissions_unlinked"] = len(submission_ids)
        await conn.execute(
            "INSERT INTO audit_log (direction, actor, action, subject, result, detail)"
            " VALUES ('admin', $1, 'contact.erase', $2, 'erased', $3::jsonb)",
            actor,
            str(contact_id),
            counts,
        )
    # Conversation state and remembered choices live in Redis; they expire by themselves,
    # but erase means now.
    keys = [f"gomflow:conversation:{channel}:{address}" for channel, address in addresses]
    keys += [choices_key(ports.settings.queue_name, ch, address) for ch, address in addresses]
    keys += [pending_key(channel, address) for channel, address in addresses]
    if keys:
        await ports.queue.redis.delete(*keys)
    return {"contact_id": str(contact_id), "erased": True, **counts}
