"""Masking of personal data for logs: elders' data must not leak through log files."""

import re

_DIGITS = re.compile(r"\d")


def mask_phone(number: str | None) -> str:
    """``13812345678`` -> ``138****5678``; short numbers keep only their last two digits."""
    if not number:
        return "-"
    digits = "".join(_DIGITS.findall(number))
    if len(digits) >= 7:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 3:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)


def mask_name(name: str | None) -> str:
    """``张三丰`` -> ``张**``; keeps the family name only, which is what operators say aloud."""
    if not name:
        return "-"
    return name[0] + "*" * (len(name) - 1)
