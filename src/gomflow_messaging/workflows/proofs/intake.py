"""A receipt arrives from a chat: checked, and tied to one of the sender's own unpaid orders.

The sender is limited to RATE_LIMIT_MAX_UPLOADS files per RATE_LIMIT_WINDOW_MS; the file
must be an image or a PDF by its first bytes (whatever the chat says it is) and at most
MAX_FILE_SIZE. It can only pay one of the sender's OWN unpaid submissions
(`orders.contact_submissions`): the only one, the one whose reference the caption names, or
the one chosen with buttons (``proof <submission id>``). A reference that is not theirs gets
the same answer as one that does not exist. Then the Smart Agent (`agent`) or the GOM
(`review`) checks it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any

from gomflow_messaging import orders as order_data
from gomflow_messaging import ratelimit
from gomflow_messaging.errors import ChannelError, PermanentError
from gomflow_messaging.i18n import gettext
from gomflow_messaging.money import REFERENCE_PREFIX, format_money
from gomflow_messaging.workflows.chat.types import Reply, button
from gomflow_messaging.workflows.proofs.agent import AgentCheck
from gomflow_messaging.workflows.proofs.review import uuid_in

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg

    from gomflow_messaging.workflows.chat.types import Context, IncomingFile
    from gomflow_messaging.workflows.ports import Ports

log = logging.getLogger(__name__)

#: A receipt waiting for the buyer to say which order it pays is kept this long.
CHOICE_SECONDS = 3600
#: Our payment references in a caption (``PH-7KQ2M9XA``); a bank's or e-wallet's own
#: transaction numbers there are not ours and are ignored.
_REFERENCE = re.compile(
    rf"\b((?:{'|'.join(sorted({*REFERENCE_PREFIX.values(), 'GF'}))})-[A-Z0-9]{{6,12}})\b",
    re.IGNORECASE,
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}


def _(ctx: Context, message: str, **values: Any) -> str:
    return gettext(ctx.locale, message, **values)


def sniff(data: bytes) -> str | None:
    """The file's type by its first bytes: a receipt is an image or a PDF, nothing else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "image/heic"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


