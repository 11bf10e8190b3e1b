"""Telegram end to end: real update JSON to /webhook/telegram with the secret header, and
what the fake Bot API received; outbound through the real dispatcher."""

from __future__ import annotations

import html
import itertools
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from gomflow_messaging.demo import ORDER_MY_ID, ORDER_PH_ID
from gomflow_messaging.settings import Settings
from tests.conftest import unique_text
from tests.fakes.telegram import FakeTelegram
from tests.helpers import AUTH, TELEGRAM_WEBHOOK_SECRET, eventually, running_app, wait_status

WEBHOOK_SECRET = TELEGRAM_WEBHOOK_SECRET
_update_ids = itertools.count(secrets.randbelow(10**6) * 1000)
_message_ids = itertools.count(1)


def new_chat() -> int:
    return 100_000_000 + secrets.randbelow(800_000_000)


def _user(user_id: int, name: str = "Maria", language: str = "en") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name, "language_code": language}


def _chat(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": "Maria"}
    return {"id": chat_id, "type": "group", "title": "SVT buyers PH"}


def message_update(
    chat_id: int, text: str, *, user_id: int | None = None, language: str = "en"
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "date": int(time.time()),
        "chat": _chat(chat_id),
        "from": _user(user_id or chat_id, language=language),
        "text": text,
    }
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    return {"update_id": next(_update_ids), "message": message}


def callback_update(chat_id: int, data: str, *, user_id: int | None = None) -> dict[str, Any]:
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": f"cq-{next(_message_ids)}",
            "from": _user(user_id or chat_id),
            "chat_instance": "ci-1",
            "data": data,
            "message": {
                "message_id": next(_message_ids),
                "date": int(time.time()),
                "chat": _chat(chat_id),
                "text": "earlier message",
            },
        },
    }


def inline_update(user_id: int, query: str) -> dict[str, Any]:
    return {
        "update_id": next(_update_ids),
        "inline_query": {
            "id": f"iq-{next(_message_ids)}",
            "from": _user(user_id),
            "query": query,
            "offset": "",
        },
    }


async def post(
    client: httpx.AsyncClient, update: dict[str, Any], secret: str | None = WEBHOOK_SECRET
) -> httpx.Response:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    return await client.post("/webhook/telegram", json=update, headers=headers)


def shown(body: dict[str, Any]) -> str:
    """The text of a webhook-response sendMessage as the user sees it."""
    assert body.get("method") == "sendMessage", body
    assert body["parse_mode"] == "HTML"
    return html.unescape(body["text"])


def labels(markup: dict[str, Any] | None) -> list[tuple[str, str]]:
    rows = (markup or {}).get("inline_keyboard", [])
    return [(b["text"], b.get("callback_data", b.get("url", ""))) for row in rows for b in row]


