"""The web console in a real browser: Debian's chromium driven by Playwright, against the app
served by uvicorn on loopback with real Postgres and Redis and the sandbox channel.

One browser for the module; each test opens its own context (its own cookies). The sign-in
link comes from the sandbox chat, as a GOM gets it: ``/console`` to the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
import secrets
import shutil
import socket
import struct
import sys
import uuid
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from playwright.async_api import async_playwright
from starlette.responses import Response

from gomflow_messaging.app import create_app
from gomflow_messaging.console import sessions
from gomflow_messaging.console.queries import Buyer
from gomflow_messaging.console.templating import buyer_rows
from gomflow_messaging.workflows import console_links
from tests.conftest import settings_for
from tests.helpers import AUTH, SECRET, eventually
from tests.test_payment_proofs import new_buyer, new_gom, new_order

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Where the README's screenshot is written when asked for (CONSOLE_SCREENSHOT=1).
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "console.png"
MARKUP_NAME = '<img src=x onerror="window.__xss=1"><b>Bold</b>'


def _png(width: int = 120, height: int = 160) -> bytes:
    """A real (decodable) PNG of a plain receipt-like picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + b"\xf0\xf0\xf0" * width
    raw = row * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


RECEIPT = _png()


class World:
    """Two GOMs, one order each; GOM A's buyers: unpaid, paid, markup-named, unreachable."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.gom_address = f"console-gom-{tag}"
        self.other_address = f"console-other-{tag}"
        self.buyer_address = f"console-buyer-{tag}"
        self.unpaid_address = f"console-unpaid-{tag}"
        self.paid_address = f"console-paid-{tag}"
        self.gom_id = uuid.UUID(int=0)
        self.other_gom_id = uuid.UUID(int=0)
        self.order_id = uuid.UUID(int=0)
        self.other_order_id = uuid.UUID(int=0)
        self.buyers: dict[str, dict[str, Any]] = {}
        self.proof_id = uuid.UUID(int=0)

    async def build(self, conn: asyncpg.Connection) -> World:
        self.gom_id = await new_gom(conn, ("sandbox", self.gom_address))
        self.other_gom_id = await new_gom(conn, ("sandbox", self.other_address))
        self.order_id = await new_order(conn, self.gom_id, "SEVENTEEN 'FML' console")
        self.other_order_id = await new_order(conn, self.other_gom_id, "Other GOM's order")
        self.buyers["markup"] = await new_buyer(
            conn, self.order_id, ("sandbox", self.buyer_address), name=MARKUP_NAME
        )
        self.buyers["unpaid"] = await new_buyer(
            conn, self.order_id, ("sandbox", self.unpaid_address), name="Unpaid Una"
        )
        self.buyers["paid"] = await new_buyer(
            conn, self.order_id, ("sandbox", self.paid_address), name="Paid Paolo"
        )
        self.buyers["nowhere"] = await new_buyer(conn, self.order_id, name="Nowhere Nico")
        self.buyers["formula"] = await new_buyer(
            conn, self.order_id, ("sandbox", f"{self.paid_address}-2"), name="=HYPERLINK(1)"
        )
        await conn.execute(
            "UPDATE submissions SET status = 'paid' WHERE id = ANY($1::uuid[])",
            [self.buyers["paid"]["submission_id"], self.buyers["formula"]["submission_id"]],
        )
        await new_buyer(conn, self.other_order_id, name="Not yours")
        self.proof_id = await conn.fetchval(
            """
            INSERT INTO payment_proofs (submission_id, channel, content, mime, size, sha256,
                                        status, checked_at, agent_result)
            VALUES ($1, 'sandbox', $2, 'image/png', $3, 'x', 'pending_review', now(),
                    '{"status": "answered", "confidence": 0.42, "amount_read": "2500.00"}')
            RETURNING id
            """,
            self.buyers["unpaid"]["submission_id"],
            RECEIPT,
            len(RECEIPT),
        )
        return self


@pytest.fixture(scope="module")
async def world(database_url: str) -> World:
    conn = await asyncpg.connect(database_url)
    try:
        return await World().build(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def server(database_url: str, queue_name: str) -> AsyncIterator[str]:
    """The app (web and worker) on a loopback port; its base URL is PUBLIC_BASE_URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = settings_for(
        database_url, queue_name, public_base_url=base, link_code_max_attempts=100
    )
    app = create_app(settings, mode="serve")
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    await eventually(lambda: asyncio.sleep(0, uv.started))
    yield base
    uv.should_exit = True
    await task
    sock.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


