"""A receipt arrives from a chat: checked, and tied to one of the sender's own unpaid orders.

The sender is limited to RATE_LIMIT_MAX_UPLOADS files per RATE_LIMIT_WINDOW_MS; the file
must be an image or a PDF by its first bytes (whatever the chat says it is) and at most
MAX_FILE_SIZE. It can only pay one of the sender's OWN unpaid submissions
(`orders.contact_submissions`): the only one, the one whose reference the caption names, or
the one chosen with buttons (``proof <submission id>``). A reference that is not theirs gets
the same answer as one that does not exist. Then the Smart Agent (`agent`) or the GOM
(`review`) checks it.

One proof per distinct file per submission (the sha256 of its bytes, a unique index): the
same file again is answered "already received" and costs no agent call, so one receipt can
never be decided twice (once rejected, once confirmed). A submission holds at most
PROOF_MAX_PENDING_PER_SUBMISSION undecided receipts and a person stores at most
PROOF_MAX_PER_PERSON_HOUR an hour; both are checked before the file is downloaded, and again
under a lock when it is stored (two uploads at once count as two).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from gomflow_messaging import orders as order_data
from gomflow_messaging import ratelimit
from gomflow_messaging.errors import ChannelError, PermanentError
from gomflow_messaging.i18n import gettext
from gomflow_messaging.money import REFERENCE_PREFIX, format_money
from gomflow_messaging.workflows.chat.types import Reply, button
from gomflow_messaging.workflows.proofs.agent import AgentCheck
from gomflow_messaging.workflows.proofs.memory import gate
from gomflow_messaging.workflows.proofs.review import uuid_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    import asyncpg

    from gomflow_messaging.db import Connection
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
#: Bytes of a receipt hex-encoded at a time on their way to Postgres.
_COPY_SLICE = 256 * 1024
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
        target = pending[0] if len(pending) == 1 else None
        async with gate("intake", self.settings.proof_max_in_memory):
            # Counted before the download too (in turn, so uploads that arrived together
            # see each other), so a flood past the bounds costs no transfer.
            async with self.pool.acquire() as conn:
                bound = await self._bound(conn, ctx, target["id"] if target else None)
            if bound:
                return [self._refusal(ctx, bound, target)]
            problem, data, mime = await self._read(ctx, file)
            if problem:
                return [Reply(problem, private=True)]
            stored = await self._store(ctx, data, mime, target["id"] if target else None)
            del data
        if isinstance(stored, str):
            return [self._refusal(ctx, stored, target)]
        if target is not None:
            return await self._submitted(ctx, stored, target)
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
        async with self.pool.acquire() as conn, conn.transaction():
            await _lock(conn, target["id"], ctx.contact_id)
            waiting = await conn.fetchrow(
                """
                SELECT id, sha256 FROM payment_proofs
                 WHERE contact_id = $1 AND status = 'awaiting_submission'
                   AND created_at > now() - make_interval(secs => $2)
                 ORDER BY created_at DESC LIMIT 1
                   FOR UPDATE
                """,
                ctx.contact_id,
                CHOICE_SECONDS,
            )
            if waiting is None:
                return [Reply(_(ctx, "Please send your receipt again."), private=True)]
            same = await _same_file(conn, target["id"], waiting["sha256"])
            bound = same or await self._bound(conn, ctx, target["id"], person=False)
            if bound:
                await conn.execute("DELETE FROM payment_proofs WHERE id = $1", waiting["id"])
                return [self._refusal(ctx, bound, target)]
            proof_id: UUID = await conn.fetchval(
                "UPDATE payment_proofs SET submission_id = $2, status = 'pending_review'"
                " WHERE id = $1 RETURNING id",
                waiting["id"],
                target["id"],
            )
        return await self._submitted(ctx, proof_id, target)

    async def _bound(
        self,
        conn: Connection,
        ctx: Context,
        submission_id: UUID | None,
        *,
        person: bool = True,
    ) -> str:
        """Why one more receipt would be one too many (limit_submission, limit_person), or ""."""
        if submission_id is not None:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM payment_proofs"
                " WHERE submission_id = $1 AND status = 'pending_review'",
                submission_id,
            )
            if waiting >= self.settings.proof_max_pending_per_submission:
                return "limit_submission"
        if person:
            recent = await conn.fetchval(
                "SELECT count(*) FROM payment_proofs"
                " WHERE contact_id = $1 AND created_at > now() - interval '1 hour'",
                ctx.contact_id,
            )
            if recent >= self.settings.proof_max_per_person_hour:
                return "limit_person"
        return ""

    def _refusal(self, ctx: Context, why: str, submission: asyncpg.Record | None) -> Reply:
        """What a buyer hears for a receipt we do not keep: a duplicate or past a bound."""
        ref = submission["payment_reference"] if submission is not None else ""
        texts = {
            "same_pending_review": _(
                ctx,
                "We already received this receipt for {ref}; it is being checked. There is "
                "no need to send it again.",
                ref=ref,
            ),
            "same_approved": _(
                ctx, "We already received this receipt for {ref}, and it was approved.", ref=ref
            ),
            "same_rejected": _(
                ctx,
                "We already received this receipt for {ref}, and it was not accepted. Please "
                "send a different receipt, or ask your GOM.",
                ref=ref,
            ),
            "limit_submission": _(
                ctx,
                "Your GOM already has {n} receipts for {ref} to check. Please wait until they "
                "are checked before you send another.",
                n=self.settings.proof_max_pending_per_submission,
                ref=ref,
            ),
            "limit_person": _(
                ctx,
                "You have sent {n} receipts in the last hour. Please wait a while before you "
                "send another.",
                n=self.settings.proof_max_per_person_hour,
            ),
        }
        # A duplicate of a superseded receipt: the payment was approved with another one.
        return Reply(texts.get(why, texts["same_approved"]), private=True)

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
    ) -> UUID | str:
        """The new proof's id; or why it is not kept (same_<status>, limit_<which>)."""
        digest = hashlib.sha256(data).hexdigest()
        async with self.pool.acquire() as conn, conn.transaction():
            await _lock(conn, submission_id, ctx.contact_id)
            if submission_id is not None:
                same = await _same_file(conn, submission_id, digest)
                if same:
                    return same
            bound = await self._bound(conn, ctx, submission_id)
            if bound:
                return bound
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
            proof_id = uuid4()
            status = "pending_review" if submission_id else "awaiting_submission"
            fields = (proof_id, submission_id, ctx.contact_id, ctx.sender.channel, mime)
            head = "\t".join(r"\N" if v is None else str(v) for v in fields)
            await conn.copy_to_table(
                "payment_proofs",
                source=_copy_row(head, data, f"{len(data)}\t{digest}\t{status}"),
                columns=[
                    "id",
                    "submission_id",
                    "contact_id",
                    "channel",
                    "mime",
                    "content",
                    "size",
                    "sha256",
                    "status",
                ],
                format="text",
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


async def _lock(conn: Connection, submission_id: UUID | None, contact_id: UUID) -> None:
    """Serialise receipts of one submission and of one person until the transaction ends,
    so the duplicate check and the bounds hold when two uploads arrive at once (in the same
    order everywhere: submission, then person)."""
    if submission_id is not None:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"proof:{submission_id}"
        )
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"proof-person:{contact_id}"
    )


async def _copy_row(head: str, data: bytes, tail: str) -> AsyncIterator[bytes]:
    """One row of COPY text, the file as bytea hex a slice at a time.

    An INSERT with the file as a parameter holds it about three times over while asyncpg
    encodes and sends it (a 20 MB receipt raised the peak by 53 MB); streamed as COPY, by
    about 6 MB. Every other value here is ours (uuids, a channel name, a sniffed type, hex,
    a status), none can hold a tab, a newline or a backslash.
    """
    yield head.encode() + b"\t\\\\x"
    view = memoryview(data)
    for start in range(0, len(view), _COPY_SLICE):
        yield view[start : start + _COPY_SLICE].hex().encode()
    yield b"\t" + tail.encode() + b"\n"


async def _same_file(conn: Connection, submission_id: UUID, digest: str) -> str:
    """same_<status> when this submission already has a proof with these bytes, else ""."""
    status = await conn.fetchval(
        "SELECT status FROM payment_proofs WHERE submission_id = $1 AND sha256 = $2",
        submission_id,
        digest,
    )
    return f"same_{status}" if status else ""
