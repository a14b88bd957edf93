"""A realistic synthetic district (``hotline seed demo``), modelled on 余姚 (Yuyao, Ningbo).

Proportions follow the brief: most elders look after themselves, a minority are disabled
or have dementia; a few percent are in the subsidy categories; a fifth live alone. The
one-touch phone goes to everyone 80+ and to those with severe chronic disease, as the
Yuyao policy installs it free for them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from math import cos, radians, sin, tau
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.credentials import hash_device_secret, new_device_secret
from dispatch.catalogue import KIND_SERVICES
from hotline.storage.models import Device, Elder, EmergencyContact, Provider

CENTRE = (30.0372, 121.1546)  # 余姚市中心
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈姚卢钱严"
FEMALE = (
    "秀英",
    "桂英",
    "秀兰",
    "玉兰",
    "桂兰",
    "凤英",
    "玉梅",
    "淑珍",
    "素珍",
    "美华",
    "月娥",
    "彩凤",
    "翠花",
    "玉珍",
    "金凤",
    "阿娣",
    "雪琴",
    "惠芳",
)
MALE = (
    "建国",
    "国华",
    "德明",
    "志强",
    "福生",
    "根宝",
    "阿林",
    "永康",
    "金财",
    "爱国",
    "兴华",
    "伯年",
    "海根",
    "春生",
    "荣发",
    "天明",
    "良才",
    "大福",
)
YOUNG = ("伟", "静", "磊", "敏", "军", "丽", "强", "燕", "洋", "婷", "杰", "芳", "斌", "霞", "涛", "颖")
STREETS = ("阳明街道", "梨洲街道", "凤山街道", "兰江街道", "朗霞街道", "低塘街道")
COMMUNITIES = ("舜水社区", "新建社区", "阳光社区", "东旭社区", "江南社区", "北门社区", "武胜门社区", "玉皇山社区")
ROADS = ("阳明西路", "南雷南路", "新建北路", "谭家岭东路", "舜水南路", "世南东路", "长安路", "四明西路")
CONDITIONS = (
    "高血压",
    "2型糖尿病",
    "冠心病",
    "慢阻肺",
    "脑梗后遗症",
    "骨质疏松",
    "阿尔茨海默病早期",
    "帕金森病",
    "青霉素过敏",
    "心脏起搏器",
    "白内障",
    "房颤，服用华法林",
)
SEVERE = {"冠心病", "慢阻肺", "脑梗后遗症", "帕金森病", "心脏起搏器", "房颤，服用华法林"}
RELATIONS = (("儿子", 0.35), ("女儿", 0.35), ("配偶", 0.1), ("侄子", 0.05), ("邻居", 0.08), ("社区网格员", 0.07))
CARE = (
    ("self_care", 0.72),
    ("mild", 0.10),
    ("moderate", 0.07),
    ("severe", 0.05),
    ("partly_disabled", 0.03),
    ("dementia", 0.03),
)
ECON = (
    ("none", 0.83),
    ("dibao", 0.07),
    ("dibao_edge", 0.04),
    ("family_planning_special", 0.03),
    ("wubao", 0.015),
    ("sanwu", 0.015),
)
LIVING = (("alone", 0.22), ("empty_nest", 0.40), ("with_family", 0.35), ("institution", 0.03))
AGE_BANDS = (((60, 69), 0.55), ((70, 79), 0.30), ((80, 89), 0.12), ((90, 100), 0.03))
PROVIDER_NAMES = {
    "service_station": "{street}居家养老服务站",
    "caregiver": "{surname}{given}护理员",
    "meal_kitchen": "{community}老年食堂",
    "clinic": "{street}社区卫生服务中心",
    "ambulance": "余姚急救合作站({street})",
}


T = TypeVar("T")


def _pick(rng: random.Random, table: Sequence[tuple[T, float]]) -> T:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _point(rng: random.Random, radius_km: float) -> tuple[float, float]:
    # Uniform over a disc; longitude degrees shrink with latitude.
    r = radius_km * rng.random() ** 0.5
    theta = rng.uniform(0, tau)
    lat = CENTRE[0] + (r * sin(theta)) / 111.0
    lon = CENTRE[1] + (r * cos(theta)) / (111.0 * cos(radians(CENTRE[0])))
    return round(lat, 6), round(lon, 6)


def _mobile(rng: random.Random) -> str:
    return (
        rng.choice(("138", "139", "135", "137", "150", "158", "187", "189", "133", "177"))
        + f"{rng.randrange(10**8):08d}"
    )


def _address(rng: random.Random) -> tuple[str, str]:
    street = rng.choice(STREETS)
    return street, (
        f"浙江省余姚市{street}{rng.choice(COMMUNITIES)}{rng.choice(ROADS)}{rng.randint(1, 399)}号"
        f"{rng.randint(1, 30)}幢{rng.randint(1, 4)}单元{rng.randint(1, 18)}0{rng.randint(1, 4)}室"
    )


@dataclass
class SeedResult:
    elders: int = 0
    devices: list[tuple[str, str]] = field(default_factory=list)  # (device_id, kind)
    providers: int = 0


async def seed_demo(
    sm: async_sessionmaker[AsyncSession],
    *,
    elders: int,
    providers: int,
    family_webhook: str | None = None,
    seed: int = 12349,
    today: date | None = None,
) -> SeedResult:
    rng = random.Random(seed)
    today = today or date.today()
    result = SeedResult()
    async with sm() as session, session.begin():
        for n in range(elders):
            gender = rng.choice("FM")
            surname = rng.choice(SURNAMES)
            (lo, hi) = _pick(rng, AGE_BANDS)
            birth = today - timedelta(days=rng.randint(lo * 365 + 1, hi * 365 + 300))
            age = (today - birth).days // 365
            care = _pick(rng, CARE)
            if age >= 85 and care == "self_care" and rng.random() < 0.4:
                care = rng.choice(("moderate", "severe", "dementia"))
            conditions = rng.sample(CONDITIONS, k=rng.choice((0, 1, 1, 2, 2, 3)))
            if care == "dementia" and "阿尔茨海默病早期" not in conditions:
                conditions.append("阿尔茨海默病早期")
            living = _pick(rng, LIVING)
            street, address = _address(rng)
            lat, lon = _point(rng, 6.0)
            elder = Elder(
                name=surname + rng.choice(FEMALE if gender == "F" else MALE),
                gender=gender,
                birth_date=birth,
                address=address,
                district=street,
                lat=lat,
                lon=lon,
                phones=[f"0574-6{rng.randrange(10**6, 10**7):07d}"] + ([_mobile(rng)] if rng.random() < 0.6 else []),
                medical_notes="；".join(conditions),
                care_level=care,
                economic_category=_pick(rng, ECON),
                living_situation=living,
                home_radius_m=rng.choice((300, 500, 800)),
            )
            contacts = 1 + (rng.random() < 0.6) + (rng.random() < 0.2)
            for k in range(contacts):
                relation = _pick(rng, RELATIONS)
                elder.contacts.append(
                    EmergencyContact(
                        name=(surname if relation in ("儿子", "女儿", "侄子") else rng.choice(SURNAMES))
                        + rng.choice(YOUNG),
                        relation=relation,
                        phone=_mobile(rng),
                        channel="webhook" if family_webhook else "sms",
                        webhook_url=family_webhook,
                        priority=k + 1,
                    )
                )
            session.add(elder)
            await session.flush()
            kinds = []
            if age >= 80 or SEVERE & set(conditions) or living == "alone":
                kinds.append("one_touch_phone")
            if rng.random() < 0.3:
                kinds.append(rng.choice(("watch", "watch", "pendant")))
            if living == "alone" and rng.random() < 0.2:
                kinds.append("sensor")
            for kind in kinds:
                prefix = {"one_touch_phone": "YJT", "watch": "WCH", "pendant": "PDT", "sensor": "SNS"}[kind]
                device_id = f"{prefix}{n:06d}{len(result.devices) % 10}"
                session.add(
                    Device(
                        device_id=device_id,
                        kind=kind,
                        elder_id=elder.id,
                        sim_number=_mobile(rng) if kind != "sensor" else None,
                        vendor="demo",
                        model={"one_touch_phone": "YJT-200", "watch": "W8", "pendant": "P2", "sensor": "S1"}[kind],
                        credential_hash=hash_device_secret(new_device_secret()),
                    )
                )
                result.devices.append((device_id, kind))
            result.elders += 1
        kinds = list(KIND_SERVICES)
        for n in range(providers):
            kind = kinds[n % len(kinds)] if n < len(kinds) else rng.choice(kinds)
            street, address = _address(rng)
            lat, lon = _point(rng, 7.0)
            name = PROVIDER_NAMES[kind].format(
                street=street, community=rng.choice(COMMUNITIES), surname=rng.choice(SURNAMES), given=rng.choice(YOUNG)
            )
            session.add(
                Provider(
                    name=f"{name}#{n + 1}",
                    kind=kind,
                    services=list(KIND_SERVICES[kind]),
                    lat=lat,
                    lon=lon,
                    address=address,
                    phone=_mobile(rng),
                    service_radius_m={"ambulance": 15000, "clinic": 5000}.get(kind, 3000),
                    working_hours={"mon-sun": "00:00-24:00"}
                    if kind in ("ambulance", "clinic")
                    else {"mon-sun": "07:00-20:00"},
                    capacity={"caregiver": 2, "meal_kitchen": 40, "service_station": 6}.get(kind, 4),
                    current_load=0,
                    availability="available",
                    rating=round(rng.triangular(3.0, 5.0, 4.3), 1),
                )
            )
            result.providers += 1
    return result
