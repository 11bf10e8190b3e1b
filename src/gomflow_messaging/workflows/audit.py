"""The audit log's rows written by workflows: what came in from a chat, what a GOM decided."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gomflow_messaging.db import Connection, Pool
    from gomflow_messaging.workflows.chat.types import Context


async def inbound(
    db: Pool | Connection, *, actor: str, action: str, channel: str, subject: str, detail: Any
) -> None:
    """Something a person sent (a message, a file, a form, a preference)."""
    await db.execute(
        """
        INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
        VALUES ('inbound', $1, $2, $3, $4, 'received', $5::jsonb)
        """,
        actor,
        action,
        channel,
        subject,
        detail,
    )


async def from_chat(pool: Pool, ctx: Context, action: str, what: str) -> None:
    """What a person sent the chat bot; the group it came from, if any."""
    await inbound(
        pool,
        actor=str(ctx.contact_id),
        action=action,
        channel=ctx.sender.channel,
        subject=ctx.sender.address,
        detail={"text": what, "chat": ctx.sender.chat} if ctx.sender.in_group else {"text": what},
    )


async def link(pool: Pool, ctx: Context, action: str, subject: str, result: str) -> None:
    """A link code shown, confirmed or cancelled: by which person, in which chat."""
    await pool.execute(
        """
        INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
        VALUES ('inbound', $1, $2, $3, $4, $5, $6::jsonb)
        """,
        str(ctx.contact_id),
        action,
        ctx.sender.channel,
        subject or None,
        result,
        {"person": ctx.sender.address, "chat": ctx.sender.chat or "own"},
    )


async def admin(
    db: Pool | Connection,
    *,
    actor: str,
    action: str,
    channel: str,
    subject: str,
    result: str,
    detail: dict[str, Any],
) -> None:
    """A decision taken for an order or a payment (a GOM's, or the Smart Agent's)."""
    await db.execute(
        """
        INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
        VALUES ('admin', $1, $2, $3, $4, $5, $6::jsonb)
        """,
        actor,
        action,
        channel,
        subject,
        result,
        detail,
    )
