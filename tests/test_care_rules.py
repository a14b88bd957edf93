"""The built-in entitlement rules of the policy documents, case by case, and both exclusions
(issue 13, item 3). Pure: the evaluator and the built-in rule sets as stored."""

from __future__ import annotations

from datetime import date

import pytest

from hotline.care.builtin import BUILT_IN_RULES, HONGGU, YUYAO
from hotline.care.rules import Facts, Outcome, age_on, evaluate
from hotline.core.care import Rule, RuleSetIn
from hotline.core.wire import Eligibility


def _rules(region: dict[str, object]) -> list[Rule]:
    # As stored and read back: dumped by alias, validated again (what the API and the DB do).
    stored = RuleSetIn.model_validate(region).rules
    return [Rule.model_validate(r.model_dump(mode="json", by_alias=True, exclude_none=True)) for r in stored]


def yuyao(age: int, **e: object) -> Outcome:
    return evaluate(_rules(YUYAO), Facts(age=age, eligibility=Eligibility.model_validate(e), living_situation="alone"))


def honggu(age: int, **e: object) -> Outcome:
    return evaluate(_rules(HONGGU), Facts(age=age, eligibility=Eligibility.model_validate(e), living_situation="alone"))


def test_age_counts_full_years_on_the_first_day_of_the_month() -> None:
    assert age_on(date(1946, 12, 1), "2026-12") == 80  # the birthday is the first: 80 that month
    assert age_on(date(1946, 12, 2), "2026-12") == 79  # a day later: 80 only next month
    assert age_on(date(1946, 12, 2), "2027-01") == 80


@pytest.mark.parametrize(
    ("worse", "hours"),
    [
        ({"disability": "severe"}, 45),
        ({"dementia": "severe"}, 45),
        ({"disability": "moderate"}, 30),
        ({"disability": "moderate", "dementia": "severe"}, 45),
    ],
)
def test_basic_guarantee_by_the_worse_of_disability_and_dementia(worse: dict[str, str], hours: int) -> None:
    out = yuyao(72, categories=["dibao"], **worse)
    assert out.total("home_care_hours") == hours
    (grant,) = [g for g in out.grants if g.rule == "basic_guarantee"]
    assert "低保家庭" in grant.why and f"每月{hours}小时" in grant.why


@pytest.mark.parametrize(
    "category", ["entitled_veteran", "bravery_honour", "family_planning_special", "dibao", "dibao_edge"]
)
def test_every_qualifying_family_gets_the_basic_guarantee(category: str) -> None:
    assert yuyao(65, categories=[category], disability="severe").total("home_care_hours") == 45


def test_no_basic_guarantee_for_a_mild_degree_other_families_or_outsiders() -> None:
    assert yuyao(65, categories=["dibao"], disability="mild").total("home_care_hours") == 0
    assert yuyao(65, categories=["sanwu"], disability="severe").total("home_care_hours") == 0  # not a yuyao category
    assert yuyao(65, categories=["dibao"], disability="severe", local_hukou=False).total("home_care_hours") == 0
    out = yuyao(65, categories=["dibao"], disability="severe", resident=False)
    assert out.total("home_care_hours") == 0
    assert any("未在本地居住" in x.why for x in out.excluded if x.rule == "basic_guarantee")


def test_basic_service_at_80_or_70_in_a_family_planning_special_family() -> None:
    out = yuyao(86)
    assert out.total("home_care_hours") == 3
    (grant,) = [g for g in out.grants if g.rule == "basic_service"]
    assert "86周岁，满80周岁，每月3小时" in grant.why  # the example sentence
    assert yuyao(79).total("home_care_hours") == 0
    assert yuyao(72, categories=["family_planning_special"]).total("home_care_hours") == 3
    assert yuyao(69, categories=["family_planning_special"]).total("home_care_hours") == 0


def test_exclusion_the_disability_nursing_subsidy_removes_both_rules() -> None:
    out = yuyao(86, categories=["dibao"], disability="severe", disability_nursing_subsidy=True)
    assert out.total("home_care_hours") == 0
    whys = {x.rule: x.why for x in out.excluded}
    assert "残疾人护理补贴" in whys["basic_guarantee"] and "残疾人护理补贴" in whys["basic_service"]


def test_exclusion_the_basic_guarantee_replaces_the_basic_service() -> None:
    severe, moderate = (
        yuyao(86, categories=["dibao"], disability="severe"),
        yuyao(86, categories=["dibao_edge"], dementia="moderate"),
    )
    assert severe.total("home_care_hours") == 45  # never 48
    assert moderate.total("home_care_hours") == 30  # never 33
    assert {x.rule: x.why for x in severe.excluded}[
        "basic_service"
    ] == "已享受居家养老服务基本保障，不再享受居家养老基本服务"


def test_free_one_touch_phone_at_80_or_with_severe_chronic_disease() -> None:
    assert yuyao(80).free_one_touch_phone
    assert yuyao(66, severe_chronic_disease=True).free_one_touch_phone
    assert not yuyao(79).free_one_touch_phone


def test_honggu_subsidy_split_7_to_3() -> None:
    out = honggu(65, categories=["low_income"], dementia="mild")
    assert out.total("subsidy_yuan") == 100
    assert sorted((g.payer, g.amount) for g in out.grants) == [("district", 30.0), ("province_city", 70.0)]
    assert honggu(81, categories=["sanwu"]).total("subsidy_yuan") == 100  # 80 or over needs no disability
    assert honggu(65, categories=["sanwu"]).total("subsidy_yuan") == 0  # 60-79 needs a disability or dementia
    assert honggu(59, categories=["dibao"], disability="severe").total("subsidy_yuan") == 0
    assert honggu(85, categories=["dibao_edge"]).total("subsidy_yuan") == 0  # not a honggu category


def test_built_in_rule_sets_are_valid_data() -> None:
    assert {r.region for r in BUILT_IN_RULES} == {"yuyao", "honggu"}


def test_a_rule_set_with_a_bad_condition_is_refused() -> None:
    bad = {**YUYAO, "rules": [{**YUYAO["rules"][1], "when": {"age_at_least": 80, "flag": "resident"}}]}  # type: ignore[index]
    with pytest.raises(ValueError, match="exactly one test"):
        RuleSetIn.model_validate(bad)
    with pytest.raises(ValueError, match="add up to 1"):
        RuleSetIn.model_validate({**HONGGU, "rules": [{**HONGGU["rules"][0], "payers": {"a": 0.7, "b": 0.2}}]})  # type: ignore[index]
