"""The built-in rule sets and catalogue, read from the policy documents in ``shared/seeds``.

They are installed as version 1 of each region, effective from 2020-01; a later version
posted to ``/api/v1/entitlement-rules`` replaces them from its own month on.
"""

from __future__ import annotations

from typing import Any

from dispatch.catalogue import SERVICES
from hotline.core.care import RuleSetIn

_LOCAL = [{"flag": "local_hukou"}, {"flag": "resident"}]
_NO_NURSING_SUBSIDY = {
    "when": {"flag": "disability_nursing_subsidy"},
    "why": "居家养老服务与残疾人护理补贴不得重复享受",
}

# 余姚市关于加快推进居家养老服务发展的实施意见: 基本保障, 基本服务, 一键通.
YUYAO: dict[str, Any] = {
    "region": "yuyao",
    "effective_from": "2020-01",
    "description": "余姚：居家养老服务基本保障（重度45、中度30小时）、基本服务（3小时）、一键通",
    "rules": [
        {
            "name": "basic_guarantee",
            "label": "居家养老服务基本保障",
            "benefit": "home_care_hours",
            "when": {
                "all": [
                    *_LOCAL,
                    {
                        "category_in": [
                            "entitled_veteran",
                            "bravery_honour",
                            "family_planning_special",
                            "dibao",
                            "dibao_edge",
                        ]
                    },
                ]
            },
            "tiers": [
                {"when": {"degree_at_least": {"of": ["disability", "dementia"], "level": "severe"}}, "amount": 45},
                {"when": {"degree_at_least": {"of": ["disability", "dementia"], "level": "moderate"}}, "amount": 30},
            ],
            "payers": {"government": 1},
            "unless": [_NO_NURSING_SUBSIDY],
            "supersedes": ["basic_service"],
        },
        {
            "name": "basic_service",
            "label": "居家养老基本服务",
            "benefit": "home_care_hours",
            "when": {
                "all": [
                    *_LOCAL,
                    {
                        "any": [
                            {"age_at_least": 80},
                            {"all": [{"age_at_least": 70}, {"category_in": ["family_planning_special"]}]},
                        ]
                    },
                ]
            },
            "amount": 3,
            "payers": {"government": 1},
            "unless": [_NO_NURSING_SUBSIDY],
        },
        {
            "name": "one_touch_phone",
            "label": "免费安装一键通",
            "benefit": "free_one_touch_phone",
            "when": {"any": [{"age_at_least": 80}, {"flag": "severe_chronic_disease"}]},
        },
    ],
}

# 红古区居家和社区养老服务改革试点: 经济困难老年人养老服务补贴, 100 yuan, province/city : district = 7 : 3.
HONGGU: dict[str, Any] = {
    "region": "honggu",
    "effective_from": "2020-01",
    "description": "红古：经济困难老年人养老服务补贴，每月100元，省市与区7:3",
    "rules": [
        {
            "name": "service_subsidy",
            "label": "经济困难老年人养老服务补贴",
            "benefit": "subsidy_yuan",
            "when": {
                "all": [
                    {"category_in": ["sanwu", "dibao", "family_planning_special", "low_income"]},
                    {
                        "any": [
                            {
                                "all": [
                                    {"age_at_least": 60},
                                    {"degree_at_least": {"of": ["disability", "dementia"], "level": "mild"}},
                                ]
                            },
                            {"age_at_least": 80},
                        ]
                    },
                ]
            },
            "amount": 100,
            "payers": {"province_city": 0.7, "district": 0.3},
        }
    ],
}

BUILT_IN_RULES = [RuleSetIn.model_validate(YUYAO), RuleSetIn.model_validate(HONGGU)]

_ALL_PAYERS = ["subsidy_hours", "subsidy_yuan", "ltc_insurance", "self_pay", "charity"]
_NO_HOURS = ["subsidy_yuan", "ltc_insurance", "self_pay", "charity"]

# code: (English name, unit, yuan per unit, payers, needs an assessment)
_CATALOGUE: dict[str, tuple[str, str, float, list[str], bool]] = {
    "meals": ("Meal delivery", "meal", 15.0, ["subsidy_yuan", "self_pay", "charity"], False),
    "cleaning": ("Cleaning", "hour", 40.0, _ALL_PAYERS, False),
    "bathing": ("Bathing", "hour", 60.0, _ALL_PAYERS, False),
    "medical_escort": ("Escort to hospital", "hour", 45.0, _ALL_PAYERS, False),
    "mobility": ("Mobility help", "hour", 40.0, _ALL_PAYERS, False),
    "daily_care": ("Daily care", "hour", 40.0, _ALL_PAYERS, False),
    "rehab_nursing": ("Rehabilitation nursing", "hour", 80.0, _ALL_PAYERS, False),
    "companionship": ("Companionship and comfort", "hour", 35.0, _ALL_PAYERS, False),
    "emergency_rescue": ("Emergency rescue", "visit", 0.0, ["charity"], False),
    "legal_aid": ("Legal aid", "visit", 0.0, ["charity"], False),
    "home_adaptation": ("Home adaptation", "item", 800.0, _NO_HOURS, True),
    "assistive_rental": ("Assistive-device rental", "item", 30.0, _NO_HOURS, False),
    "caregiver_training": ("Caregiver training", "hour", 50.0, ["subsidy_yuan", "self_pay", "charity"], False),
    "visit": ("Wellbeing visit", "visit", 30.0, ["charity"], False),
}
assert set(_CATALOGUE) == set(SERVICES), "every catalogue code has its terms"

BUILT_IN_SERVICES: list[dict[str, Any]] = [
    {
        "code": code,
        "name_zh": SERVICES[code],
        "name_en": en,
        "unit": unit,
        "price_yuan": price,
        "payers": payers,
        "needs_assessment": assess,
    }
    for code, (en, unit, price, payers, assess) in _CATALOGUE.items()
]
