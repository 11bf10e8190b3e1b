"""The smaller leaks: /saq changes from another site, erased addresses kept in idempotency
answers, terminal colour codes in JSON logs."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from typing import Any

import asyncpg
import uvicorn

from gomflow_messaging.settings import Settings
from tests.helpers import AUTH, SECRET, running_app
from tests.test_observability import json_log  # noqa: F401 - the fixture

BASIC = {"Authorization": "Basic " + base64.b64encode(f"ops:{SECRET}".encode()).decode()}


async def test_saq_changes_with_basic_credentials_need_a_same_origin_page(
    settings: Settings,
) -> None:
    async with running_app(settings, mode="web") as client:
        saq = client.app.state.services.queue.saq  # type: ignore[attr-defined]
        key = f"limits-{uuid.uuid4().hex}"
        await saq.enqueue("noop", key=key, scheduled=int(time.time()) + 3600, timeout=5)
        abort = f"/saq/api/queues/{settings.queue_name}/jobs/{key}/abort"

        async def status() -> str:
            job = await saq.job(key)
            return str(job.status)

        # Another site's form: the browser adds the cached Basic credentials and says so.
        cross_site = await client.post(
            abort, headers={**BASIC, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test"}
        )
        old_browser = await client.post(abort, headers={**BASIC, "Origin": "https://evil.test"})
        no_origin = await client.post(abort, headers=BASIC)
        after_refusals = await status()
        reading = await client.get(f"/saq/api/queues/{settings.queue_name}", headers=BASIC)
        from_its_page = await client.post(
            abort, headers={**BASIC, "Sec-Fetch-Site": "same-origin", "Origin": "http://test"}
        )
        with_bearer = await client.post(abort, headers=AUTH)
    for refused in (cross_site, old_browser, no_origin):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "cross_site"
    assert after_refusals == "Status.QUEUED"
    assert reading.status_code == 200
    assert from_its_page.status_code == 200, from_its_page.text
    assert with_bearer.status_code == 200, with_bearer.text


async def test_erase_takes_the_address_out_of_stored_idempotent_answers(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    address, other = f"erase-{uuid.uuid4().hex[:8]}", f"keep-{uuid.uuid4().hex[:8]}"
    key = f"erase-{uuid.uuid4().hex}"
    body = {
        "event": "custom",
        "data": {"text": "Your album has arrived!"},
        "recipients": [
            {"channel": "sandbox", "address": address},
            {"channel": "sandbox", "address": other},
        ],
    }
    async with running_app(settings, mode="web") as client:
        said = await client.post(
            "/api/sandbox/inbound", headers=AUTH, json={"address": address, "text": "/help"}
        )
        assert said.status_code == 200, said.text
        contact_id = await conn.fetchval(
            "SELECT contact_id FROM contact_addresses WHERE channel = 'sandbox' AND address = $1",
            address,
        )
        first = await client.post(
            "/api/notify", json=body, headers={**AUTH, "Idempotency-Key": key}
        )
        assert first.status_code == 202, first.text
        erased = await client.delete(f"/api/contacts/{contact_id}", headers=AUTH)
        assert erased.status_code == 200, erased.text
        replay = await client.post(
            "/api/notify", json=body, headers={**AUTH, "Idempotency-Key": key}
        )
    stored: Any = await conn.fetchval(
        "SELECT response FROM idempotency_keys WHERE scope = 'notify' AND key = $1", key
    )
    text = json.dumps(stored)
    assert address not in text
    assert other in text  # the other recipient's answer is untouched
    # A replay is still the first answer (same messages, nothing sent again), less the address.
    assert replay.status_code == 202
    assert [m["id"] for m in replay.json()["messages"]] == [
        m["id"] for m in first.json()["messages"]
    ]
    assert address not in replay.text


def test_json_logs_carry_no_terminal_colour_codes(json_log: io.StringIO) -> None:  # noqa: F811
    # uvicorn's own start-up line, logged with ANSI codes in its ``color_message`` extra.
    config = uvicorn.Config(app=lambda *a: None, host="127.0.0.1", port=0, log_config=None)
    config.bind_socket().close()
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert any("Uvicorn running on" in line["message"] for line in lines), lines
    assert "\x1b" not in json_log.getvalue() and "\\u001b" not in json_log.getvalue()