@pytest.fixture
async def api(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


@contextlib.asynccontextmanager
async def context(browser: Any, **options: Any) -> AsyncIterator[Any]:
    ctx = await browser.new_context(**options)
    try:
        yield ctx
    finally:
        await ctx.close()


async def chat_link(api: httpx.AsyncClient, address: str) -> str:
    """What the bot answers ``/console`` in this sandbox chat: the link in its text, or ""."""
    response = await api.post(
        "/api/sandbox/inbound", headers=AUTH, json={"address": address, "text": "/console"}
    )
    assert response.status_code == 200, response.text
    text = " ".join(r["text"] for r in response.json()["replies"])
    found = re.search(r"https?://\S+/console/sign-in/\S+", text)
    return found.group(0) if found else ""


async def signed_in(browser: Any, api: httpx.AsyncClient, address: str, **options: Any) -> Any:
    ctx = await browser.new_context(**options)
    page = await ctx.new_page()
    await page.goto(await chat_link(api, address))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/console")
    return ctx, page


async def test_sign_in_from_the_chat_link_once(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    link = await chat_link(api, world.gom_address)
    assert link.startswith(str(api.base_url))
    async with context(browser) as ctx:
        page = await ctx.new_page()
        # Opening the link (as a chat's link preview does) signs nobody in and uses nothing.
        await page.goto(link)
        await page.goto(link)
        assert await page.get_by_role("button", name="Sign in").count() == 1
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/console")
        assert await page.get_by_text("SEVENTEEN 'FML' console").count() == 1
        assert await page.get_by_text("Other GOM's order").count() == 0
        [cookie] = [c for c in await ctx.cookies() if c["name"] == "gomflow_console"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
        # The same link again: used, says so, signs nobody in.
        async with context(browser) as other:
            again = await other.new_page()
            response = await again.goto(link)
            assert response is not None and response.status == 410
            assert await again.get_by_text("already used").count() == 1
            assert not [c for c in await other.cookies() if c["name"] == "gomflow_console"]
        # Sign out ends the session: the console shows the sign-in page again.
        await page.get_by_role("button", name="Sign out").click()
        await page.goto(f"{api.base_url}/console")
        assert await page.get_by_text("Sign in to the console").count() == 1
    # An expired link says so.
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        old = await console_links.issue(
            pool, str(api.base_url), world.gom_id, datetime.now(UTC) - timedelta(minutes=11)
        )
    finally:
        await pool.close()
    async with context(browser) as ctx:
        page = await ctx.new_page()
        await page.goto(old)
        assert await page.get_by_text("has expired").count() == 1


async def test_a_buyer_gets_no_link_and_a_signed_out_visit_no_password_prompt(
    api: httpx.AsyncClient, world: World
) -> None:
    assert await chat_link(api, world.buyer_address) == ""
    for headers in ({}, {"Authorization": "Basic " + "bm9ib2R5Ondyb25n"}):
        response = await api.get("/console", headers=headers)
        assert response.status_code == 200
        assert "www-authenticate" not in response.headers
        assert "Sign in to the console" in response.text
        assert "SEVENTEEN" not in response.text
    response = await api.get(f"/console/orders/{world.order_id}")
    assert "SEVENTEEN" not in response.text


async def test_an_operator_sees_every_order_and_changes_nothing(
    api: httpx.AsyncClient, world: World
) -> None:
    operator = httpx.BasicAuth("ops", SECRET)
    home = await api.get("/console", auth=operator)
    assert "SEVENTEEN" in home.text and "Other GOM" in home.text
    order = await api.get(f"/console/orders/{world.other_order_id}", auth=operator)
    assert order.status_code == 200 and "Not yours" in order.text
    refused = await api.post(
        f"/console/orders/{world.order_id}/close",
        auth=operator,
        data={"csrf": ""},
        headers={"Origin": str(api.base_url)},
    )
    assert refused.status_code == 403


async def test_another_gom_order_is_404_and_markup_is_text(
    browser: Any, api: httpx.AsyncClient, world: World
) -> None:
    ctx, page = await signed_in(browser, api, world.gom_address)
    try:
        response = await page.goto(f"{api.base_url}/console/orders/{world.other_order_id}")
        assert response is not None and response.status == 404
        assert await page.get_by_text("Not yours").count() == 0
        for path in ("data.json", "buyers.csv", "remind"):
            other = await ctx.request.get(
                f"{api.base_url}/console/orders/{world.other_order_id}/{path}"
            )
            assert other.status == 404, path
        response = await page.goto(f"{api.base_url}/console/orders/{world.order_id}")
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        cell = page.locator(
            f"tr[data-submission='{world.buyers['markup']['submission_id']}'] td.name"
        )
        assert await cell.inner_text() == MARKUP_NAME
        assert await page.evaluate("window.__xss") is None
        # The buyer nobody can reach stands out.
        nowhere = page.locator(f"tr[data-submission='{world.buyers['nowhere']['submission_id']}']")
        assert "unreachable" in (await nowhere.get_attribute("class") or "")
    finally:
        await ctx.close()


async def test_a_post_without_its_token_is_refused(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    ctx, _page = await signed_in(browser, api, world.gom_address)
    try:
        url = f"{api.base_url}/console/orders/{world.order_id}/close"
        # From our own origin, with the session's cookie, but without the form's token.
        for form in ({"reason": "x"}, {"csrf": "forged"}):
            response = await ctx.request.post(
                url, form=form, headers={"Origin": str(api.base_url).rstrip("/")}
            )
            assert response.status == 403
    finally:
        await ctx.close()
    conn = await asyncpg.connect(database_url)
    try:
        assert not await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'order.close' AND subject = $1",
            str(world.order_id),
        )
    finally:
        await conn.close()


async def test_remind_from_the_console_reaches_only_the_unpaid(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str, redis: Any
) -> None:
    await redis.delete(f"gomflow:remind-now:{world.order_id}")
    ctx, page = await signed_in(browser, api, world.gom_address)
    try:
        await page.goto(f"{api.base_url}/console/orders/{world.order_id}")
        await page.get_by_role("link", name="Remind unpaid").click()
        await page.get_by_role("button", name="Send reminders").click()
        # The markup-named and the unpaid buyer; the one with no chat cannot be reminded.
        await page.get_by_text("Reminders sent to 2 buyers").wait_for()
    finally:
        await ctx.close()
    conn = await asyncpg.connect(database_url)
    try:
        buyers = [world.buyer_address, world.unpaid_address, world.paid_address]
        buyers.append(f"{world.paid_address}-2")

        async def received() -> set[str]:
            rows = await conn.fetch(
                "SELECT address FROM sandbox_messages WHERE address = ANY($1::text[])", buyers
            )
            return {r["address"] for r in rows}

        assert await eventually(received) >= {world.buyer_address, world.unpaid_address}
        assert await received() == {world.buyer_address, world.unpaid_address}
        audit = await conn.fetchrow(
            "SELECT actor, channel FROM audit_log WHERE action = 'order.remind' AND subject = $1",
            str(world.order_id),
        )
        assert audit["channel"] == "console" and audit["actor"] == f"gom:{world.gom_id}"
        message_id = await conn.fetchval(
            "SELECT m.id FROM messages m JOIN contact_addresses a ON a.contact_id = m.contact_id"
            " WHERE a.address = $1 ORDER BY m.created_at DESC LIMIT 1",
            world.unpaid_address,
        )
    finally:
        await conn.close()
    # The message's timeline: for this GOM, and for nobody else.
    ctx, page = await signed_in(browser, api, world.gom_address)
    try:
        if os.environ.get("CONSOLE_SCREENSHOT"):  # the README's picture, after the reminders
            await page.set_viewport_size({"width": 900, "height": 640})
            await page.goto(f"{api.base_url}/console/orders/{world.order_id}")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT))
        response = await page.goto(f"{api.base_url}/console/messages/{message_id}")
        assert response is not None and response.status == 200
        assert await page.locator("dd", has_text="payment_reminder").count() == 1
        assert await page.locator(".timeline li").count() >= 2
    finally:
        await ctx.close()
    ctx, page = await signed_in(browser, api, world.other_address)
    try:
        response = await page.goto(f"{api.base_url}/console/messages/{message_id}")
        assert response is not None and response.status == 404
    finally:
        await ctx.close()


async def test_approving_a_receipt(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    image = f"{api.base_url}/console/receipts/{world.proof_id}/image"
    assert (await api.get(image)).status_code == 401
    ctx, page = await signed_in(browser, api, world.other_address)
    try:
        assert (await ctx.request.get(image)).status == 404
    finally:
        await ctx.close()
    ctx, page = await signed_in(browser, api, world.gom_address)
    try:
        await page.goto(f"{api.base_url}/console/receipts")
        card = page.locator(f"#proof-{world.proof_id}")
        assert await card.locator(".amount").inner_text() == "₱2,500.00"
        assert await card.get_by_text("42%").count() == 1
        width = await card.locator("img").evaluate("img => img.naturalWidth")
        assert width == 120
        await card.get_by_role("button", name="Approve").click()
        await page.get_by_text("Approved.").wait_for()
    finally:
        await ctx.close()
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT p.status, p.decided_by, s.status AS paid FROM payment_proofs p"
            " JOIN submissions s ON s.id = p.submission_id WHERE p.id = $1",
            world.proof_id,
        )
        assert (row["status"], row["paid"]) == ("approved", "paid")
        assert row["decided_by"] == f"gom:{world.gom_id}"
        assert (
            await conn.fetchval(
                "SELECT channel FROM audit_log WHERE action = 'payment_proof.approve'"
                " AND subject = $1",
                str(world.proof_id),
            )
            == "console"
        )
    finally:
        await conn.close()


async def test_an_update_to_every_buyer_is_previewed_then_sent(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    text = "Album arrived <b>today</b> & ships Friday"
    ctx, page = await signed_in(browser, api, world.gom_address)
    try:
        await page.goto(f"{api.base_url}/console/orders/{world.order_id}")
        await page.get_by_role("link", name="Send an update").click()
        await page.locator("textarea[name=text]").fill(text)
        await page.get_by_role("button", name="Preview").click()
        assert await page.locator("blockquote.preview").inner_text() == text
        await page.get_by_role("button", name="Send update").click()
        # Four buyers have a chat; the fifth has none and is skipped.
        await page.get_by_text("Update queued for 4 buyers").wait_for()
    finally:
        await ctx.close()
    conn = await asyncpg.connect(database_url)
    try:

        async def received() -> list[str]:
            rows = await conn.fetch(
                "SELECT address FROM sandbox_messages WHERE payload->>'text' = $1", text
            )
            return sorted(r["address"] for r in rows)

        paid_too = f"{world.paid_address}-2"
        expected = sorted([world.buyer_address, world.unpaid_address, world.paid_address, paid_too])

        async def all_arrived() -> bool:
            return await received() == expected

        assert await eventually(all_arrived)
        assert (
            await conn.fetchval(
                "SELECT channel FROM audit_log WHERE action = 'order.update' AND subject = $1",
                str(world.order_id),
            )
            == "console"
        )
    finally:
        await conn.close()


async def test_the_csv_of_an_order(browser: Any, api: httpx.AsyncClient, world: World) -> None:
    ctx, _page = await signed_in(browser, api, world.gom_address)
    try:
        response = await ctx.request.get(
            f"{api.base_url}/console/orders/{world.order_id}/buyers.csv"
        )
        assert response.status == 200
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(await response.text())))
        json_url = f"{api.base_url}/console/orders/{world.order_id}/data.json"
        answer = await ctx.request.get(json_url)
        data, etag = await answer.json(), answer.headers["etag"]
        # Asked again with the version it has, a poller gets 304 and no body.
        again = await ctx.request.get(json_url, headers={"If-None-Match": etag})
        unchanged = (again.status, await again.body())
        other = await ctx.request.get(json_url, headers={"If-None-Match": '"older"'})
        assert other.status == 200 and (await other.json())["version"] == data["version"]
    finally:
        await ctx.close()
    by_ref = {r["reference"]: r for r in rows}
    assert len(rows) == 5
    # The same data as JSON, which the page polls to refresh itself.
    assert len(data["buyers"]) == 5 and data["version"] and data["reach"]["nowhere"] >= 1
    assert etag == f'"{data["version"]}"' and unchanged == (304, b"")
    markup = by_ref[world.buyers["markup"]["reference"]]
    assert (markup["name"], markup["quantity"], markup["amount"]) == (MARKUP_NAME, "2", "2500.00")
    assert by_ref[world.buyers["paid"]["reference"]]["status"] == "paid"
    # A buyer-written formula stays text in the GOM's spreadsheet.
    assert by_ref[world.buyers["formula"]["reference"]]["name"] == "'=HYPERLINK(1)"


