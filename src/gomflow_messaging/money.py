"""Money as Decimal, formatted the way buyers write it: ₱1,250.00 and RM 85.00."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import format_decimal

SYMBOLS = {"PHP": "₱", "MYR": "RM "}
REFERENCE_PREFIX = {"PHP": "PH", "MYR": "MY"}


def quantize(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def format_money(amount: Decimal, currency: str) -> str:
    """One symbol, grouped thousands, two decimals (the original printed "₱₱50.00")."""
    number = format_decimal(quantize(amount), format="#,##0.00", locale="en")
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{currency} {number}"
