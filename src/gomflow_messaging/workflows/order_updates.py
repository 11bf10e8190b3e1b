"""A GOM's update to every buyer of one order (a text, sent as written), audited.

The web console's "send an update" calls it; every buyer hears it on their own chats,
honouring STOP, preferences and quiet hours like any notification (event ``custom``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gomflow_messaging.workflows import audit, notify

if TYPE_CHECKING:
    from uuid import UUID

    from gomflow_messaging.workflows.ports import Ports

MAX_TEXT = 1000


async def send_update(ports: Ports, gom_id: UUID, order_id: UUID, text: str, *, place: str) -> int:
    """Send ``text`` to the buyers of the GOM's own order; how many messages were queued.

    The caller has checked that the order is this GOM's.
    """
    result = await notify.send(
        ports,
        "custom",
        {"text": text[:MAX_TEXT]},
        [{"order_id": str(order_id)}],
        source=place,
        now=datetime.now(UTC),
    )
    queued = sum(1 for m in result.body["messages"] if m["status"] == "queued")
    await audit.admin(
        ports.pool,
        actor=f"gom:{gom_id}",
        action="order.update",
        channel=place,
        subject=str(order_id),
        result="sent",
        detail={"messages": len(result.body["messages"]), "queued": queued},
    )
    return queued
