"""`seed-demo`: a demo GOM, two open orders (PHP and MYR), submissions and sandbox contacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from gomflow_messaging.db import Connection

# Fixed ids: running the seed twice changes nothing, and README examples can name them.
GOM_ID = UUID("00000000-0000-4000-8000-000000000001")
GOM_CONTACT_ID = UUID("00000000-0000-4000-8000-0000000000c1")
ORDER_PH_ID = UUID("00000000-0000-4000-8000-00000000a001")
ORDER_MY_ID = UUID("00000000-0000-4000-8000-00000000a002")

# Their phones (+63 917 555 01xx style) are numbers no prompt or placeholder shows as an
# example: a stranger typing the example must not land on a seeded buyer.
BUYERS: list[dict[str, Any]] = [
    {
        "id": UUID("00000000-0000-4000-8000-0000000000b1"),
        "name": "Andrea Santos",
        "phone": "+639175550181",
        "locale": "fil",
        "timezone": "Asia/Manila",
        "order": ORDER_PH_ID,
        "qty": 2,
        "ref": "PH-DEMO0001",
        "platform": "telegram",
        "platform_id": "700000001",
        "status": "pending",
    },
    {
        "id": UUID("00000000-0000-4000-8000-0000000000b2"),
        "name": "Miguel Reyes",
        "phone": "+639185550182",
        "locale": "en",
        "timezone": "Asia/Manila",
        "order": ORDER_PH_ID,
        "qty": 1,
        "ref": "PH-DEMO0002",
        "platform": "whatsapp",
        "platform_id": None,
        "status": "paid",
    },
    {
        "id": UUID("00000000-0000-4000-8000-0000000000b3"),
        "name": "Nur Aisyah",
        "phone": "+60125550183",
        "locale": "ms",
        "timezone": "Asia/Kuala_Lumpur",
        "order": ORDER_MY_ID,
        "qty": 3,
        "ref": "MY-DEMO0003",
        "platform": "discord",
        "platform_id": "800000000000000003",
        "status": "pending",
    },
]


def _submission_id(n: int) -> UUID:
    return UUID(f"00000000-0000-4000-8000-{0x5000 + n:012x}")


async def seed(conn: Connection, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO profiles (id, name, email, phone, country, timezone)
            VALUES ($1, 'Demo GOM (Jisoo Merch PH)', 'gom@example.com', '+639170000001',
                    'PH', 'Asia/Manila')
            ON CONFLICT (id) DO NOTHING
            """,
            GOM_ID,
        )
        orders = [
            (
                ORDER_PH_ID,
                "SEVENTEEN 'FML' Album (Carat ver.)",
                Decimal("1250.00"),
                "PHP",
                now + timedelta(days=3),
                "demo-svt-fml",
                ["gcash", "maya", "bpi"],
                50,
            ),
            (
                ORDER_MY_ID,
                "BLACKPINK Lightstick v2",
                Decimal("85.00"),
                "MYR",
                now + timedelta(days=5),
                "demo-bp-lightstick",
                ["maybank2u", "touch_n_go"],
                30,
            ),
        ]
        for order_id, title, price, currency, deadline, slug, methods, max_orders in orders:
            await conn.execute(
                """
                INSERT INTO orders (id, user_id, title, description, price, currency, deadline,
                                    slug, payment_methods, max_orders)
                VALUES ($1, $2, $3, 'Demo order from seed-demo', $4, $5, $6, $7, $8::jsonb, $9)
                ON CONFLICT (id) DO NOTHING
                """,
                order_id,
                GOM_ID,
                title,
                price,
                currency,
                deadline,
                slug,
                methods,
                max_orders,
            )
        await conn.execute(
            """
            INSERT INTO contacts (id, kind, display_name, phone, profile_id, locale, timezone)
            VALUES ($1, 'gom', 'Demo GOM', '+639170000001', $2, 'en', 'Asia/Manila')
            ON CONFLICT (id) DO NOTHING
            """,
            GOM_CONTACT_ID,
            GOM_ID,
        )
        await _address(conn, GOM_CONTACT_ID, "sandbox", "demo-gom", 50)
        prices = {ORDER_PH_ID: (Decimal("1250.00"), "PHP"), ORDER_MY_ID: (Decimal("85.00"), "MYR")}
        for n, buyer in enumerate(BUYERS, start=1):
            price, currency = prices[buyer["order"]]
            submission_id = _submission_id(n)
            await conn.execute(
                """
                INSERT INTO submissions (id, order_id, buyer_name, buyer_phone, buyer_platform,
                                         buyer_platform_id, quantity, total_amount, currency,
                                         payment_reference, status)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (id) DO NOTHING
                """,
                submission_id,
                buyer["order"],
                buyer["name"],
                buyer["phone"],
                buyer["platform"],
                buyer["platform_id"],
                buyer["qty"],
                price * buyer["qty"],
                currency,
                buyer["ref"],
                buyer["status"],
            )
            await conn.execute(
                """
                INSERT INTO contacts (id, kind, display_name, phone, locale, timezone)
                VALUES ($1, 'buyer', $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING
                """,
                buyer["id"],
                buyer["name"],
                buyer["phone"],
                buyer["locale"],
                buyer["timezone"],
            )
            await conn.execute(
                "INSERT INTO submission_contacts (submission_id, contact_id) VALUES ($1, $2)"
                " ON CONFLICT (submission_id) DO NOTHING",
                submission_id,
                buyer["id"],
            )
            # Their own chat first; the sandbox catches whatever is not enabled locally.
            platform_address = buyer["platform_id"] or buyer["phone"]
            await _address(conn, buyer["id"], buyer["platform"], platform_address, 10)
            await _address(conn, buyer["id"], "sandbox", f"demo-buyer-{n}", 90)
    return {
        "gom_id": str(GOM_ID),
        "orders": {"PHP": str(ORDER_PH_ID), "MYR": str(ORDER_MY_ID)},
        "submissions": [str(_submission_id(n)) for n in range(1, len(BUYERS) + 1)],
        "sandbox_addresses": ["demo-gom"] + [f"demo-buyer-{n}" for n in range(1, 4)],
    }


async def _address(
    conn: Connection, contact_id: UUID, channel: str, address: str, priority: int
) -> None:
    await conn.execute(
        """
        INSERT INTO contact_addresses (contact_id, channel, address, priority)
        VALUES ($1, $2, $3, $4) ON CONFLICT (channel, address) DO NOTHING
        """,
        contact_id,
        channel,
        address,
        priority,
    )
