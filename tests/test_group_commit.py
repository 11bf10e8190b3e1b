"""GroupCommit: what arrives during a write goes in the next one; every caller hears its own
outcome, including when the write they shared failed."""

from __future__ import annotations

import asyncio

import pytest

from gomflow_messaging.group_commit import GroupCommit


class Store:
    """A store whose writes a test can hold open (``gate``) and see start (``entered``)."""

    def __init__(self, fail: bool = False, *, held: bool = False) -> None:
        self.writes: list[list[int]] = []
        self.fail = fail
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()

    async def write(self, items: list[int]) -> list[int | BaseException]:
        self.writes.append(items)
        self.entered.set()
        await self.gate.wait()  # the round trip, as long as the test holds it
        if self.fail:
            raise ConnectionResetError("store away")
        return [ValueError(f"odd {i}") if i == 13 else i * 10 for i in items]


async def test_items_arriving_during_a_write_go_together_in_the_next() -> None:
    store = Store(held=True)
    group: GroupCommit[int, int] = GroupCommit(store.write)
    first = asyncio.create_task(group.add(1))
    await store.entered.wait()  # the first write is in flight, held open
    rest = asyncio.gather(*(group.add(i) for i in range(2, 7)))
    await asyncio.sleep(0)  # one turn of the loop: the five are added while it is held
    store.gate.set()
    assert await first == 10 and await rest == [20, 30, 40, 50, 60]
    assert store.writes == [[1], [2, 3, 4, 5, 6]]


async def test_each_caller_hears_its_own_outcome() -> None:
    group: GroupCommit[int, int] = GroupCommit(Store().write)
    outcomes = await asyncio.gather(*(group.add(i) for i in (12, 13, 14)), return_exceptions=True)
    assert outcomes[0] == 120 and outcomes[2] == 140
    assert isinstance(outcomes[1], ValueError)


async def test_a_failed_write_fails_every_caller_it_carried() -> None:
    group: GroupCommit[int, int] = GroupCommit(Store(fail=True).write)
    outcomes = await asyncio.gather(*(group.add(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, ConnectionResetError) for o in outcomes)


async def test_a_caller_that_stops_waiting_does_not_cancel_the_shared_write() -> None:
    store = Store(held=True)
    group: GroupCommit[int, int] = GroupCommit(store.write)
    waiting = [asyncio.create_task(group.add(i)) for i in range(3)]
    await store.entered.wait()  # their shared write is in flight
    waiting[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting[0]
    store.gate.set()
    assert [await w for w in waiting[1:]] == [10, 20]
    assert store.writes == [[0, 1, 2]]
    await group.close()
