"""Receipt images are not kept for ever: the proof-images job deletes the bytes, keeps the row.

A receipt's image (decided or still waiting) is deleted PROOF_IMAGE_RETENTION_DAYS after it
arrived; with AUTO_DELETE_PROCESSED_IMAGES a decided one's image goes at once (`Review.decide`
drops it; this job catches any left behind, a setting turned on later included). The row,
its sha256 (so the same file is still "already received"), the decision and the audit stay.
A receipt still waiting for the buyer to say which order it pays is deleted after an hour.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from gomflow_messaging.workflows.proofs.intake import CHOICE_SECONDS

if TYPE_CHECKING:
    from datetime import datetime

    from gomflow_messaging.workflows.ports import Ports

#: Rows updated per statement, so one run never holds a long lock over many large rows.
BATCH = 500


async def purge_images(ports: Ports, at: datetime) -> dict[str, Any]:
    settings = ports.settings
    cutoff = at - timedelta(days=settings.proof_image_retention_days)
    deleted = 0
    while True:
        status = await ports.pool.execute(
            """
            UPDATE payment_proofs SET content = NULL
             WHERE id IN (
                SELECT id FROM payment_proofs
                 WHERE content IS NOT NULL
                   AND (created_at < $1
                        OR ($2 AND status IN ('approved', 'rejected', 'superseded')))
                 LIMIT $3)
            """,
            cutoff,
            settings.auto_delete_processed_images,
            BATCH,
        )
        count = int(status.split()[-1])
        deleted += count
        if count < BATCH:
            break
    unclaimed = await ports.pool.execute(
        "DELETE FROM payment_proofs WHERE status = 'awaiting_submission'"
        " AND created_at < $1::timestamptz - make_interval(secs => $2)",
        at,
        CHOICE_SECONDS,
    )
    return {"images_deleted": deleted, "unclaimed_deleted": int(unclaimed.split()[-1])}
