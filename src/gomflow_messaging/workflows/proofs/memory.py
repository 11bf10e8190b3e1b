"""How many receipts one process holds in memory at once: PROOF_MAX_IN_MEMORY for intake
(download, hash, store) and as many for the Smart Agent's jobs (read, send).

A receipt is up to MAX_FILE_SIZE bytes and is copied on its way to Postgres, so thirty
uploads at once would hold thirty of them; past the bound an upload waits its turn. A
concurrency bound, not state: every replica has its own (one per event loop, since an
asyncio primitive belongs to the loop it first waited on).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Literal

_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def gate(kind: Literal["intake", "agent"], size: int) -> asyncio.Semaphore:
    """This loop's semaphore for ``kind`` (created with ``size`` permits on first use)."""
    gates = _gates.setdefault(asyncio.get_running_loop(), {})
    if kind not in gates:
        gates[kind] = asyncio.Semaphore(size)
    return gates[kind]
