"""The Smart Agent's job: it reads one receipt, and its answer approves it or goes to the GOM.

A SAQ job (so a slow agent never holds a webhook). Its word approves the payment only for a
confident match of THAT submission; anything else (unsure, another submission, requires
review, no answer, not configured) puts the proof in the GOM's queue. `sweep` asks again
about proofs whose job was lost, and gives them to the GOM after AGENT_GIVE_UP_SECONDS.
"""

from __future__ import annotations

import logging
import tempfile
from typing import TYPE_CHECKING, Any, BinaryIO

from redis.exceptions import RedisError

from gomflow_messaging.smart_agent import (
    AGENT_TYPES,
    AgentRefused,
    AgentUnavailable,
    Receipt,
    SmartAgent,
    judge,
)
from gomflow_messaging.workflows.proofs.memory import gate
from gomflow_messaging.workflows.proofs.review import Review

if TYPE_CHECKING:
    from uuid import UUID

    from gomflow_messaging.workflows.ports import Ports

log = logging.getLogger(__name__)

PROOF_JOB = "check_payment_proof"
#: A proof the agent has not answered about in this long goes to the GOM's review.
AGENT_GIVE_UP_SECONDS = 3600
#: Bytes of a receipt read from Postgres at a time for the agent.
_SLICE = 1024 * 1024
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "application/pdf": ".pdf",
}


class AgentCheck:
    """Asking the Smart Agent; one per process, stateless."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.settings = ports.settings
        self.pool = ports.pool
        self.review = Review(ports)

    async def start(self, proof_id: UUID) -> bool:
        """True when the Smart Agent will read the receipt (in a job); else it goes to the GOM."""
        if not self.settings.smart_agent_enabled:
            await self.review.to_review(proof_id, {"status": "not_used"})
            return False
        try:
            await self._enqueue(proof_id)
        except (RedisError, OSError) as exc:
            log.warning("proof %s not queued for the agent (%s)", proof_id, type(exc).__name__)
            await self.review.to_review(proof_id, {"status": "unavailable", "error": "queue"})
            return False
        return True

    async def _enqueue(self, proof_id: UUID) -> bool:
        """The agent's job, keyed by proof: False when one is already waiting or running."""
        per_try = self.settings.smart_agent_timeout_seconds + 5
        job = await self.ports.queue.saq.enqueue(
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
                await self.review.to_review(
                    row["id"], {"status": "unavailable", "error": "no_answer"}
                )
                given_up += 1
            elif await self._enqueue(row["id"]):
                re_enqueued += 1
        if re_enqueued or given_up:
            log.info("proof sweeper: %d re-enqueued, %d to the GOM", re_enqueued, given_up)
        return {"re_enqueued": re_enqueued, "given_up": given_up}

    async def check(self, proof_id: UUID) -> dict[str, Any]:
        """Ask the agent about one proof; approve on a confident match, else to the GOM."""
        async with gate("agent", self.settings.proof_max_in_memory):
            return await self._check(proof_id)

    async def _spool(self, proof_id: UUID, size: int) -> BinaryIO:
        """The receipt in a temporary file, read from Postgres a slice at a time: fetched
        whole, a 20 MB receipt raised the peak by 30 MB; the upload reads the file in chunks."""
        spooled = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the caller)
        for start in range(1, size + 1, _SLICE):
            piece = await self.pool.fetchval(
                "SELECT substring(content FROM $2 FOR $3) FROM payment_proofs WHERE id = $1",
                proof_id,
                start,
                _SLICE,
            )
            spooled.write(piece or b"")
        spooled.seek(0)
        return spooled

    async def _check(self, proof_id: UUID) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            """
            SELECT p.status, p.checked_at, p.content IS NOT NULL AS stored, p.size, p.mime,
                   p.channel, p.submission_id, s.order_id, s.currency,
                   s.status AS submission_status
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
            or not row["stored"]
            or row["mime"] not in AGENT_TYPES
        ):
            summary = {"status": "not_used"}
        else:
            receipt = Receipt(
                content=await self._spool(proof_id, row["size"]),
                filename="receipt" + _EXTENSIONS.get(row["mime"], ""),
                mime=row["mime"],
                platform=row["channel"],
                submission_id=row["submission_id"],
                order_id=row["order_id"],
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
                    answer,
                    row["submission_id"],
                    self.settings.smart_agent_auto_approve_threshold,
                )
                summary = verdict.summary
                if verdict.auto_approve and row["submission_status"] == "pending":
                    outcome = await self.review.decide(
                        proof_id,
                        approve=True,
                        actor="smart_agent",
                        channel=row["channel"],
                        agent_result=summary,
                    )
                    return {"outcome": outcome}
            finally:
                receipt.content.close()
        await self.review.to_review(proof_id, summary)
        return {"outcome": "review", "agent": summary["status"]}
