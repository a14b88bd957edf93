from collections import Counter
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dispatch.catalogue import KIND_SERVICES
from hotline.core.wire import age
from hotline.seed import seed_demo
from hotline.storage.models import Elder, Provider


async def test_demo_district_is_plausible(sm: async_sessionmaker[AsyncSession]) -> None:
    today = date(2026, 11, 22)
    result = await seed_demo(sm, elders=400, providers=25, family_webhook="http://127.0.0.1:9/webhook", today=today)
    assert result.elders == 400 and result.providers == 25
    async with sm() as s:
        elders = (
            await s.scalars(select(Elder).options(selectinload(Elder.contacts), selectinload(Elder.devices)))
        ).all()
        providers = (await s.scalars(select(Provider))).all()
    assert all("\u4e00" <= e.name[0] <= "\u9fff" and e.address.startswith("浙江省余姚市") for e in elders)
    assert all(29.9 < e.lat < 30.2 and 121.0 < e.lon < 121.3 for e in elders)
    care = Counter(e.care_level for e in elders)
    assert 0.55 < care["self_care"] / 400 < 0.85 and care["severe"] > 0 and care["dementia"] > 0
    econ = Counter(e.economic_category for e in elders)
    assert 0.7 < econ["none"] / 400 < 0.95 and econ["dibao"] > 0
    assert all(1 <= len(e.contacts) <= 3 for e in elders)
    # Policy: one-touch phone for everyone 80+.
    for e in elders:
        if age(e.birth_date, today) >= 80:
            assert "one_touch_phone" in {d.kind for d in e.devices}, e.id
    assert {p.kind for p in providers} == set(KIND_SERVICES)
    assert all(set(p.services) == set(KIND_SERVICES[p.kind]) and 3.0 <= p.rating <= 5.0 for p in providers)
