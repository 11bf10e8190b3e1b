"""The public API: auth, validation errors naming the field, notify to the sandbox, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.helpers import AUTH, SECRET, running_app, wait_status


def custom(text: str, address: str = "api-tester", **extra: Any) -> dict[str, Any]:
    return {
        "event": "custom",
        "data": {"text": text},
        "recipients": [{"channel": "sandbox", "address": address}],
        **extra,
    }


async def sandbox_texts(client: httpx.AsyncClient, address: str) -> list[str]:
    response = await client.get("/api/sandbox/messages", params={"address": address}, headers=AUTH)
    assert response.status_code == 200
    return [m["payload"]["text"] for m in response.json()["messages"]]


async def test_custom_event_reaches_the_sandbox(settings: Settings) -> None:
    text = unique_text("hello")
    async with running_app(settings) as client:
        response = await client.post("/api/notify", json=custom(text, "alice"), headers=AUTH)
        assert response.status_code == 202, response.text
        body = response.json()
        [entry] = body["messages"]
        assert entry["channel"] == "sandbox" and entry["address"] == "alice"
        assert entry["status"] == "queued"
        status = await wait_status(client, entry["id"], "sent")
        assert status["attempts"] == 1
        assert status["attempt_log"][0]["outcome"] == "sent"
        assert text in await sandbox_texts(client, "alice")
        assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": SECRET},
        {"Authorization": f"Basic {SECRET}"},
    ],
)
async def test_wrong_or_missing_secret_is_401(settings: Settings, headers: dict[str, str]) -> None:
    async with running_app(settings, mode="web") as client:
        response = await client.post("/api/notify", json=custom("x"), headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        for path in ("/api/sandbox/messages", "/api/messages/00000000-0000-0000-0000-000000000000"):
            assert (await client.get(path, headers=headers)).status_code == 401


async def test_previous_secret_accepted_while_rotating(make_settings: Any) -> None:
    previous = "previous-secret-previous-secret-000000"
    settings = make_settings(service_secret_previous=previous)
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            json=custom(unique_text()),
            headers={"Authorization": f"Bearer {previous}"},
        )
        assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {"text": "x"}, "recipients": [{"channel": "sandbox", "address": "a"}]}, "event"),
        ({"event": "custom", "data": {"text": "x"}}, "recipients"),
        ({"event": "custom", "data": {"text": "x"}, "recipients": []}, "recipients"),
        (
            {"event": "nope", "data": {}, "recipients": [{"channel": "sandbox", "address": "a"}]},
            "event",
        ),
        (
            {"event": "custom", "data": {}, "recipients": [{"channel": "sandbox", "address": "a"}]},
            "data.text",
        ),
        (
            {
                "event": "custom",
                "data": {"text": "x" * 5000},
                "recipients": [{"channel": "sandbox", "address": "a"}],
            },
            "data.text",
        ),
        (
            {
                "event": "custom",
                "data": {"text": "x"},
                "recipients": [{"channel": "pigeon", "address": "a"}],
            },
            "recipients.0.channel",
        ),
        (
            {
                "event": "custom",
                "data": {"text": "x"},
                "recipients": [{"channel": "telegram", "address": "1"}],
            },
            "recipients.0.channel",
        ),
        (
            {
                "event": "custom",
                "data": {"text": "x"},
                "recipients": [{"order_id": "00000000-0000-4000-8000-00000000ffff"}],
            },
            "recipients.0.order_id",
        ),
        (
            {
                "event": "custom",
                "data": {"text": "x"},
                "recipients": [{"submission_id": "not-a-uuid"}],
            },
            "recipients.0.submission_id",
        ),
        (
            {
                "event": "custom",
                "data": {"text": "x"},
                "send_at": "2026-12-01T09:00:00",
                "recipients": [{"channel": "sandbox", "address": "a"}],
            },
            "send_at",
        ),
        (
            {
                "event": "custom",
                "data": {"text": "x"},
                "locale": "ko",
                "recipients": [{"channel": "sandbox", "address": "a"}],
            },
            "locale",
        ),
    ],
)
async def test_validation_error_names_the_field(
    settings: Settings, body: dict[str, Any], field: str
) -> None:
    async with running_app(settings, mode="web") as client:
        response = await client.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert field in error["fields"], error


async def test_an_unknown_channel_is_one_error_naming_the_channels_there_are(
    settings: Settings,
) -> None:
    body = {
        "event": "custom",
        "data": {"text": "x"},
        "recipients": [
            {"gom_id": "00000000-0000-4000-8000-000000000001"},
            {"channel": "sms", "address": "+639170000001"},
        ],
    }
    async with running_app(settings, mode="web") as client:
        response = await client.post("/api/notify", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        fields = response.json()["error"]["fields"]
        assert fields == {
            "recipients.1.channel": "unknown channel 'sms'; channels: sandbox, telegram, "
            "discord, whatsapp, messenger"
        }
        body["recipients"] = [{"phone": "+639170000001"}]
        response = await client.post("/api/notify", json=body, headers=AUTH)
        assert response.json()["error"]["fields"] == {
            "recipients.0": 'must be {"channel", "address"}, {"submission_id"}, {"order_id"} '
            'or {"gom_id"}'
        }


async def test_a_disabled_channels_webhook_says_what_turns_it_on(settings: Settings) -> None:
    assert "telegram" not in settings.enabled_channels
    async with running_app(settings, mode="web") as client:
        for path, variable in (
            ("/webhook/telegram", "ENABLE_TELEGRAM"),
            ("/webhooks/whatsapp", "ENABLE_WHATSAPP"),
            ("/webhook/messenger", "ENABLE_MESSENGER"),
        ):
            response = await client.post(path, json={"update_id": 1})
            assert response.status_code == 404, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "channel_disabled"
            assert "is not enabled" in error["message"] and f"{variable}=true" in error["message"]


async def test_malformed_json_is_422(settings: Settings) -> None:
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            content=b"{not json",
            headers={**AUTH, "content-type": "application/json"},
        )
        assert response.status_code == 422
        assert "body" in response.json()["error"]["fields"]
        response = await client.post("/api/notify", content=b"x", headers=AUTH)
        assert response.status_code == 415


async def test_unknown_route_and_message_are_json(settings: Settings) -> None:
    async with running_app(settings, mode="web") as client:
        response = await client.get("/api/nothing-here")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        response = await client.get(
            "/api/messages/00000000-0000-0000-0000-000000000000", headers=AUTH
        )
        assert response.status_code == 404
        response = await client.get("/api/messages/abc", headers=AUTH)
        assert response.status_code == 422


async def test_order_fan_out_reaches_each_buyer_once(
    settings: Settings, demo: dict[str, Any], conn: Any
) -> None:
    text = unique_text("update")
    order_id = demo["orders"]["PHP"]
    async with running_app(settings) as client:
        response = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": text},
                "recipients": [{"order_id": order_id}],
            },
            headers=AUTH,
        )
        assert response.status_code == 202, response.text
        messages = response.json()["messages"]
        # Two demo buyers on the PHP order, reached on their sandbox address (other tests
        # may have joined it from their own chats); each buyer once.
        addresses = [m["address"] for m in messages]
        assert len(addresses) == len(set(addresses))
        assert {"demo-buyer-1", "demo-buyer-2"} <= set(addresses)
        assert "demo-buyer-3" not in addresses
        for m in messages:
            if m["address"].startswith("demo-buyer-"):
                await wait_status(client, m["id"], "sent")
        assert text in await sandbox_texts(client, "demo-buyer-1")
        assert text in await sandbox_texts(client, "demo-buyer-2")
        assert text not in await sandbox_texts(client, "demo-buyer-3")


async def test_opted_out_contact_is_skipped(
    settings: Settings, demo: dict[str, Any], conn: Any
) -> None:
    contact_id = "00000000-0000-4000-8000-0000000000b3"
    await conn.execute("UPDATE contacts SET opted_out_at = now() WHERE id = $1", contact_id)
    try:
        async with running_app(settings, mode="web") as client:
            response = await client.post(
                "/api/notify",
                json={
                    "event": "custom",
                    "data": {"text": unique_text()},
                    "recipients": [{"order_id": demo["orders"]["MYR"]}],
                },
                headers=AUTH,
            )
            [entry] = response.json()["messages"]
            assert entry["status"] == "skipped" and entry["reason"] == "opted_out"
            status = (await client.get(f"/api/messages/{entry['id']}", headers=AUTH)).json()
            assert status["status"] == "skipped" and status["status_reason"] == "opted_out"
    finally:
        await conn.execute("UPDATE contacts SET opted_out_at = NULL WHERE id = $1", contact_id)


async def test_gom_recipient_and_channel_order(settings: Settings, demo: dict[str, Any]) -> None:
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notify",
            json={
                "event": "custom",
                "data": {"text": unique_text()},
                "recipients": [
                    {"gom_id": demo["gom_id"]},
                    {"submission_id": demo["submissions"][0]},
                ],
                "channels": ["telegram"],
            },
            headers=AUTH,
        )
        assert response.status_code == 202
        gom, buyer = response.json()["messages"]
        # The GOM has no Telegram address; the buyer has one but Telegram is not enabled here.
        assert (gom["status"], gom["reason"]) == ("skipped", "no_address")
        assert (buyer["status"], buyer["reason"], buyer["channel"]) == (
            "skipped",
            "channel_disabled",
            "telegram",
        )


async def test_permanent_failure_is_kept_with_reason(settings: Settings) -> None:
    async with running_app(settings) as client:
        response = await client.post("/api/notify", json=custom("x", "fail:blocked"), headers=AUTH)
        [entry] = response.json()["messages"]
        status = await wait_status(client, entry["id"], "failed")
        assert status["status_reason"] == "rejected"
        assert status["attempts"] == 1
        assert status["attempt_log"][0]["outcome"] == "permanent"


async def test_transient_failure_is_retried(settings: Settings) -> None:
    text = unique_text("flaky")
    async with running_app(settings) as client:
        response = await client.post("/api/notify", json=custom(text, "flaky:one"), headers=AUTH)
        [entry] = response.json()["messages"]
        status = await wait_status(client, entry["id"], "sent")
        assert [a["outcome"] for a in status["attempt_log"]] == ["transient", "sent"]
        assert status["attempt_log"][0]["retry_after"] == pytest.approx(0.2)
        assert text in await sandbox_texts(client, "flaky:one")


async def test_send_at_waits(settings: Settings) -> None:
    send_at = datetime.now(UTC) + timedelta(seconds=2)
    async with running_app(settings) as client:
        response = await client.post(
            "/api/notify",
            json=custom(unique_text(), "later", send_at=send_at.isoformat()),
            headers=AUTH,
        )
        [entry] = response.json()["messages"]
        first = (await client.get(f"/api/messages/{entry['id']}", headers=AUTH)).json()
        assert first["status"] == "queued"
        status = await wait_status(client, entry["id"], "sent")
        assert datetime.fromisoformat(status["sent_at"]) >= send_at


async def test_test_endpoint_sends_on_each_enabled_channel(settings: Settings) -> None:
    async with running_app(settings) as client:
        response = await client.post("/api/notifications/test", json={}, headers=AUTH)
        assert response.status_code == 422
        assert "addresses" in response.json()["error"]["fields"]
        response = await client.post(
            "/api/notifications/test",
            json={"address": "deploy-check", "locale": "ms"},
            headers=AUTH,
        )
        assert response.status_code == 202
        [entry] = response.json()["messages"]
        await wait_status(client, entry["id"], "sent")
        response = await client.get(
            "/api/sandbox/messages", params={"address": "deploy-check"}, headers=AUTH
        )
        [got] = response.json()["messages"]
        assert got["payload"]["locale"] == "ms"
        assert got["payload"]["text"].startswith("Mesej ujian GOMFLOW")


async def test_the_seed_guides_own_checks_work_as_written(settings: Settings) -> None:
    """Step 7.2 posts {"test_message": true} (no address); its monitoring section asks
    GET /api/commands/status without auth. Both answer, and nobody is messaged."""
    async with running_app(settings) as client:
        before = (
            await client.get("/api/sandbox/messages", params={"limit": 1}, headers=AUTH)
        ).json()["messages"]
        after_id = before[0]["id"] if before else 0
        response = await client.post(
            "/api/notifications/test", json={"test_message": True}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        found = response.json()
        assert found["ok"] is True and found["status"] == "ok"
        assert found["test_message"]["status"] == "sent"
        components = found["components"]
        assert components["database"]["ok"] and components["redis"]["ok"]
        assert components["worker"]["live"] >= 1 and components["channels"]["sandbox"]["ok"]
        # The only message went to the sandbox's own check address.
        sent = (
            await client.get("/api/sandbox/messages", params={"after": after_id}, headers=AUTH)
        ).json()["messages"]
        ours = [m for m in sent if m["message_id"] == found["test_message"]["id"]]
        assert [m["address"] for m in ours] == ["deployment-check"]

        response = await client.get("/api/commands/status")
        assert response.status_code == 200
        public = response.json()
        names = {c["name"] for c in public["commands"]}
        assert {"orders", "status", "pay", "help", "payments"} <= names
        assert all(set(c) == {"name", "description", "gom_only"} for c in public["commands"])
        # Which platforms are on is the operator's to know (sandbox included).
        assert set(public) == {"commands"}


async def test_the_deployment_check_says_when_no_worker_takes_the_message(
    make_settings: Any,
) -> None:
    settings = make_settings(queue_name=unique_text("no-worker-check"))
    async with running_app(settings, mode="web") as client:
        response = await client.post(
            "/api/notifications/test", json={"test_message": True}, headers=AUTH
        )
    assert response.status_code == 200
    found = response.json()
    assert (found["ok"], found["status"]) == (False, "degraded")
    assert found["test_message"]["status"] == "queued"
    assert found["components"]["worker"] == {"ok": False, "live": 0}


async def test_sandbox_listing_is_404_when_disabled(make_settings: Any) -> None:
    async with running_app(make_settings(enable_sandbox=False), mode="web") as client:
        response = await client.get("/api/sandbox/messages", headers=AUTH)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "sandbox_disabled"
