"""Payment proofs: a receipt from any chat, to the Smart Agent or the GOM, and the answer back.

Buyer side (`Bot.file` -> `receive`): the sender is limited to RATE_LIMIT_MAX_UPLOADS files
per RATE_LIMIT_WINDOW_MS; the file must be an image or a PDF by its first bytes (whatever
the chat says it is) and at most MAX_FILE_SIZE. It can only pay one of the sender's OWN
unpaid submissions (`orders.contact_submissions`): the only one, the one whose reference
the caption names, or the one chosen with buttons (``proof <submission id>``). A reference
that is not theirs gets the same answer as one that does not exist.

Then (a SAQ job, so a slow agent never holds a webhook) the Smart Agent reads it. Its word
approves the payment only for a confident match of THAT submission; anything else (unsure,
another submission, requires review, no answer, not configured) puts the proof in the
GOM's queue: ``/payments`` lists the GOM's own proofs with the image at a signed,
short-lived URL, ``approve <id>`` / ``reject <id> [reason]`` decide. Every decision is
audited; the buyer hears ``payment_confirmed`` or ``payment_rejected`` on their own routes;
with AUTO_DELETE_PROCESSED_IMAGES the bytes are dropped once decided.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from redis.exceptions import RedisError

from gomflow_messaging import contacts, ratelimit
from gomflow_messaging import orders as order_data
from gomflow_messaging.channels.base import Button
from gomflow_messaging.errors import ChannelError, PermanentError
from gomflow_messaging.i18n import gettext
from gomflow_messaging.money import REFERENCE_PREFIX, format_money
from gomflow_messaging.smart_agent import (
    AGENT_TYPES,
    AgentRefused,
    AgentUnavailable,
    Receipt,
    SmartAgent,
    judge,
)
from gomflow_messaging.workflows import events, notify
from gomflow_messaging.workflows.bot import Reply, button

if TYPE_CHECKING:
    import asyncpg

    from gomflow_messaging.bootstrap import Services
    from gomflow_messaging.db import Connection
    from gomflow_messaging.settings import Settings
    from gomflow_messaging.workflows.bot import Context, IncomingFile

log = logging.getLogger(__name__)

PROOF_JOB = "check_payment_proof"
#: A receipt waiting for the buyer to say which order it pays is kept this long.
CHOICE_SECONDS = 3600
REVIEW_PAGE = 10
#: A proof the agent has not answered about in this long goes to the GOM's review.
AGENT_GIVE_UP_SECONDS = 3600
MAX_REASON = 300
#: Our payment references in a caption (``PH-7KQ2M9XA``); a bank's or e-wallet's own
#: transaction numbers there are not ours and are ignored.
_REFERENCE = re.compile(
    rf"\b((?:{'|'.join(sorted({*REFERENCE_PREFIX.values(), 'GF'}))})-[A-Z0-9]{{6,12}})\b",
    re.IGNORECASE,
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}
#: What Telegram and Discord can show inline; other proofs get a link to open.
_DISPLAYABLE = ("image/jpeg", "image/png")
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "application/pdf": ".pdf",
}
REASON_KEYS = ("amount", "unreadable", "account")


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


def reason_texts(locale: str) -> dict[str, str]:
    """The common reasons, as the buyer reads them (in the buyer's language)."""
    return {
        "amount": gettext(locale, "the amount does not match what you owe"),
        "unreadable": gettext(locale, "the receipt cannot be read"),
        "account": gettext(locale, "the payment went to a different account"),
    }


# -- signed image URLs ---------------------------------------------------------------------


def _signature(secret: bytes, proof_id: UUID, expires: int) -> str:
    # A purpose prefix: this HMAC of SERVICE_SECRET is good for nothing else.
    message = f"proof-image:{proof_id}:{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def image_url(settings: Settings, proof_id: UUID, now: float | None = None) -> str:
    """Where a chat platform (or the GOM) fetches this receipt, for a short while."""
    expires = int(now if now is not None else time.time()) + settings.proof_image_url_ttl_seconds
    signature = _signature(settings.service_secrets()[0], proof_id, expires)
    return f"{settings.public_base_url}/api/proofs/{proof_id}/image?exp={expires}&sig={signature}"


def signature_valid(
    settings: Settings, proof_id: UUID, expires: int, signature: str, now: float
) -> bool:
    if expires < now or expires > now + settings.proof_image_url_ttl_seconds + 60:
        return False
    valid = False
    for secret in settings.service_secrets():
        valid |= hmac.compare_digest(_signature(secret, proof_id, expires), signature)
    return valid


def _uuid(value: str) -> UUID | None:
    try:
        return UUID(value.split()[0]) if value.strip() else None
    except ValueError:
        return None


class PaymentProofs:
    """The flow; one per process, stateless (files in Postgres, counters in Redis)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.pool = services.pool

    # -- buyer: a receipt arrives --------------------------------------------------------

    async def receive(self, ctx: Context, file: IncomingFile, caption: str = "") -> list[Reply]:
        allowed = await ratelimit.hit(
            self.services.queue.redis,
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
        choices = tuple(
            (
                button(
                    f"{r['payment_reference']} · {r['title']}"[:60],
                    f"proof {r['id']}",
                ),
            )
            for r in pending[:10]
        )
        return [
            Reply(
                _(ctx, "Thank you! Which order is this receipt for?"),
                buttons=choices,
                private=True,
            )
        ]

    async def choose(self, ctx: Context, args: str) -> list[Reply]:
        """``proof <submission id>``: the buyer says which of their orders the receipt pays."""
        wanted = _uuid(args)
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
        if await self._start_check(proof_id):
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

    async def _start_check(self, proof_id: UUID) -> bool:
        """True when the Smart Agent will read the receipt (in a job); else it goes to the GOM."""
        if not self.settings.smart_agent_enabled:
            await self.to_review(proof_id, {"status": "not_used"})
            return False
        try:
            await self._enqueue_check(proof_id)
        except (RedisError, OSError) as exc:
            log.warning("proof %s not queued for the agent (%s)", proof_id, type(exc).__name__)
            await self.to_review(proof_id, {"status": "unavailable", "error": "queue"})
            return False
        return True

    async def _enqueue_check(self, proof_id: UUID) -> bool:
        """The agent's job, keyed by proof: False when one is already waiting or running."""
        per_try = self.settings.smart_agent_timeout_seconds + 5
        job = await self.services.queue.saq.enqueue(
            PROOF_JOB,
            key=f"proof:{proof_id}",
            timeout=int(per_try * self.settings.smart_agent_attempts) + 30,
            retries=2,
            retry_delay=2.0,
            ttl=-1,
            proof_id=str(proof_id),
        )
        return job is not None

    async def sweep(self, limit: int = 200) -> dict[str, int]:
        """Proofs still waiting for the agent whose job is gone (Redis lost it, a process died
        between storing the receipt and enqueueing, every retry failed) are asked again, as
        the outbox sweeper does for messages; one still waiting after AGENT_GIVE_UP_SECONDS
        goes to the GOM instead, so no receipt waits forever and the agent is not asked
        about the same one without end."""
        rows = await self.pool.fetch(
            """
            SELECT id, created_at < now() - make_interval(secs => $2) AS expired
              FROM payment_proofs
             WHERE status = 'pending_review' AND checked_at IS NULL
               AND created_at <= now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $3
            """,
            self.settings.sweep_grace_seconds,
            AGENT_GIVE_UP_SECONDS,
            limit,
        )
        re_enqueued = given_up = 0
        for row in rows:
            if row["expired"]:
                await self.to_review(row["id"], {"status": "unavailable", "error": "no_answer"})
                given_up += 1
            elif await self._enqueue_check(row["id"]):
                re_enqueued += 1
        if re_enqueued or given_up:
            log.info("proof sweeper: %d re-enqueued, %d to the GOM", re_enqueued, given_up)
        return {"re_enqueued": re_enqueued, "given_up": given_up}

    # -- the Smart Agent (the job) -------------------------------------------------------

    async def check(self, proof_id: UUID) -> dict[str, Any]:
        """Ask the agent about one proof; approve on a confident match, else to the GOM."""
        row = await self.pool.fetchrow(
            """
            SELECT p.status, p.checked_at, p.content, p.mime, p.channel, p.submission_id,
                   s.order_id, s.total_amount, s.currency, s.status AS submission_status
              FROM payment_proofs p JOIN submissions s ON s.id = p.submission_id
             WHERE p.id = $1
            """,
            proof_id,
        )
        if row is None or row["status"] != "pending_review" or row["checked_at"] is not None:
            return {"skipped": True}
        summary: dict[str, Any]
        if (
            not self.settings.smart_agent_enabled
            or row["content"] is None
            or row["mime"] not in AGENT_TYPES
        ):
            summary = {"status": "not_used"}
        else:
            receipt = Receipt(
                content=bytes(row["content"]),
                filename="receipt" + _EXTENSIONS.get(row["mime"], ""),
                mime=row["mime"],
                platform=row["channel"],
                submission_id=row["submission_id"],
                order_id=row["order_id"],
                expected_amount=row["total_amount"],
                currency=row["currency"],
            )
            try:
                answer = await SmartAgent(self.settings).process(receipt)
            except AgentRefused as exc:
                log.warning("smart agent refused proof %s: %s", proof_id, exc)
                summary = {"status": "refused", "reasons": exc.reasons}
            except AgentUnavailable as exc:
                log.warning("smart agent unavailable for proof %s: %s", proof_id, exc.code)
                summary = {"status": "unavailable", "error": exc.code}
            else:
                verdict = judge(
                    answer.body,
                    row["submission_id"],
                    self.settings.smart_agent_auto_approve_threshold,
                )
                summary = verdict.summary
                if answer.refused:
                    summary["refused_first"] = answer.refused
                if verdict.auto_approve and row["submission_status"] == "pending":
                    outcome = await self.decide(
                        proof_id,
                        approve=True,
                        actor="smart_agent",
                        channel=row["channel"],
                        agent_result=summary,
                    )
                    return {"outcome": outcome}
        await self.to_review(proof_id, summary)
        return {"outcome": "review", "agent": summary["status"]}

    async def to_review(self, proof_id: UUID, summary: dict[str, Any]) -> None:
        """Record what the agent said (or why it said nothing) and tell the GOM."""
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                row = await conn.fetchrow(
                    """
                    UPDATE payment_proofs p SET agent_result = $2::jsonb, checked_at = $3
                      FROM submissions s JOIN orders o ON o.id = s.order_id
                     WHERE p.id = $1 AND p.checked_at IS NULL AND s.id = p.submission_id
                    RETURNING p.status, s.buyer_name, s.payment_reference, s.total_amount,
                              s.currency, o.title, o.user_id
                    """,
                    proof_id,
                    summary,
                    now,
                )
                if row is None or row["status"] != "pending_review":
                    return
                result = await notify.send(
                    self.services,
                    "payment_needs_review",
                    _gom_alert_data(row),
                    [{"gom_id": str(row["user_id"])}],
                    source="payment_proofs",
                    now=now,
                    conn=conn,
                )
            await notify.enqueue(self.services, result)

    # -- GOM: review ---------------------------------------------------------------------

    async def review_list(self, ctx: Context) -> list[Reply]:
        """``/payments``: the GOM's own proofs waiting for review, oldest first."""
        rows = await self.pool.fetch(
            """
            SELECT p.id, p.mime, p.content IS NOT NULL AS stored, p.agent_result, p.checked_at,
                   p.created_at, s.buyer_name, s.payment_reference, s.total_amount, s.currency,
                   o.title, count(*) OVER () AS total
              FROM payment_proofs p
              JOIN submissions s ON s.id = p.submission_id
              JOIN orders o ON o.id = s.order_id
             WHERE p.status = 'pending_review' AND o.user_id = $1
             ORDER BY p.created_at, p.id LIMIT $2
            """,
            ctx.gom_id,
            REVIEW_PAGE,
        )
        if not rows:
            return [Reply(_(ctx, "No payment proofs are waiting for your review."), private=True)]
        total = int(rows[0]["total"])
        header = (
            _(ctx, "Payment proofs to review: {n}", n=total)
            if total <= REVIEW_PAGE
            else _(
                ctx,
                "Payment proofs to review: {n} (the oldest {shown} first)",
                n=total,
                shown=REVIEW_PAGE,
            )
        )
        replies = [Reply(header, private=True)]
        clock = events.RenderContext(ctx.locale, ctx.timezone)
        for r in rows:
            lines = [
                f"{r['buyer_name']} · {r['payment_reference']}",
                r["title"],
                _(ctx, "Amount due: {v}", v=format_money(r["total_amount"], r["currency"])),
                self._agent_line(ctx, r["agent_result"], r["checked_at"], r["currency"]),
                _(ctx, "Sent: {when}", when=clock.when(r["created_at"])),
            ]
            actions: list[tuple[Button, ...]] = [
                (
                    button(_(ctx, "Approve"), f"approve {r['id']}"),
                    button(_(ctx, "Reject"), f"reject {r['id']}"),
                )
            ]
            picture = ""
            if r["stored"]:
                url = image_url(self.settings, r["id"])
                if r["mime"] in _DISPLAYABLE:
                    picture = url
                else:
                    actions.append((Button(_(ctx, "Open the receipt"), url=url),))
            replies.append(
                Reply("\n".join(lines), buttons=tuple(actions), image_url=picture, private=True)
            )
        return replies

    def _agent_line(
        self,
        ctx: Context,
        result: dict[str, Any] | None,
        checked_at: datetime | None,
        currency: str,
    ) -> str:
        if checked_at is None:
            return _(ctx, "Smart Agent: still reading it")
        result = result or {}
        status = result.get("status")
        if status in ("unavailable", "refused"):
            return _(ctx, "Smart Agent: no answer; please check it yourself")
        if status != "answered":
            return _(ctx, "Smart Agent: not used; please check it yourself")
        match = result.get("match")
        parts = [
            _(
                ctx,
                "Smart Agent's certainty: {confidence}%",
                confidence=round(float(result.get("confidence") or 0) * 100),
            )
        ]
        if result.get("amount_read"):
            parts.append(
                _(
                    ctx,
                    "amount read: {v}",
                    v=format_money(
                        Decimal(result["amount_read"]),
                        result.get("currency_read") or currency,
                    ),
                )
            )
        if isinstance(match, dict):
            parts.append(
                _(
                    ctx,
                    "matches this order at {score}%",
                    score=round(float(match.get("match_score") or 0)),
                )
            )
        else:
            parts.append(_(ctx, "no match with this order"))
        return "; ".join(parts)

    async def approve(self, ctx: Context, args: str) -> list[Reply]:
        assert ctx.gom_id is not None
        proof_id = _uuid(args)
        outcome = await self.decide(
            proof_id,
            approve=True,
            actor=f"gom:{ctx.gom_id}",
            channel=ctx.sender.channel,
            gom_id=ctx.gom_id,
        )
        return [self._outcome_reply(ctx, outcome)]

    async def reject(self, ctx: Context, args: str) -> list[Reply]:
        """``reject <id>`` asks why; ``reject <id> amount|unreadable|account|other|<text>``."""
        assert ctx.gom_id is not None
        proof_id = _uuid(args)
        _id, _sep, reason = args.strip().partition(" ")
        reason = reason.strip()
        row = await self._owned(proof_id, ctx.gom_id)
        if row is None or row["status"] != "pending_review":
            return [self._outcome_reply(ctx, f"already_{row['status']}" if row else "not_found")]
        if not reason or reason.lower() == "other":
            if reason:
                await self.services.bot.ask_reject_reason(ctx, str(proof_id))
                return [
                    Reply(
                        _(ctx, "Type the reason the buyer will see, in one message."),
                        buttons=((button(_(ctx, "Cancel"), "/cancel"),),),
                        private=True,
                    )
                ]
            prefix = f"reject {proof_id}"
            return [
                Reply(
                    _(
                        ctx,
                        "Why are you rejecting {name}'s receipt for {ref}?",
                        name=row["buyer_name"],
                        ref=row["payment_reference"],
                    ),
                    buttons=(
                        (button(_(ctx, "Amount does not match"), f"{prefix} amount"),),
                        (button(_(ctx, "Cannot read it"), f"{prefix} unreadable"),),
                        (button(_(ctx, "Wrong account"), f"{prefix} account"),),
                        (
                            button(_(ctx, "Other reason"), f"{prefix} other"),
                            button(_(ctx, "Cancel"), "/cancel"),
                        ),
                    ),
                    private=True,
                )
            ]
        key = reason.lower() if reason.lower() in REASON_KEYS else ""
        outcome = await self.decide(
            proof_id,
            approve=False,
            actor=f"gom:{ctx.gom_id}",
            channel=ctx.sender.channel,
            gom_id=ctx.gom_id,
            reason_key=key,
            reason="" if key else reason[:MAX_REASON],
        )
        return [self._outcome_reply(ctx, outcome)]

    def _outcome_reply(self, ctx: Context, outcome: str) -> Reply:
        texts = {
            "approved": _(ctx, "Approved. The buyer has been told their payment is confirmed."),
            "rejected": _(
                ctx, "Rejected. The buyer has been told why, and how to send the receipt again."
            ),
            "already_approved": _(ctx, "This payment proof was already approved."),
            "already_rejected": _(ctx, "This payment proof was already rejected."),
            "already_superseded": _(
                ctx, "Another receipt for this order was approved; nothing to decide here."
            ),
        }
        return Reply(
            texts.get(outcome, _(ctx, "I could not find that payment proof among your orders.")),
            private=True,
        )

    async def _owned(self, proof_id: UUID | None, gom_id: UUID) -> asyncpg.Record | None:
        if proof_id is None:
            return None
        return await self.pool.fetchrow(
            """
            SELECT p.status, s.buyer_name, s.payment_reference
              FROM payment_proofs p
              JOIN submissions s ON s.id = p.submission_id
              JOIN orders o ON o.id = s.order_id
             WHERE p.id = $1 AND o.user_id = $2
            """,
            proof_id,
            gom_id,
        )

    # -- deciding ------------------------------------------------------------------------

    async def decide(
        self,
        proof_id: UUID | None,
        *,
        approve: bool,
        actor: str,
        channel: str,
        gom_id: UUID | None = None,
        reason_key: str = "",
        reason: str = "",
        agent_result: dict[str, Any] | None = None,
    ) -> str:
        """Approve or reject one pending proof, atomically with its audit and notices.

        ``gom_id``: the deciding GOM, who must own the order (None only for the agent).
        Returns approved, rejected, already_<status> or not_found.
        """
        if proof_id is None:
            return "not_found"
        now = datetime.now(UTC)
        drop = self.settings.auto_delete_processed_images
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                SELECT p.status, p.submission_id, s.status AS submission_status,
                       s.buyer_name, s.payment_reference, s.total_amount, s.currency,
                       o.title, o.user_id
                  FROM payment_proofs p
                  JOIN submissions s ON s.id = p.submission_id
                  JOIN orders o ON o.id = s.order_id
                 WHERE p.id = $1
                   FOR UPDATE OF p
                """,
                proof_id,
            )
            if row is None or (gom_id is not None and row["user_id"] != gom_id):
                return "not_found"
            if row["status"] != "pending_review":
                return f"already_{row['status']}"
            status = "approved" if approve else "rejected"
            stored_reason = reason or (reason_texts("en")[reason_key] if reason_key else "")
            await conn.execute(
                """
                UPDATE payment_proofs
                   SET status = $2, decided_by = $3, decided_at = $4, reason = $5,
                       agent_result = coalesce($6::jsonb, agent_result),
                       checked_at = coalesce(checked_at, $4),
                       content = CASE WHEN $7 THEN NULL ELSE content END
                 WHERE id = $1
                """,
                proof_id,
                status,
                actor,
                now,
                stored_reason or None,
                agent_result,
                drop,
            )
            submission_after = row["submission_status"]
            if approve:
                paid = await conn.fetchval(
                    "UPDATE submissions SET status = 'paid' WHERE id = $1"
                    " AND status IN ('pending', 'failed', 'expired') RETURNING status",
                    row["submission_id"],
                )
                submission_after = paid or submission_after
                # Other receipts for the same payment need no decision any more.
                await conn.execute(
                    """
                    UPDATE payment_proofs
                       SET status = 'superseded', decided_by = $3, decided_at = $4,
                           content = CASE WHEN $5 THEN NULL ELSE content END
                     WHERE submission_id = $1 AND id <> $2 AND status = 'pending_review'
                    """,
                    row["submission_id"],
                    proof_id,
                    actor,
                    now,
                    drop,
                )
            await _audit(
                conn,
                actor=actor,
                action=f"payment_proof.{'approve' if approve else 'reject'}",
                channel=channel,
                proof_id=proof_id,
                result=status,
                detail={
                    "submission_id": str(row["submission_id"]),
                    "reference": row["payment_reference"],
                    "before": {"proof": row["status"], "submission": row["submission_status"]},
                    "after": {"proof": status, "submission": submission_after},
                    "reason": stored_reason or None,
                    "image_deleted": drop,
                },
            )
            if approve:
                notices = await self._approval_notices(conn, row, by_agent=gom_id is None, now=now)
            else:
                text = await _buyer_reason(conn, row["submission_id"], reason_key, reason)
                notices = [
                    await notify.send(
                        self.services,
                        "payment_rejected",
                        {"reason": text},
                        [{"submission_id": str(row["submission_id"])}],
                        source="payment_proofs",
                        now=now,
                        conn=conn,
                    )
                ]
        for notice in notices:
            await notify.enqueue(self.services, notice)
        return status

    async def _approval_notices(
        self, conn: Connection, row: asyncpg.Record, *, by_agent: bool, now: datetime
    ) -> list[notify.NotifyResult]:
        """payment_confirmed to the buyer; payment_received to the GOM if they did not decide."""
        notices = [
            await notify.send(
                self.services,
                "payment_confirmed",
                {},
                [{"submission_id": str(row["submission_id"])}],
                source="payment_proofs",
                now=now,
                conn=conn,
            )
        ]
        if by_agent:
            notices.append(
                await notify.send(
                    self.services,
                    "payment_received",
                    _gom_alert_data(row),
                    [{"gom_id": str(row["user_id"])}],
                    source="payment_proofs",
                    now=now,
                    conn=conn,
                )
            )
        return notices


async def _buyer_reason(conn: Connection, submission_id: UUID, key: str, text: str) -> str:
    """A common reason in the buyer's own language; a typed one as the GOM wrote it."""
    if not key:
        return text
    found = await contacts.for_submissions(conn, submission_id=submission_id)
    locale = found[0].locale if found else "en"
    return reason_texts(locale)[key]


async def _audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    channel: str,
    proof_id: UUID,
    result: str,
    detail: dict[str, Any],
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_log (direction, actor, action, channel, subject, result, detail)
        VALUES ('admin', $1, $2, $3, $4, $5, $6::jsonb)
        """,
        actor,
        action,
        channel,
        str(proof_id),
        result,
        detail,
    )


def _gom_alert_data(row: asyncpg.Record) -> dict[str, Any]:
    """What the GOM's payment alerts say about a submission (needs review / received)."""
    return {
        "buyer_name": row["buyer_name"],
        "order_title": row["title"],
        "amount": str(row["total_amount"]),
        "currency": row["currency"],
        "reference": row["payment_reference"],
    }