@pytest.fixture
async def client(
    telegram_settings: Callable[..., Settings], demo: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(telegram_settings(), mode="web") as c:
        yield c


# -- commands ------------------------------------------------------------------------------


async def test_start_is_answered_in_the_webhook_response(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram, conn: asyncpg.Connection
) -> None:
    chat = new_chat()
    response = await post(client, message_update(chat, "/start"))
    assert response.status_code == 200
    body = response.json()
    assert body["chat_id"] == chat
    assert "Hi Maria! I am the GOMFLOW assistant" in shown(body)
    assert ("Open orders", "orders") in labels(body["reply_markup"])
    assert fake_telegram.sent(chat) == []  # one reply: it rode in the response
    row = await conn.fetchrow(
        "SELECT reachable, last_inbound_at FROM contact_addresses"
        " WHERE channel = 'telegram' AND address = $1",
        str(chat),
    )
    assert row is not None and row["reachable"] and row["last_inbound_at"] is not None


async def test_orders_sends_each_card_in_order(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    chat = new_chat()
    response = await post(client, message_update(chat, "/orders"))
    assert response.status_code == 200 and response.json() == {}
    sent = fake_telegram.sent(chat)
    assert sent[0].text.startswith("Open orders (page 1 of")
    cards = {c.text.split("\n")[0]: labels(c.params.get("reply_markup")) for c in sent[1:]}
    assert cards["SEVENTEEN 'FML' Album (Carat ver.)"] == [
        ("Join this order", f"submit {ORDER_PH_ID}")
    ]
    assert cards["BLACKPINK Lightstick v2"] == [("Join this order", f"submit {ORDER_MY_ID}")]
    assert "Price: ₱1,250.00" in sent[1].text or "Price: ₱1,250.00" in sent[2].text


async def test_submit_conversation_creates_a_submission(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram, conn: asyncpg.Connection
) -> None:
    chat = new_chat()
    pressed = await post(client, callback_update(chat, f"submit {ORDER_PH_ID}"))
    assert pressed.json()["method"] == "answerCallbackQuery"
    card, prompt = fake_telegram.texts(chat)
    assert card.startswith("SEVENTEEN 'FML' Album")
    assert "What name" in prompt

    async def say(text: str) -> str:
        return shown((await post(client, message_update(chat, text))).json())

    assert "mobile number" in await say("Maria Clara")
    assert "How many" in await say("0917 555 7734")
    assert "delivered" in await say("2")
    notes_prompt = (await post(client, message_update(chat, "Unit 5, 123 Rizal Ave, QC"))).json()
    assert "notes" in shown(notes_prompt)
    assert ("Skip", "skip") in labels(notes_prompt["reply_markup"])

    await post(client, callback_update(chat, "skip"))
    summary = fake_telegram.sent(chat)[-1]
    assert "Please check your order" in summary.text and "Total: ₱2,500.00" in summary.text
    assert ("Confirm", "confirm") in labels(summary.params["reply_markup"])

    await post(client, callback_update(chat, "confirm"))
    joined = fake_telegram.texts(chat)[-1]
    assert "You joined SEVENTEEN 'FML' Album (Carat ver.)!" in joined
    row = await conn.fetchrow(
        """
        SELECT s.buyer_name, s.buyer_phone, s.quantity, s.total_amount, s.payment_reference,
               d.address
          FROM submissions s JOIN submission_details d ON d.submission_id = s.id
         WHERE s.buyer_platform = 'telegram' AND s.buyer_platform_id = $1
        """,
        str(chat),
    )
    assert row is not None
    assert (row["buyer_name"], row["buyer_phone"], row["quantity"]) == (
        "Maria Clara",
        "+639175557734",
        2,
    )
    assert str(row["total_amount"]) == "2500.00"
    assert row["address"] == "Unit 5, 123 Rizal Ave, QC"
    assert f"Payment reference: {row['payment_reference']}" in joined

    status = shown((await post(client, message_update(chat, "/status"))).json())
    assert row["payment_reference"] in status and "waiting for payment" in status


async def test_status_of_a_seeded_buyer(client: httpx.AsyncClient) -> None:
    # Andrea's demo submission was made from Telegram chat 700000001.
    body = (await post(client, message_update(700000001, "/status PH-DEMO0001"))).json()
    assert "PH-DEMO0001" in html.unescape(body["text"])


async def test_gom_command_is_refused_for_a_buyer(client: httpx.AsyncClient) -> None:
    body = (await post(client, message_update(new_chat(), "/manage"))).json()
    assert "Only a GOM can do that" in shown(body)


async def test_gom_links_with_a_start_token_and_manages(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram, conn: asyncpg.Connection
) -> None:
    chat = new_chat()
    offer = await post(client, message_update(chat, f"/start {await _gom_link_token(conn)}"))
    assert labels(offer.json()["reply_markup"]) == [
        ("Confirm", "link confirm"),
        ("Cancel", "link cancel"),
    ]
    await post(client, callback_update(chat, "link confirm"))
    assert "linked to your GOM profile" in fake_telegram.texts(chat)[0]
    body = (await post(client, message_update(chat, "/manage"))).json()
    assert "You have no orders yet" in shown(body)


async def _gom_link_token(conn: asyncpg.Connection) -> str:
    profile = uuid.uuid4()
    await conn.execute(
        "INSERT INTO profiles (id, name, email, country, timezone)"
        " VALUES ($1, 'Test GOM', $2, 'PH', 'Asia/Manila')",
        profile,
        f"{profile.hex[:8]}@example.com",
    )
    token = unique_text("tok")
    await conn.execute(
        "INSERT INTO link_tokens (token, profile_id, expires_at) VALUES ($1, $2, $3)",
        token,
        profile,
        datetime.now(UTC) + timedelta(hours=1),
    )
    return token


async def test_a_linked_gom_chat_gets_the_gom_commands_in_its_menu_until_stop(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram, conn: asyncpg.Connection
) -> None:
    chat = new_chat()
    scope = {"type": "chat", "chat_id": chat}
    fake_telegram.fail_next("rate_limited", retry_after=1, method="setMyCommands")  # retried
    await post(client, message_update(chat, f"/start {await _gom_link_token(conn)}"))
    await post(client, callback_update(chat, "link confirm"))
    assert "linked to your GOM profile" in fake_telegram.texts(chat)[0]

    async def published() -> dict[str, Any] | None:
        menus = _menus(fake_telegram, scope)
        return menus if all(menus.values()) else None

    async def removed() -> bool:
        return not any(_menus(fake_telegram, scope).values())

    menus = await eventually(published)
    for language, commands in menus.items():
        names = [c["command"] for c in commands]
        assert {"manage", "dashboard", "create", "payments", "orders"} <= set(names), language
    assert menus["tl"] != menus[""] and menus["ms"] != menus[""]  # translated
    # Only this chat: the menu everyone sees was not given the GOM commands.
    assert fake_telegram.commands_for({"type": "default"}) is None

    await post(client, message_update(chat, "/stop"))
    await eventually(removed)


async def test_a_gom_menu_that_cannot_be_set_does_not_undo_the_link(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram, conn: asyncpg.Connection
) -> None:
    chat = new_chat()
    fake_telegram.fail_next("chat_not_found", method="setMyCommands")
    await post(client, message_update(chat, f"/start {await _gom_link_token(conn)}"))
    await post(client, callback_update(chat, "link confirm"))
    assert "linked to your GOM profile" in fake_telegram.texts(chat)[0]
    body = (await post(client, message_update(chat, "/manage"))).json()
    assert "You have no orders yet" in shown(body)


def _menus(fake_telegram: FakeTelegram, scope: dict[str, Any]) -> dict[str, Any]:
    return {language: fake_telegram.commands_for(scope, language) for language in ("", "tl", "ms")}


# -- the webhook's guarantees --------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", WEBHOOK_SECRET + "x"])
async def test_forged_secret_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient,
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
    secret: str | None,
) -> None:
    update = message_update(new_chat(), "/start")
    response = await post(client, update, secret=secret)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    seen = await conn.fetchval(
        "SELECT count(*) FROM inbound_updates WHERE platform = 'telegram' AND update_id = $1",
        str(update["update_id"]),
    )
    assert seen == 0
    assert fake_telegram.calls == []


async def test_duplicate_update_is_handled_once(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    chat = new_chat()
    update = message_update(chat, "/orders")
    await post(client, update)
    first = len(fake_telegram.sent(chat))
    assert first >= 3
    again = await post(client, update)
    assert again.status_code == 200 and again.json() == {}
    assert len(fake_telegram.sent(chat)) == first


async def test_a_reply_accepted_but_answered_late_is_not_sent_again(
    telegram_settings: Callable[..., Settings], fake_telegram: FakeTelegram, demo: dict[str, Any]
) -> None:
    """Telegram took the reply but its answer came after our timeout: whether it landed is
    unknown, and a reply is not worth sending twice (the person can ask again)."""
    chat = new_chat()
    fake_telegram.fail_next("late", retry_after=2, method="sendMessage", chat_id=chat)
    settings = telegram_settings(telegram_request_timeout_seconds=1)
    async with running_app(settings, mode="web") as client:
        await post(client, message_update(chat, "/orders"))
    # Sent once, and nothing after it: the rest would arrive out of turn if it never did.
    texts = fake_telegram.texts(chat)
    assert len(texts) == 1 and texts[0].startswith("Open orders (page 1 of"), texts


async def test_a_reply_refused_with_a_short_wait_is_sent_once_after_it(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    chat = new_chat()
    fake_telegram.fail_next("rate_limited", retry_after=1, method="sendMessage", chat_id=chat)
    await post(client, message_update(chat, "/orders"))
    calls = [c for c in fake_telegram.requests("sendMessage") if c.chat_id == str(chat)]
    assert [c.status for c in calls[:2]] == [429, 200]
    assert calls[0].text == calls[1].text and calls[1].text.startswith("Open orders (page 1 of")
    texts = fake_telegram.texts(chat)
    assert texts.count(calls[1].text) == 1 and len(texts) >= 3, texts


async def test_unparseable_update_is_answered_200_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    update = {"update_id": next(_update_ids), "message": {"message_id": 1, "text": "no chat"}}
    response = await post(client, update)
    assert response.status_code == 200 and response.json() == {}
    assert any("telegram update" in r.message for r in caplog.records)


async def test_not_an_update_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/webhook/telegram",
        content=b"not json",
        headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_group_chatter_is_ignored_but_commands_for_us_answered(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    group = -(400_000_000 + secrets.randbelow(10**6))
    user = new_chat()
    assert (await post(client, message_update(group, "who's joining?", user_id=user))).json() == {}
    other = await post(client, message_update(group, "/help@some_other_bot", user_id=user))
    assert other.json() == {}
    mine = await post(client, message_update(group, "/help@gomflow_test_bot", user_id=user))
    assert "Here is what I can do" in shown(mine.json())


async def test_too_many_messages_get_one_polite_answer_then_silence(
    telegram_settings: Callable[..., Settings], fake_telegram: FakeTelegram, demo: dict[str, Any]
) -> None:
    chat = new_chat()
    async with running_app(telegram_settings(rate_limit_max_messages=2), mode="web") as client:
        for _ in range(2):
            assert (await post(client, message_update(chat, "/help"))).json()["method"]
        warned = (await post(client, message_update(chat, "/help"))).json()
        assert "sending messages very fast" in shown(warned)
        assert (await post(client, message_update(chat, "/help"))).json() == {}
        pressed = (await post(client, callback_update(chat, "orders"))).json()
        # The spinner stops, and nothing is said.
        assert pressed["method"] == "answerCallbackQuery" and "text" not in pressed
    assert fake_telegram.sent(chat) == []


# -- inline mode ---------------------------------------------------------------------------


async def test_inline_query_answers_with_order_cards(client: httpx.AsyncClient) -> None:
    body = (await post(client, inline_update(new_chat(), "lightstick"))).json()
    assert body["method"] == "answerInlineQuery"
    [result] = body["results"]
    assert result["type"] == "article" and result["title"] == "BLACKPINK Lightstick v2"
    assert "RM" in result["description"]
    assert html.unescape(result["input_message_content"]["message_text"]).startswith(
        "BLACKPINK Lightstick v2\n"
    )
    assert labels(result["reply_markup"]) == [("Join this order", f"submit {ORDER_MY_ID}")]

    both = (await post(client, inline_update(new_chat(), ""))).json()
    titles = {r["title"] for r in both["results"]}
    assert {"BLACKPINK Lightstick v2", "SEVENTEEN 'FML' Album (Carat ver.)"} <= titles


async def test_inline_mode_off_answers_nothing(
    telegram_settings: Callable[..., Settings], demo: dict[str, Any]
) -> None:
    async with running_app(telegram_settings(enable_inline_payments=False), mode="web") as client:
        body = (await post(client, inline_update(new_chat(), ""))).json()
    assert body["method"] == "answerInlineQuery" and body["results"] == []


async def test_button_under_an_inline_message_answers_in_private(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    user = new_chat()
    update = callback_update(user, f"submit {ORDER_MY_ID}")
    del update["callback_query"]["message"]
    update["callback_query"]["inline_message_id"] = "inline-1"
    body = (await post(client, update)).json()
    assert body["method"] == "answerCallbackQuery" and "show_alert" not in body
    assert "What name" in fake_telegram.texts(user)[-1]

    stranger = new_chat()
    fake_telegram.fail_next("blocked", chat_id=stranger)  # never opened a chat with the bot
    update = callback_update(stranger, f"submit {ORDER_MY_ID}")
    del update["callback_query"]["message"]
    update["callback_query"]["inline_message_id"] = "inline-2"
    body = (await post(client, update)).json()
    assert body["show_alert"] is True and "@gomflow_test_bot" in body["text"]


# -- outbound through the dispatcher -------------------------------------------------------


def custom(text: str, address: str) -> dict[str, Any]:
    return {
        "event": "custom",
        "data": {"text": text},
        "recipients": [{"channel": "telegram", "address": address}],
    }


async def test_rate_limited_send_is_delivered_once_after_the_wait(
    telegram_settings: Callable[..., Settings], fake_telegram: FakeTelegram
) -> None:
    chat = new_chat()
    text = unique_text("reminder")
    fake_telegram.fail_next("rate_limited", retry_after=1, method="sendMessage", chat_id=chat)
    async with running_app(telegram_settings()) as client:
        response = await client.post("/api/notify", json=custom(text, str(chat)), headers=AUTH)
        assert response.status_code == 202, response.text
        [entry] = response.json()["messages"]
        status = await wait_status(client, entry["id"], "sent", "failed")
    assert status["status"] == "sent" and status["attempts"] == 2
    first, second = status["attempt_log"]
    assert (first["outcome"], first["error_code"], first["retry_after"]) == (
        "transient",
        "rate_limited",
        1,
    )
    assert second["outcome"] == "sent"
    assert fake_telegram.texts(chat) == [text]
    refused, accepted = fake_telegram.requests("sendMessage")[-2:]
    assert (refused.status, accepted.status) == (429, 200)
    # Never before Telegram's retry_after: the fake refuses a send within the wait, so an
    # early retry would be one more 429 (the gap in seconds is in bench/timing.py).
    tries = [c.status for c in fake_telegram.requests("sendMessage") if c.chat_id == str(chat)]
    assert tries == [429, 200]
    assert status["provider_message_id"] == f"{chat}:{accepted.result['message_id']}"


async def test_blocked_user_is_not_retried_and_marked_unreachable(
    telegram_settings: Callable[..., Settings],
    fake_telegram: FakeTelegram,
    conn: asyncpg.Connection,
) -> None:
    chat = new_chat()
    async with running_app(telegram_settings()) as client:
        await post(client, message_update(chat, "/start"))  # they were a contact
        fake_telegram.blocked.add(str(chat))
        response = await client.post(
            "/api/notify", json=custom(unique_text("update"), str(chat)), headers=AUTH
        )
        [entry] = response.json()["messages"]
        status = await wait_status(client, entry["id"], "sent", "failed")
    assert status["status"] == "failed" and status["status_reason"] == "blocked"
    assert status["attempts"] == 1
    assert len([c for c in fake_telegram.requests("sendMessage") if c.chat_id == str(chat)]) == 1
    row = await conn.fetchrow(
        "SELECT reachable, unreachable_reason FROM contact_addresses"
        " WHERE channel = 'telegram' AND address = $1",
        str(chat),
    )
    assert row is not None and (row["reachable"], row["unreachable_reason"]) == (False, "blocked")


def member_update(chat_id: int, old: str, new: str) -> dict[str, Any]:
    bot = {"id": 1, "is_bot": True, "first_name": "GOMFLOW"}

    def member(status: str) -> dict[str, Any]:
        # Telegram sends until_date (0: for ever) with a "kicked" status.
        return {"status": status, "user": bot, **({"until_date": 0} if status == "kicked" else {})}

    return {
        "update_id": next(_update_ids),
        "my_chat_member": {
            "chat": _chat(chat_id),
            "from": _user(chat_id),
            "date": int(time.time()),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        },
    }


async def test_block_and_unblock_follow_the_chat(
    client: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    chat = new_chat()
    await post(client, message_update(chat, "/start"))

    async def reachable() -> tuple[bool, str | None]:
        row = await conn.fetchrow(
            "SELECT reachable, unreachable_reason FROM contact_addresses"
            " WHERE channel = 'telegram' AND address = $1",
            str(chat),
        )
        assert row is not None
        return row["reachable"], row["unreachable_reason"]

    assert (await post(client, member_update(chat, "member", "kicked"))).json() == {}
    assert await reachable() == (False, "blocked")
    await post(client, member_update(chat, "kicked", "member"))
    assert await reachable() == (True, None)


async def test_health_reports_the_bot(client: httpx.AsyncClient) -> None:
    # Only to whoever has the secret: the health check without auth names no bot.
    assert "gomflow_test_bot" not in (await client.get("/api/health")).text
    body = (await client.get("/api/health", headers=AUTH)).json()
    assert body["components"]["channels"]["telegram"]["ok"] is True
    assert body["components"]["channels"]["telegram"]["detail"] == "@gomflow_test_bot"


# -- replies in the webhook answer meet the Bot API's rules ----------------------------------


async def test_every_reply_in_a_webhook_answer_goes_through_the_bot_apis_rules(
    client: httpx.AsyncClient, fake_telegram: FakeTelegram
) -> None:
    chat = new_chat()
    body = (await post(client, message_update(chat, "/help"))).json()
    assert body["method"] == "sendMessage"
    [taken] = fake_telegram.webhook_answers
    assert taken.ok and taken.chat_id == str(chat) and taken.text == shown(body)


@pytest.mark.parametrize(
    ("reply", "refusal"),
    [
        ({"text": "x" * 4097}, "message is too long"),
        ({"text": "<b>₱2,500.00", "parse_mode": "HTML"}, "can't parse entities"),
        ({"text": "a <blink>b</blink>", "parse_mode": "HTML"}, "Unsupported start tag"),
        (
            {
                "text": "Pay",
                "reply_markup": {"inline_keyboard": [[{"text": "Pay", "callback_data": "é" * 33}]]},
            },
            "BUTTON_DATA_INVALID",
        ),
        ({"text": "Pay", "reply_markup": {"inline_keyboard": [[{"text": ""}]]}}, "buttons"),
        ({"text": "   "}, "message text is empty"),
    ],
)
async def test_an_invalid_reply_in_a_webhook_answer_is_dropped_as_telegram_does(
    fake_telegram: FakeTelegram, reply: dict[str, Any], refusal: str
) -> None:
    chat = new_chat()
    dropped = fake_telegram.webhook_answer({"method": "sendMessage", "chat_id": chat, **reply})
    assert not dropped.ok and refusal in str(dropped.result)
    assert fake_telegram.dropped_answers == [dropped]
    fake_telegram.webhook_answers.clear()  # dropping it was the point (see conftest)
