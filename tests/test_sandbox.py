"""The sandbox channel records sends by group commit: sends made at the same moment share one
statement, each still gets its own row, a repeat is counted, and a send given up does not take
the others with it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from gomflow_messaging import db
from gomflow_messaging.channels.base import Button, OutboundMessage, TemplateRef
from gomflow_messaging.channels.sandbox.channel import SandboxChannel, _payload
from gomflow_messaging.errors import PermanentError


class CountingPool:
    """A real pool that counts the statements (and connections taken) that pass through it."""

    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool
        self.statements = 0

    def acquire(self) -> Any:
        self.statements += 1
        return self._pool.acquire()

    async def fetch(self, *args: Any) -> Any:
        self.statements += 1
        return await self._pool.fetch(*args)

    async def fetchval(self, *args: Any) -> Any:
        self.statements += 1
        return await self._pool.fetchval(*args)


def message(address: str, text: str = "hello") -> OutboundMessage:
    return OutboundMessage(message_id=uuid.uuid4(), address=address, text=text)


async def test_sends_at_the_same_moment_are_recorded_in_few_statements(pool: db.Pool) -> None:
    counting = CountingPool(pool)
    channel = SandboxChannel(counting)  # type: ignore[arg-type]
    run = uuid.uuid4().hex[:8]
    messages = [message(f"group-{run}-{i}", f"text {i}") for i in range(20)]

    results = await asyncio.gather(*(channel.send(m) for m in messages))

    rows = await pool.fetch(
        "SELECT id, message_id, address, payload, deliveries FROM sandbox_messages"
        " WHERE address LIKE $1",
        f"group-{run}-%",
    )
    by_message = {row["message_id"]: row for row in rows}
    assert len(rows) == 20
    for sent, result in zip(messages, results, strict=True):
        row = by_message[sent.message_id]
        assert result.provider_message_id == f"sandbox-{row['id']}"
        assert (row["address"], row["payload"]["text"], row["deliveries"]) == (
            sent.address,
            sent.text,
            1,
        )
    # One write for the first send, one for the nineteen that came while it was in flight.
    assert counting.statements <= 3, counting.statements


async def test_a_repeat_in_one_write_is_counted_as_a_further_delivery(pool: db.Pool) -> None:
    channel = SandboxChannel(pool)
    again = message(f"repeat-{uuid.uuid4().hex[:8]}")
    first, second = await asyncio.gather(channel.send(again), channel.send(again))
    assert first == second
    third = await channel.send(again)
    assert third == first
    deliveries = await pool.fetchval(
        "SELECT deliveries FROM sandbox_messages WHERE message_id = $1", again.message_id
    )
    assert deliveries == 3


async def test_a_send_given_up_does_not_hold_back_the_others(pool: db.Pool) -> None:
    channel = SandboxChannel(pool)
    run = uuid.uuid4().hex[:8]
    messages = [message(f"cancel-{run}-{i}") for i in range(10)]
    tasks = [asyncio.create_task(channel.send(m)) for m in messages]
    await asyncio.sleep(0)
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert all(not isinstance(d, BaseException) for i, d in enumerate(done) if i != 3)
    # The nine are stored; the tenth may be too (a platform may deliver what nobody awaited).
    stored = await pool.fetchval(
        "SELECT count(*) FROM sandbox_messages WHERE address LIKE $1", f"cancel-{run}-%"
    )
    assert stored in (9, 10)
    await channel.close()


async def test_a_message_postgres_refuses_fails_alone(pool: db.Pool) -> None:
    channel = SandboxChannel(pool)
    run = uuid.uuid4().hex[:8]
    messages = [message(f"refused-{run}-{i}") for i in range(5)]
    messages[2] = message(f"refused-{run}-2", "a NUL \x00 Postgres cannot store")
    done = await asyncio.gather(*(channel.send(m) for m in messages), return_exceptions=True)
    assert isinstance(done[2], PermanentError)
    assert done[2].code == "rejected"
    assert all(not isinstance(d, BaseException) for i, d in enumerate(done) if i != 2)
    stored = await pool.fetchval(
        "SELECT count(*) FROM sandbox_messages WHERE address LIKE $1", f"refused-{run}-%"
    )
    assert stored == 4


def test_the_stored_payload_holds_every_field_but_the_id_and_the_address() -> None:
    full = OutboundMessage(
        message_id=uuid.uuid4(),
        address="a",
        text="t",
        event="payment_reminder",
        locale="ms",
        buttons=((Button("Pay", action="pay"), Button("Site", url="https://x.example")),),
        image_url="https://x.example/i.png",
        template=TemplateRef("payment_reminder", {"1": "Ana"}),
        extra={"k": "v"},
    )
    payload = _payload(full)
    expected = dataclasses.asdict(full)
    expected.pop("message_id")
    expected.pop("address")
    expected["buttons"] = [list(row) for row in expected["buttons"]]
    assert payload == expected
