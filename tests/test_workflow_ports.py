"""The seams of the workflows: a notification's rows and its enqueue as one unit, and workflows
that depend on narrow ports, not on the composition root."""

from __future__ import annotations

import ast
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gomflow_messaging import workflows
from gomflow_messaging.bootstrap import Services, build_services
from gomflow_messaging.workflows import notify


@pytest.fixture
async def services(make_settings: Any) -> AsyncIterator[Services]:
    svc = await build_services(make_settings(queue_name=f"test-ports-{uuid.uuid4().hex[:8]}"))
    yield svc
    await svc.queue.redis.delete(svc.queue.doorbell("sandbox"))
    await svc.close()


async def _stored(conn: asyncpg.Connection, message_id: uuid.UUID) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM messages WHERE id = $1", message_id)
    return count


async def test_a_notification_is_enqueued_once_its_transaction_commits(
    services: Services, conn: asyncpg.Connection
) -> None:
    recipient = {"channel": "sandbox", "address": f"unit-{uuid.uuid4().hex[:8]}"}
    async with notify.transaction(services) as batch:
        result = await batch.send("custom", {"text": "hello"}, [recipient], source="test")
        [message] = result.body["messages"]
        message_id = uuid.UUID(message["id"])
        # Not before the commit: a worker would find no row, and the row could still vanish.
        assert await _rings(services) == 0
        assert await _stored(conn, message_id) == 0
    assert await _stored(conn, message_id) == 1
    assert await _rings(services) == 1


async def test_a_failed_transaction_keeps_and_enqueues_nothing(
    services: Services, conn: asyncpg.Connection
) -> None:
    recipient = {"channel": "sandbox", "address": f"unit-{uuid.uuid4().hex[:8]}"}
    with pytest.raises(RuntimeError):
        async with notify.transaction(services) as batch:
            result = await batch.send("custom", {"text": "hello"}, [recipient], source="test")
            raise RuntimeError("the caller's own next statement failed")
    message_id = uuid.UUID(result.body["messages"][0]["id"])
    assert await _stored(conn, message_id) == 0
    assert await _rings(services) == 0


async def _rings(services: Services) -> int:
    """Rings waiting on the sandbox's doorbell (a notify rings it after its commit)."""
    count: int = await services.queue.redis.llen(services.queue.doorbell("sandbox"))  # type: ignore[misc]
    return count


def test_no_workflow_imports_the_composition_root() -> None:
    """Workflows get `Ports`, not the container: not even for typing (an import circle
    through bootstrap, the dispatcher and metrics closed that way)."""
    package = Path(workflows.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(n.startswith("gomflow_messaging.bootstrap") for n in names):
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []
