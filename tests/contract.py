"""The contract every channel adapter passes, run against each platform's fake server.

A harness starts the adapter against its platform (a fake server on loopback driven by the
real SDK) and tells what the platform received. Faults a platform cannot show (the sandbox
has no 429) raise `Unsupported` and the test is skipped for that channel only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from gomflow_messaging.channels.base import Channel

#: ``accepted_lost``: the platform accepts the message (the person sees it), and its answer
#: never arrives: the sender's request times out, as when a connection drops on the way back.
Fault = Literal["rate_limited", "server_error", "hang", "accepted_lost"]


class Unsupported(Exception):
    """This platform has no such fault."""


@dataclass
class Received:
    """One message as the platform got it, reduced to what every platform shares."""

    address: str
    text: str
    buttons: list[str] = field(default_factory=list)  # labels, row after row
    image_url: str = ""


class Harness(Protocol):
    name: str
    #: Longest text one platform message carries (0: no limit); longer text is split.
    max_text: int

    async def start(self) -> Channel:
        """The adapter, started, pointed at this harness's fake platform."""
        ...

    def address(self, n: int) -> str:
        """A valid, reachable recipient (distinct for each n)."""
        ...

    def blocked_address(self) -> str:
        """A recipient who blocked us / cannot be messaged: a permanent failure."""
        ...

    async def received(self, address: str) -> list[Received]: ...

    #: How many extra copies a retry of a send whose answer was lost makes: 0 where the
    #: platform recognises the retry (Discord's nonce), 1 where it has no idempotency key.
    duplicates_after_lost_answer: int

    async def fail_next(self, fault: Fault, retry_after: float = 2.0) -> None:
        """Make the platform's next answer this fault, or raise Unsupported."""
        ...

    async def close(self) -> None: ...


async def recent_contacts(pool: Any, channel: str, addresses: list[str]) -> list[UUID]:
    """Contacts who wrote from these addresses just now (inside a 24-hour window), for the
    harnesses of channels that may only answer people who wrote recently."""
    ids: list[UUID] = []
    for address in addresses:
        contact_id = await pool.fetchval(
            "INSERT INTO contacts (display_name) VALUES ('contract') RETURNING id"
        )
        ids.append(contact_id)
        await pool.execute(
            """
            INSERT INTO contact_addresses (contact_id, channel, address, last_inbound_at)
            VALUES ($1, $2, $3, now())
            ON CONFLICT (channel, address) DO UPDATE SET last_inbound_at = now()
            """,
            contact_id,
            channel,
            address,
        )
    return ids
