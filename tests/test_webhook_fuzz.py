"""Webhook parsers against random input: bodies, headers and encodings never crash (no 5xx).

Each webhook is hit with correctly signed random bodies (so the parser behind the signature
check is what is tested) and with random unsigned ones. A valid Telegram update must also
not fail inside its handler (that is logged and answered 200, so it is checked in the log).
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from gomflow_messaging.settings import Settings
from tests.fakes.discord import APP_ID, TOKEN, FakeDiscord, Signer
from tests.fakes.messenger import FakeGraph, messenger_env, page_event
from tests.fakes.messenger import sign as sign_meta
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SENDER, FakeTwilio
from tests.helpers import eventually, running_app

TELEGRAM_SECRET = "fuzz-webhook-secret_0123456789"
PUBLIC = "https://gomflow.example.com"
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
_ids = itertools.count(secrets.randbelow(10**6) * 10_000)

# -- strategies ------------------------------------------------------------------------------

texts = st.text(max_size=120)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
chat_ids = st.integers(min_value=-(10**13), max_value=10**13) | st.sampled_from([1, -1, 0])
users = st.fixed_dictionaries(
    {"id": st.integers(min_value=1, max_value=10**12), "is_bot": st.booleans()},
    optional={"first_name": texts, "language_code": st.sampled_from(["en", "tl", "ms", "", "zz"])},
)
commands = st.sampled_from(
    ["/start", "/help", "/orders", "/status", "/pay", "/submit", "/link", "/gom", "skip", "stop"]
)
message_texts = texts | st.builds(lambda c, rest: f"{c} {rest}", commands, texts)
messages = st.fixed_dictionaries(
    {
        "message_id": st.integers(min_value=1, max_value=2**31),
        "date": st.integers(min_value=0, max_value=2**31),
        "chat": st.fixed_dictionaries(
            {"id": chat_ids, "type": st.sampled_from(["private", "group", "supergroup", "x"])}
        ),
    },
    optional={"from": users, "text": message_texts, "caption": texts},
)
#: Telegram's query ids are never empty (an answer to "" is refused: "query ID is invalid").
query_ids = texts.filter(bool)
callback_queries = st.fixed_dictionaries(
    {"id": query_ids, "from": users, "chat_instance": texts},
    optional={"data": message_texts, "message": messages},
)
inline_queries = st.fixed_dictionaries(
    {"id": query_ids, "from": users, "query": texts, "offset": texts}
)
updates = st.fixed_dictionaries(
    {},
    optional={
        "message": messages,
        "callback_query": callback_queries,
        "inline_query": inline_queries,
        "edited_message": messages,
        "poll": json_values,
    },
)
encodings = st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252"])
raw_bodies = st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
junk_headers = st.dictionaries(
    st.sampled_from(["content-type", "x-forwarded-for", "user-agent", "accept-charset"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    max_size=3,
)


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


# -- apps -------------------------------------------------------------------------------------


Fakes = tuple[FakeTelegram, FakeTwilio, FakeDiscord, Signer, FakeGraph]


@pytest.fixture
async def all_fakes() -> AsyncIterator[Fakes]:
    signer = Signer()
    telegram = await FakeTelegram().start()
    twilio = await FakeTwilio().start()
    discord = await FakeDiscord(public_key=signer.public_key).start()
    graph = await FakeGraph().start()
    yield telegram, twilio, discord, signer, graph
    await graph.close()
    await discord.close()
    await twilio.close()
    await telegram.close()


@pytest.fixture
async def client(
    make_settings: Callable[..., Settings],
    all_fakes: Fakes,
    demo: dict[str, Any],
) -> AsyncIterator[httpx.AsyncClient]:
    telegram, twilio, discord, signer, graph = all_fakes
    app_settings = make_settings(
        enable_telegram=True,
        telegram_bot_token=telegram.token,
        telegram_webhook_secret=TELEGRAM_SECRET,
        telegram_api_base_url=telegram.url,
        telegram_request_timeout_seconds=1,
        enable_whatsapp=True,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_whatsapp_number=SENDER,
        twilio_api_base_url=twilio.base_url,
        twilio_timeout_seconds=1,
        public_base_url=PUBLIC,
        enable_discord=True,
        discord_token=TOKEN,
        discord_client_id=APP_ID,
        discord_public_key=signer.public_key,
        discord_api_base_url=discord.base_url,
        discord_request_timeout_seconds=1,
        # Thousands of updates from few users: no per-user limit in the way.
        rate_limit_max_messages=100_000,
        **messenger_env(graph.base_url, messenger_timeout_seconds=1),
    )
    async with running_app(app_settings, mode="web") as c:
        c.signer = signer  # type: ignore[attr-defined]
        yield c


def no_server_error(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}


# -- Telegram -----------------------------------------------------------------------------------


NUL_MESSAGE = {
    "message": {
        "message_id": 1,
        "date": 0,
        "chat": {"id": 5, "type": "private"},
        "from": {"id": 5, "is_bot": False, "first_name": "A\x00"},
        "text": "/status \x00",
    }
}


@FUZZ
@given(update=updates, fresh=st.booleans())
@example(update=NUL_MESSAGE, fresh=True)
@example(update={}, fresh=True)
async def test_telegram_updates_never_crash(
    client: httpx.AsyncClient,
    all_fakes: Fakes,
    caplog: pytest.LogCaptureFixture,
    update: dict[str, Any],
    fresh: bool,
) -> None:
    update = {"update_id": next(_ids) if fresh else 1, **update}
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="gomflow_messaging"):
        response = await client.post(
            "/webhook/telegram",
            content=json.dumps(update).encode(),
            headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
        )
    no_server_error(response)
    from aiogram.types import Update
    from pydantic import ValidationError

    telegram = all_fakes[0]
    answer = response.json()
    try:
        Update.model_validate(update)
    except ValidationError:
        # aiogram refuses it: logged, and answered 200 with nothing to do, as Telegram needs.
        assert (response.status_code, answer) == (200, {}), answer
        return
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures
    # What the parser made of it: an answer, if any, goes to the chat the update came from
    # or to the person who wrote (never elsewhere), and Telegram would take it.
    if answer.get("method") and "chat_id" in answer:
        event = update.get("message") or (update.get("callback_query") or {}).get("message")
        sender = (update.get("message") or update.get("callback_query") or {}).get("from")
        allowed = {str((event or {}).get("chat", {}).get("id")), str((sender or {}).get("id"))}
        assert str(answer["chat_id"]) in allowed, (answer["chat_id"], allowed)
    assert not telegram.dropped_answers, telegram.dropped_answers[-1].result
    telegram.webhook_answers.clear()


@FUZZ
@given(body=raw_bodies, headers=junk_headers, signed=st.booleans())
async def test_telegram_raw_bodies_never_crash(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str], signed: bool
) -> None:
    if signed:
        headers = {**headers, "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    no_server_error(await client.post("/webhook/telegram", content=body, headers=headers))


# -- Twilio ---------------------------------------------------------------------------------------

form_values = st.text(max_size=80)
whatsapp_forms = st.fixed_dictionaries(
    {},
    optional={
        "MessageSid": st.just("SM") | form_values,
        "From": st.sampled_from(["whatsapp:+639171234567", "whatsapp:", "+60123456789"])
        | form_values,
        "Body": message_texts,
        "ProfileName": form_values,
        "NumMedia": st.sampled_from(["0", "1", "10", "99", "-1", "x"]) | form_values,
        "MediaContentType0": st.sampled_from(["image/jpeg", "application/pdf"]) | form_values,
        "ButtonPayload": form_values,
        "MessageStatus": st.sampled_from(["sent", "delivered", "read", "failed", "undelivered"])
        | form_values,
        "ErrorCode": st.sampled_from(["63016", "63024", "21211", ""]) | form_values,
        "ErrorMessage": form_values,
    },
).map(lambda form: {k: v for k, v in form.items()})


async def post_form(
    client: httpx.AsyncClient,
    path: str,
    form: dict[str, str],
    encoding: str,
    headers: dict[str, str],
    signed: bool,
) -> httpx.Response:
    if "MessageSid" in form and form["MessageSid"] == "SM":
        form = {**form, "MessageSid": f"SM{secrets.token_hex(16)}"}
    body = encode(urlencode(form), encoding)
    url = PUBLIC + path
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form) if signed else "nope"
    return await client.post(
        path,
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **headers,
            "X-Twilio-Signature": signature,
        },
    )


@FUZZ
@given(form=whatsapp_forms, encoding=encodings, headers=junk_headers, signed=st.booleans())
@example(
    form={
        "MessageSid": "SM",
        "From": "whatsapp:+639171234567",
        "Body": "hi\x00",
        "ProfileName": "\x00",
    },
    encoding="utf-8",
    headers={},
    signed=True,
)
async def test_twilio_inbound_never_crashes(
    client: httpx.AsyncClient,
    form: dict[str, str],
    encoding: str,
    headers: dict[str, str],
    signed: bool,
) -> None:
    response = await post_form(client, "/webhooks/whatsapp", form, encoding, headers, signed)
    no_server_error(response)


@FUZZ
@given(
    form=whatsapp_forms,
    query=st.sampled_from(["", "?message_id=", "?message_id=x", f"?message_id={'0' * 32}"]),
    signed=st.booleans(),
)
# Found by this test: a NUL in a signed callback reached Postgres (500, so Twilio retried).
@example(
    form={"MessageSid": "SM\x00", "MessageStatus": "failed", "ErrorMessage": "\x00"},
    query="",
    signed=True,
)
async def test_twilio_status_callback_never_crashes(
    client: httpx.AsyncClient, form: dict[str, str], query: str, signed: bool
) -> None:
    response = await post_form(client, "/webhook/status" + query, form, "utf-8", {}, signed)
    no_server_error(response)


# -- Discord --------------------------------------------------------------------------------------

interactions = st.fixed_dictionaries(
    {"type": st.integers(min_value=-1, max_value=7)},
    optional={
        "id": st.just("1") | texts,
        "application_id": st.just(APP_ID) | texts,
        "token": texts,
        "version": st.just(1),
        "locale": st.sampled_from(["en-US", "tl", "ms", "xx"]),
        "data": st.fixed_dictionaries(
            {},
            optional={
                "name": commands.map(lambda c: c.lstrip("/")) | texts,
                "custom_id": message_texts,
                "options": st.lists(
                    st.fixed_dictionaries(
                        {"name": texts, "type": st.integers(0, 11), "value": json_scalars}
                    ),
                    max_size=3,
                ),
                "components": json_values,
            },
        ),
        "user": st.fixed_dictionaries({"id": st.just("800000000000000001") | texts}),
        "member": json_values,
        "guild_id": st.just("200000000000000001") | texts,
        "channel_id": texts,
    },
)


@FUZZ
@given(payload=interactions | json_values, signed=st.booleans())
@example(payload={"type": 2, "member": True, "data": [], "token": "t"}, signed=True)
@example(payload=[1, 2], signed=True)
async def test_discord_interactions_never_crash(
    client: httpx.AsyncClient, payload: Any, signed: bool
) -> None:
    body = json.dumps(payload).encode()
    signer: Signer = client.signer  # type: ignore[attr-defined]
    headers = signer.headers(body) if signed else {"Content-Type": "application/json"}
    no_server_error(await client.post("/webhook/discord", content=body, headers=headers))


# -- Messenger ----------------------------------------------------------------------------------

psids = st.sampled_from(["24012345678901234", "24012345678905678"]) | texts
messenger_events = st.fixed_dictionaries(
    {"sender": st.fixed_dictionaries({"id": psids}), "recipient": st.just({"id": "1"})},
    optional={
        "timestamp": st.integers(min_value=0, max_value=2**42),
        "message": st.fixed_dictionaries(
            {"mid": texts},
            optional={
                "text": message_texts,
                "quick_reply": st.fixed_dictionaries({"payload": message_texts}),
                "attachments": st.lists(
                    st.fixed_dictionaries(
                        {"type": st.sampled_from(["image", "file", "x"])},
                        optional={"payload": json_values},
                    ),
                    max_size=2,
                ),
                "is_echo": st.booleans(),
            },
        ),
        "postback": st.fixed_dictionaries(
            {}, optional={"payload": message_texts, "title": texts, "mid": texts}
        ),
        "referral": st.fixed_dictionaries({}, optional={"ref": texts, "source": texts}),
        "read": json_values,
    },
)
messenger_bodies = st.lists(messenger_events, max_size=3).map(lambda e: page_event(*e)) | (
    json_values.map(lambda v: {"object": "page", "entry": v})
)


ORDERS_EVENT = page_event(
    {
        "sender": {"id": "24012345678901234"},
        "recipient": {"id": "1"},
        "message": {"mid": "m_fuzz_orders", "text": "orders"},
    }
)


@FUZZ
@given(body=messenger_bodies, signed=st.booleans())
@example(body=ORDERS_EVENT, signed=True)
async def test_messenger_events_never_crash_and_answer_only_their_senders(
    client: httpx.AsyncClient, all_fakes: Fakes, body: Any, signed: bool
) -> None:
    graph = all_fakes[4]
    raw = json.dumps(body).encode()
    response = await client.post(
        "/webhook/messenger",
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign_meta(raw) if signed else "sha256=" + "0" * 64,
        },
    )
    no_server_error(response)
    if not signed:
        assert response.status_code in (401, 403), response.text
    # What the parser made of it: replies only ever to a sender named in this very body.
    senders = {
        str(event.get("sender", {}).get("id"))
        for entry in (body.get("entry") if isinstance(body.get("entry"), list) else [])
        if isinstance(entry, dict)
        for event in (entry.get("messaging") or [])
        if isinstance(event, dict) and isinstance(event.get("sender"), dict)
    }
    if body is ORDERS_EVENT:  # one that surely gets a reply: the property is exercised
        await eventually(lambda: _replied(graph, "24012345678901234"), timeout=10)
    if signed:
        # Replies are sent after the answer and may land during a later example: any sender
        # of a signed body so far is a fair recipient, and nobody else ever is.
        _signed_senders.update(senders)
    assert {s.psid for s in graph.sent} <= _signed_senders, [s.psid for s in graph.sent]


_signed_senders: set[str] = set()


async def _replied(graph: FakeGraph, psid: str) -> bool:
    return bool(graph.to(psid))