async def test_nothing_wider_than_a_phone(
    browser: Any, api: httpx.AsyncClient, world: World
) -> None:
    ctx, page = await signed_in(
        browser, api, world.gom_address, viewport={"width": 390, "height": 844}
    )
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))
    try:
        for path in ("/console", f"/console/orders/{world.order_id}", "/console/receipts"):
            await page.goto(f"{api.base_url}{path}")
            wide = await page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 390, (path, wide)
            if os.environ.get("CONSOLE_SCREENSHOT") and path.startswith("/console/orders"):
                await page.screenshot(path=str(ROOT / "docs" / "console-phone.png"))
            if path.startswith("/console/orders"):
                # Each buyer's cell is captioned with its column's name (from the language's
                # captions stylesheet; a desktop reads the table's head instead).
                captions = await page.evaluate(
                    "[...document.querySelectorAll('table.buyers tbody tr:first-child td')]"
                    ".map(td => getComputedStyle(td, '::before').content)"
                )
                assert captions[0] == '"Name: "', captions
                assert captions[-1] == '"Last message: "', captions
        # The stylesheet and the script load under the Content-Security-Policy.
        assert not [e for e in errors if "Content Security Policy" in e], errors
        assert await page.evaluate("getComputedStyle(document.body).marginTop") == "0px"
    finally:
        await ctx.close()
    filipino = await api.get("/console/captions-fil.css")
    assert filipino.status_code == 200 and filipino.headers["content-type"].startswith("text/css")
    assert '"Pangalan: "' in filipino.text
    assert (await api.get("/console/captions-xx.css")).status_code == 404


