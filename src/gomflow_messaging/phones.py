"""Phone numbers as E.164 (PH and MY first), so a buyer_phone finds its WhatsApp contact."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

DEFAULT_REGIONS = ("PH", "MY")
_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize_phone(raw: str, region: str | None = None) -> str:
    """``0917 123 4567`` -> ``+639171234567``; raises ValueError for a non-mobile number.

    Without a region, a national number is tried as Philippine, then Malaysian.
    """
    text = raw.strip().removeprefix("whatsapp:")
    regions = (region,) if region else DEFAULT_REGIONS
    for candidate in regions:
        try:
            number = phonenumbers.parse(text, candidate)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in _MOBILE:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise ValueError("is not a valid mobile number (expected e.g. +63 905 123 4567)")
