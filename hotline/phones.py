"""Phone numbers: one canonical form, so a caller ID finds its elder whatever the spelling.

Canonical forms: a mainland mobile is its 11 digits (``13800000001``); a landline is its
area code with the trunk 0 plus the local number (``057462345678``); a service number
(``12349``, ``120``) stays as it is. Caller IDs arrive as ``+86 138-0000-0001``,
``0086...``, ``013800000001`` (an out-of-area mobile with a trunk 0), or a local landline
without its area code, which we complete with the configured one.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, event, insert, select
from sqlalchemy.orm import Session

from hotline.storage.models import Device, Elder, EmergencyContact, PhoneEntry

_SEPARATORS = re.compile(r"[\s\-().]")
_MOBILE = re.compile(r"1[3-9]\d{9}")
DEFAULT_AREA_CODE = "0574"  # Ningbo, where the seeded Yuyao district is; HOTLINE_PHONE_AREA_CODE changes it
#: Session info key: the area code that completes local landlines in the phone index.
AREA_CODE_INFO = "hotline.phone_area_code"


def normalise(raw: str | None, *, area_code: str | None = None) -> str | None:
    """Canonical number, or ``None`` for something that is not a phone number (``<unknown>``)."""
    if not raw:
        return None
    number = _SEPARATORS.sub("", raw)
    if number.startswith("+"):
        number = number[1:]
        if number.startswith("86"):
            number = number[2:]
            if not _MOBILE.fullmatch(number):
                number = "0" + number  # +86 574 ... is a landline without its trunk 0
    elif number.startswith("0086"):
        number = number[4:]
        if not _MOBILE.fullmatch(number):
            number = "0" + number
    if not number.isdigit():
        return None
    if _MOBILE.fullmatch(number):
        return number
    if number.startswith("0") and _MOBILE.fullmatch(number[1:]):
        return number[1:]
    if number.startswith("86") and _MOBILE.fullmatch(number[2:]):
        return number[2:]
    if number.startswith("0") and 10 <= len(number) <= 12:
        return number
    if 7 <= len(number) <= 8 and number[0] != "1":
        return (area_code or DEFAULT_AREA_CODE) + number  # a local landline
    return number  # short service numbers and anything else we cannot improve


def _touched_elders(session: Session) -> set[str]:
    ids: set[str] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Elder):
            ids.add(obj.id)
        elif isinstance(obj, Device | EmergencyContact) and obj.elder_id:
            ids.add(obj.elder_id)
    return ids


def _after_flush(session: Session, _ctx: object) -> None:
    """Keep the phone index in step with every write, whoever the writer is (API, seed, tests).

    It runs inside the flush's transaction, on its connection, so the index commits or
    rolls back with the change that caused it.
    """
    elder_ids = _touched_elders(session)
    if not elder_ids:
        return
    area = session.info.get(AREA_CODE_INFO, DEFAULT_AREA_CODE)
    conn = session.connection()
    conn.execute(delete(PhoneEntry).where(PhoneEntry.elder_id.in_(elder_ids)))
    rows: list[dict[str, str | None]] = []
    for elder_id, phones in conn.execute(select(Elder.id, Elder.phones).where(Elder.id.in_(elder_ids))):
        rows += [
            {"number": k, "elder_id": elder_id, "kind": "elder", "ref": None}
            for p in phones
            if (k := normalise(str(p), area_code=area))
        ]
    for elder_id, device_id, sim in conn.execute(
        select(Device.elder_id, Device.device_id, Device.sim_number).where(Device.elder_id.in_(elder_ids))
    ):
        if key := normalise(sim, area_code=area):
            rows.append({"number": key, "elder_id": elder_id, "kind": "device", "ref": device_id})
    for elder_id, contact_id, phone in conn.execute(
        select(EmergencyContact.elder_id, EmergencyContact.id, EmergencyContact.phone).where(
            EmergencyContact.elder_id.in_(elder_ids)
        )
    ):
        if key := normalise(phone, area_code=area):
            rows.append({"number": key, "elder_id": elder_id, "kind": "contact", "ref": str(contact_id)})
    if rows:
        conn.execute(insert(PhoneEntry), rows)


def install_phone_index() -> None:
    """Keep the phone index current on every session (idempotent; called by make_sessionmaker)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