async def test_console_link_on_the_command_line_and_the_gom_menu(
    api: httpx.AsyncClient, world: World, database_url: str, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "src"),
        "SERVICE_SECRET": SECRET,
        "DATABASE_URL": database_url,
        "PUBLIC_BASE_URL": str(api.base_url),
    }

    async def console_link(gom: str) -> tuple[int | None, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gomflow_messaging",
            "console-link",
            "--gom",
            gom,
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode().strip(), err.decode().strip()

    code, link, err = await console_link(str(world.gom_id))
    assert code == 0, err
    token = link.removeprefix(f"{api.base_url}/console/sign-in/")
    assert token != link
    origin = {"Origin": str(api.base_url).rstrip("/")}
    signed = await api.post("/console/sign-in", data={"token": token}, headers=origin)
    assert signed.status_code == 303 and "gomflow_console" in signed.cookies
    code, _out, err = await console_link(str(uuid.uuid4()))
    assert code == 1 and "no GOM profile" in err
    # The GOM's menu offers the console; a buyer's chat hears it is for GOMs.
    manage = await api.post(
        "/api/sandbox/inbound", headers=AUTH, json={"address": world.gom_address, "text": "/manage"}
    )
    actions = [b["action"] for r in manage.json()["replies"] for row in r["buttons"] for b in row]
    assert "console" in actions


async def test_sign_in_attempts_are_limited(
    api: httpx.AsyncClient, queue_name: str, redis: Any
) -> None:
    key = f"gomflow:{queue_name}:limit:link_codes:console:127.0.0.1"
    origin = {"Origin": str(api.base_url).rstrip("/")}
    try:
        for _ in range(101):
            response = await api.post(
                "/console/sign-in", data={"token": secrets.token_urlsafe(32)}, headers=origin
            )
            if response.status_code == 429:
                break
            assert response.status_code == 404
        assert response.status_code == 429 and "Too many sign-in attempts" in response.text
    finally:
        await redis.delete(key)


async def test_a_session_ends_after_a_day_idle_and_cookies_are_secure_on_https(
    api: httpx.AsyncClient, world: World, database_url: str, make_settings: Any
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        link = await console_links.issue(pool, str(api.base_url), world.gom_id, datetime.now(UTC))
        origin = {"Origin": str(api.base_url).rstrip("/")}
        token = link.rsplit("/", 1)[1]
        async with httpx.AsyncClient(base_url=api.base_url) as browserless:
            signed = await browserless.post(
                "/console/sign-in", data={"token": token}, headers=origin
            )
            assert signed.status_code == 303
            assert "SEVENTEEN" in (await browserless.get("/console")).text
            await pool.execute(
                "UPDATE console_sessions SET last_seen_at = now() - interval '25 hours'"
                " WHERE token_hash = $1",
                console_links.token_hash(browserless.cookies["gomflow_console"]),
            )
            idle = await browserless.get("/console")
            assert "Sign in to the console" in idle.text and "SEVENTEEN" not in idle.text
    finally:
        await pool.close()
    response = Response()
    sessions.set_cookie(response, make_settings(public_base_url="https://gomflow.example"), "x")
    cookie = response.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


async def test_the_order_page_follows_a_status_change_by_itself(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    ctx, page = await signed_in(browser, api, world.gom_address)
    try:
        await page.goto(f"{api.base_url}/console/orders/{world.order_id}")
        row = f"tr[data-submission='{world.buyers['nowhere']['submission_id']}'] td.pay-expired"
        assert await page.locator(row).count() == 0
        # While nothing changes, a poll is answered 304 with no body.
        async with page.expect_response(lambda r: "data.json" in r.url, timeout=10_000) as poll:
            pass
        assert (await poll.value).status == 304
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE submissions SET status = 'expired' WHERE id = $1",
                world.buyers["nowhere"]["submission_id"],
            )
        finally:
            await conn.close()
        # Its script polls the order's JSON every 5 s and reloads when the version moved.
        await page.locator(row).wait_for(timeout=20_000)
    finally:
        await ctx.close()


async def _csrf(page: Any) -> str:
    """The session's form token, from the sign-out form every GOM's page carries."""
    token: str = await page.locator("input[name=csrf]").first.get_attribute("value")
    return token


async def test_a_gom_cancels_an_unpaid_hold_and_the_buyer_is_told(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    address = f"console-hold-{secrets.token_hex(3)}"
    conn = await asyncpg.connect(database_url)
    try:
        buyer = await new_buyer(conn, world.order_id, ("sandbox", address), name="Holding Hana")
    finally:
        await conn.close()
    submission_id = buyer["submission_id"]
    path = f"/console/orders/{world.order_id}/holds/{submission_id}/cancel"
    origin = {"Origin": str(api.base_url).rstrip("/")}
    # Another GOM: neither through this order nor through their own is it there at all.
    ctx, page = await signed_in(browser, api, world.other_address)
    try:
        assert (await ctx.request.get(f"{api.base_url}{path}")).status == 404
        token = await _csrf(page)
        for url in (path, f"/console/orders/{world.other_order_id}/holds/{submission_id}/cancel"):
            response = await ctx.request.post(
                f"{api.base_url}{url}", form={"csrf": token}, headers=origin
            )
            assert response.status == 404, url
    finally:
        await ctx.close()
    # An operator reads only: no confirmation page, and a POST is refused.
    operator = httpx.BasicAuth("ops", SECRET)
    assert (await api.get(path, auth=operator)).status_code == 404
    refused = await api.post(path, auth=operator, data={"csrf": ""}, headers=origin)
    assert refused.status_code == 403
    ctx, page = await signed_in(browser, api, world.gom_address)
    try:
        # The GOM's own session without the form's token changes nothing.
        response = await ctx.request.post(f"{api.base_url}{path}", form={}, headers=origin)
        assert response.status == 403
        await page.goto(f"{api.base_url}/console/orders/{world.order_id}")
        row = page.locator(f"tr[data-submission='{submission_id}']")
        await row.get_by_role("link", name="Cancel hold").click()
        # The confirmation step; nothing has changed yet.
        await page.get_by_text("Cancel the hold of Holding Hana").wait_for()
        conn = await asyncpg.connect(database_url)
        try:
            status = "SELECT status FROM submissions WHERE id = $1"
            assert await conn.fetchval(status, submission_id) == "pending"
            await page.get_by_role("button", name="Yes, cancel it").click()
            await page.get_by_text(f"The hold {buyer['reference']} is cancelled").wait_for()
            assert await conn.fetchval(status, submission_id) == "cancelled"
            audit = await conn.fetch(
                "SELECT actor, channel, result FROM audit_log"
                " WHERE action = 'hold.cancel' AND subject = $1 ORDER BY at, id",
                str(submission_id),
            )
            assert [(a["actor"], a["channel"], a["result"]) for a in audit][-1] == (
                f"gom:{world.gom_id}",
                "console",
                "cancelled",
            )

            async def told() -> list[str]:
                rows = await conn.fetch(
                    "SELECT payload->>'text' AS text FROM sandbox_messages WHERE address = $1",
                    address,
                )
                return [r["text"] for r in rows]

            assert buyer["reference"] in " ".join(await eventually(told))
        finally:
            await conn.close()
        # The row has no cancel action any more.
        await page.goto(f"{api.base_url}/console/orders/{world.order_id}")
        assert await row.get_by_role("link", name="Cancel hold").count() == 0
    finally:
        await ctx.close()


async def test_each_gom_sees_only_the_messages_about_their_own_order(
    browser: Any, api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    """One buyer in both GOMs' orders: each order's page shows the message about it."""
    address = f"console-both-{secrets.token_hex(3)}"
    conn = await asyncpg.connect(database_url)
    try:
        mine = await new_buyer(conn, world.order_id, ("sandbox", address), name="Both Bea")
        theirs = await new_buyer(
            conn, world.other_order_id, name="Both Bea", contact_id=mine["contact_id"]
        )
    finally:
        await conn.close()
    sent: dict[str, str] = {}
    for key, buyer in (("mine", mine), ("theirs", theirs)):  # the other GOM's comes last
        response = await api.post(
            "/api/notify",
            headers=AUTH,
            json={
                "event": "custom",
                "data": {"text": f"about {key}"},
                "recipients": [{"submission_id": str(buyer["submission_id"])}],
            },
        )
        assert response.status_code == 202, response.text
        sent[key] = response.json()["messages"][0]["id"]
    for gom, order_id, own, other in (
        (world.gom_address, world.order_id, sent["mine"], sent["theirs"]),
        (world.other_address, world.other_order_id, sent["theirs"], sent["mine"]),
    ):
        ctx, page = await signed_in(browser, api, gom)
        try:
            data = await ctx.request.get(f"{api.base_url}/console/orders/{order_id}/data.json")
            rows = {b["submission_id"]: b for b in (await data.json())["buyers"]}
            shown = [r["message_id"] for r in rows.values() if r["message_id"] in sent.values()]
            assert shown == [own]
            await page.goto(f"{api.base_url}/console/orders/{order_id}")
            assert await page.locator(f"a[href='/console/messages/{own}']").count() == 1
            assert await page.locator(f"a[href='/console/messages/{other}']").count() == 0
            mine_page = await ctx.request.get(f"{api.base_url}/console/messages/{own}")
            assert mine_page.status == 200
            not_mine = await ctx.request.get(f"{api.base_url}/console/messages/{other}")
            assert not_mine.status == 404
        finally:
            await ctx.close()
    operator = httpx.BasicAuth("ops", SECRET)
    for message_id in sent.values():
        assert (await api.get(f"/console/messages/{message_id}", auth=operator)).status_code == 200


def test_every_value_of_an_order_row_is_escaped_before_the_template() -> None:
    """order.html prints the buyers' rows with autoescape off (1,000 rows of escape calls
    were most of the page's time): what `buyer_rows` gives it must be escaped already."""
    odd = '<i x="1">&\'</i>'
    buyer = Buyer(
        submission_id=str(uuid.uuid4()),
        name=odd,
        reference=odd,
        quantity=1,
        amount=Decimal("1250.00"),
        currency="PHP",
        status=odd,
        chats=f"{odd} sandbox",
        reached="",
        message_id=str(uuid.uuid4()),
        message_channel=odd,
        message_status=odd,
        message_reason=odd,
        message_waits_until=datetime.now(UTC) + timedelta(hours=1),
    )
    [row] = buyer_rows([buyer], "en", "Asia/Manila")
    for field in row.__slots__:
        value = str(getattr(row, field))
        assert not set("<>\"'") & set(value), (field, value)
    assert row.name == "&lt;i x=&quot;1&quot;&gt;&amp;&#x27;&lt;/i&gt;"
    assert row.detail.endswith("PH time")  # the quiet hours' end, on the GOM's clock