class Intake:
    """The buyer's side; one per process, stateless (files in Postgres, counters in Redis)."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.settings = ports.settings
        self.pool = ports.pool
        self.agent = AgentCheck(ports)

    async def receive(self, ctx: Context, file: IncomingFile, caption: str = "") -> list[Reply]:
        allowed = await ratelimit.hit(
            self.ports.queue.redis,
            self.settings,
            "uploads",
            ctx.sender.channel,
            ctx.sender.address,
        )
        if allowed == "silent":
            return []
        if allowed == "warn":
            return [Reply(ratelimit.refusal(self.settings, "uploads", ctx.locale), private=True)]
        rows = await order_data.contact_submissions(
            self.pool, ctx.contact_id, ctx.sender.channel, ctx.sender.address
        )
        pending = [r for r in rows if r["status"] == "pending"]
        found = _REFERENCE.search(caption or "")
        if found:
            wanted = found.group(1).upper()
            own = [r for r in rows if r["payment_reference"] == wanted]
            if not own:
                # Never say whether someone else's reference exists.
                return [
                    Reply(
                        _(ctx, "I found no order of yours with reference {ref}.", ref=wanted),
                        private=True,
                    )
                ]
            pending = [r for r in own if r["status"] == "pending"]
        if not pending:
            return [Reply(_(ctx, "You have nothing waiting for payment."), private=True)]
        problem, data, mime = await self._read(ctx, file)
        if problem:
            return [Reply(problem, private=True)]
        if len(pending) == 1:
            proof_id = await self._store(ctx, data, mime, pending[0]["id"])
            return await self._submitted(ctx, proof_id, pending[0])
        await self._store(ctx, data, mime, None)
        # A button holds the reference (chats cut labels at 20 characters); the text lists
        # each reference with its order's title.
        shown = pending[:10]
        choices = tuple((button(r["payment_reference"], f"proof {r['id']}"),) for r in shown)
        lines = [_(ctx, "Thank you! Which order is this receipt for?")]
        lines += [f"{r['payment_reference']} · {r['title']}" for r in shown]
        return [Reply("\n".join(lines), buttons=choices, private=True)]

    async def choose(self, ctx: Context, args: str) -> list[Reply]:
        """``proof <submission id>``: the buyer says which of their orders the receipt pays."""
        wanted = uuid_in(args)
        rows = await order_data.contact_submissions(
            self.pool, ctx.contact_id, ctx.sender.channel, ctx.sender.address
        )
        target = next((r for r in rows if r["id"] == wanted and r["status"] == "pending"), None)
        if target is None:
            return [Reply(_(ctx, "I could not find that order among yours."), private=True)]
        proof_id = await self.pool.fetchval(
            """
            UPDATE payment_proofs SET submission_id = $2, status = 'pending_review'
             WHERE id = (SELECT id FROM payment_proofs
                          WHERE contact_id = $1 AND status = 'awaiting_submission'
                            AND created_at > now() - make_interval(secs => $3)
                          ORDER BY created_at DESC LIMIT 1)
               AND status = 'awaiting_submission'
            RETURNING id
            """,
            ctx.contact_id,
            target["id"],
            CHOICE_SECONDS,
        )
        if proof_id is None:
            return [Reply(_(ctx, "Please send your receipt again."), private=True)]
        return await self._submitted(ctx, proof_id, target)

    async def _read(self, ctx: Context, file: IncomingFile) -> tuple[str, bytes, str]:
        """The file's bytes and its real type, or the problem to tell the sender."""
        limit = self.settings.max_file_size
        too_large = _(
            ctx,
            "That file is too large. Please send a screenshot or PDF under {mb} MB.",
            mb=max(limit // (1024 * 1024), 1),
        )
        if file.size > limit:
            return too_large, b"", ""
        try:
            data = await file.fetch()
        except ChannelError as exc:
            if isinstance(exc, PermanentError) and exc.code == "too_large":
                return too_large, b"", ""
            log.warning("receipt from %s not fetched: %s", ctx.sender.channel, exc.code)
            return _(ctx, "I could not get that file. Please send it again."), b"", ""
        if len(data) > limit:
            return too_large, b"", ""
        mime = sniff(data)
        if mime is None:
            return (
                _(
                    ctx,
                    "That file is not a picture or a PDF. Please send a screenshot or a PDF "
                    "of your receipt.",
                ),
                b"",
                "",
            )
        return "", data, mime

    async def _store(
        self, ctx: Context, data: bytes, mime: str, submission_id: UUID | None
    ) -> UUID:
        async with self.pool.acquire() as conn, conn.transaction():
            # A receipt nobody said an order for is not kept past CHOICE_SECONDS, and one
            # buyer has one such receipt at most: a new one replaces it.
            await conn.execute(
                "DELETE FROM payment_proofs WHERE status = 'awaiting_submission'"
                " AND (created_at < now() - make_interval(secs => $2)"
                "      OR ($3 AND contact_id = $1))",
                ctx.contact_id,
                CHOICE_SECONDS,
                submission_id is None,
            )
            proof_id: UUID = await conn.fetchval(
                """
                INSERT INTO payment_proofs (submission_id, contact_id, channel, content, mime,
                                            size, sha256, status)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id
                """,
                submission_id,
                ctx.contact_id,
                ctx.sender.channel,
                data,
                mime,
                len(data),
                hashlib.sha256(data).hexdigest(),
                "pending_review" if submission_id else "awaiting_submission",
            )
        return proof_id

    async def _submitted(
        self, ctx: Context, proof_id: UUID, submission: asyncpg.Record
    ) -> list[Reply]:
        values = {
            "ref": submission["payment_reference"],
            "amount": format_money(submission["total_amount"], submission["currency"]),
        }
        if await self.agent.start(proof_id):
            text = _(
                ctx,
                "Thank you! We received your receipt for {ref} ({amount}). We are checking it "
                "now and will tell you when your payment is confirmed.",
                **values,
            )
        else:
            text = _(
                ctx,
                "Thank you! We received your receipt for {ref} ({amount}). Your GOM will check "
                "it, and we will tell you when your payment is confirmed.",
                **values,
            )
        return [Reply(text, private=True)]
