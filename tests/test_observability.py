"""Metrics, JSON logs that follow a request id to the delivery, and the SAQ UI, all behind
the secret."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gomflow_messaging import logs
from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, SECRET, eventually, running_app


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def statuses(client: httpx.AsyncClient, ids: list[str]) -> list[str]:
    found = []
    for message_id in ids:
        response = await client.get(f"/api/messages/{message_id}", headers=AUTH)
        found.append(response.json()["status"])
    return found


async def test_metrics_need_the_secret_and_count_what_happened(settings: Settings) -> None:
    async with running_app(settings) as client:
        assert (await client.get("/metrics")).status_code == 401
        before = await scrape(client)
        text = unique_text("metrics")
        response = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": text},
                "recipients": [{"channel": "sandbox", "address": f"{text}-{n}"} for n in range(3)]
                + [
                    {"channel": "sandbox", "address": f"fail:{text}"},
                    {"channel": "sandbox", "address": f"flaky:{text}"},
                ],
            },
            headers=AUTH,
        )
        ids = [m["id"] for m in response.json()["messages"]]

        async def finished() -> bool:
            return set(await statuses(client, ids)) <= {"sent", "failed"}

        await eventually(finished)
        after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gomflow_messages_total", channel="sandbox", status="sent") >= 4
    assert delta("gomflow_messages_total", channel="sandbox", status="failed") >= 1
    assert delta("gomflow_messages_total", channel="sandbox", status="retry") >= 1
    assert delta("gomflow_messages_accepted_total", channel="sandbox", status="queued") >= 5
    assert delta("gomflow_delivery_retries_total", platform="sandbox", code="http_503") >= 1
    assert delta("gomflow_delivery_latency_seconds_count", channel="sandbox") >= 4
    assert ("gomflow_queue_depth", (("state", "queued"),)) in after
    assert ("gomflow_outbox_pending", (("channel", "sandbox"), ("status", "queued"))) in after
    assert value(after, "process_resident_memory_bytes") > 0


async def test_429s_retries_and_forged_webhooks_are_counted(
    make_settings: Callable[..., Settings], fake_telegram: FakeTelegram
) -> None:
    settings = make_settings(
        enable_telegram=True,
        telegram_bot_token=fake_telegram.token,
        telegram_webhook_secret="metrics-secret_0123456789",
        telegram_api_base_url=fake_telegram.url,
    )
    # Telegram messages earlier tests left queued would be sent by this test's worker (a
    # worker leaves a channel it lacks to one that has it) and counted with ours: they are no
    # concern of this test, so they end before it starts.
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE messages SET status = 'failed' WHERE channel = 'telegram'"
            " AND status IN ('queued', 'sending')"
        )
    finally:
        await conn.close()
    fake_telegram.fail_next("rate_limited", retry_after=1)
    async with running_app(settings) as client:
        before = await scrape(client)
        forged = await client.post(
            "/webhook/telegram",
            json={"update_id": 1},
            headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
        )
        assert forged.status_code == 401
        response = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": "paced"},
                "recipients": [{"channel": "telegram", "address": "700001234"}],
            },
            headers=AUTH,
        )
        message_id = response.json()["messages"][0]["id"]
        await eventually(lambda: _is_sent(client, message_id))
        after = await scrape(client)
    assert len(fake_telegram.sent("700001234")) == 1

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gomflow_webhook_verification_failures_total", platform="telegram") == 1
    assert delta("gomflow_platform_rate_limited_total", platform="telegram") == 1
    assert delta("gomflow_delivery_retries_total", platform="telegram", code="rate_limited") == 1
    assert delta("gomflow_messages_total", channel="telegram", status="sent") == 1


async def _is_sent(client: httpx.AsyncClient, message_id: str) -> bool:
    return (await statuses(client, [message_id])) == ["sent"]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Logs as the CLI configures them, into a buffer; the test's own handlers restored."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("saq").level)
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("saq").setLevel(saved[2])


async def test_request_id_follows_a_message_from_notify_to_delivery(
    settings: Settings, conn: asyncpg.Connection, json_log: io.StringIO
) -> None:
    request_id = unique_text("req")
    async with running_app(settings) as client:
        response = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": "traced"},
                "recipients": [{"channel": "sandbox", "address": request_id}],
            },
            headers={**AUTH, "X-Request-ID": request_id},
        )
        assert response.headers["x-request-id"] == request_id
        message_id = response.json()["messages"][0]["id"]
        await eventually(lambda: _is_sent(client, message_id))
    stored = await conn.fetchval(
        "SELECT n.request_id FROM notifications n JOIN messages m ON m.notification_id = n.id"
        " WHERE m.id = $1",
        uuid.UUID(message_id),
    )
    assert stored == request_id
    audit = await conn.fetchrow(
        "SELECT a.actor, a.detail FROM audit_log a JOIN messages m"
        " ON a.subject = m.notification_id::text WHERE m.id = $1 AND a.action = 'notify'",
        uuid.UUID(message_id),
    )
    assert audit is not None and audit["actor"] == "api"
    assert audit["detail"] == {
        "event": "custom",
        "messages": 1,
        "queued": 1,
        "request_id": request_id,
    }
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    traced = [line for line in lines if line.get("request_id") == request_id]
    accepted = [line for line in traced if line["logger"] == "gomflow_messaging.workflows.notify"]
    delivered = [line for line in traced if line.get("message_id") == message_id]
    assert accepted and "1 queued" in accepted[0]["message"]
    assert delivered and delivered[0]["logger"] == "gomflow_messaging.dispatcher"
    assert delivered[0]["channel"] == "sandbox" and " sent on sandbox" in delivered[0]["message"]


def test_log_format_is_json_in_production(database_url: str) -> None:
    def make(**values: Any) -> Settings:
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database_url,
            service_secret=SECRET,
            **values,
        )

    assert make(environment="production").log_format == "json"
    assert make(environment="development").log_format == "text"
    assert make(environment="production", log_format="text").log_format == "text"


async def test_saq_ui_needs_the_secret(settings: Settings) -> None:
    basic = base64.b64encode(f"ops:{SECRET}".encode()).decode()
    wrong = base64.b64encode(b"ops:not-the-secret").decode()
    async with running_app(settings) as client:
        refused = await client.get("/saq/api/queues")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        forged = await client.get("/saq/api/queues", headers={"Authorization": f"Basic {wrong}"})
        assert forged.status_code == 401
        for header in (AUTH["Authorization"], f"Basic {basic}"):
            queues = await client.get("/saq/api/queues", headers={"Authorization": header})
            assert queues.status_code == 200
            assert [q["name"] for q in queues.json()["queues"]] == [settings.queue_name]
        page = await client.get("/saq/", headers=AUTH)
        assert page.status_code == 200 and "<html" in page.text.lower()

        async def workers() -> dict[str, Any]:
            queues = (await client.get("/saq/api/queues", headers=AUTH)).json()["queues"]
            found: dict[str, Any] = queues[0]["workers"]
            return found

        # The live worker is listed (its id once held colons, and SAQ showed none); workers
        # of the run's earlier apps may still be listed until their info expires.
        listed = await eventually(workers)
        assert {w["queue_key"] for w in listed.values()} == {settings.queue_name}
