"""The entitlement evaluator: a rule set (data) and an elder's facts in, grants out, each with
a sentence in Chinese that names the facts it used. Pure: no I/O, no clock.

A rule grants when its ``when`` holds, a tier (if it has tiers) matches, and none of its
``unless`` exclusions hold; a granted rule then removes the rules it ``supersedes`` (the
basic guarantee replaces the basic service: 45 or 30 hours, never 48 or 33).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from hotline.core.care import Condition, Excluded, Grant, Rule
from hotline.core.vocab import Benefit, Degree
from hotline.core.wire import Eligibility

CATEGORY_NAMES = {
    "dibao": "低保",
    "dibao_edge": "低保边缘",
    "sanwu": "三无",
    "wubao": "五保",
    "family_planning_special": "计划生育特殊",
    "entitled_veteran": "优抚对象",
    "bravery_honour": "见义勇为",
    "low_income": "其他低收入",
}
DEGREE_NAMES = {"none": "无", "mild": "轻度", "moderate": "中度", "severe": "重度"}
OF_NAMES = {"disability": "失能", "dementia": "失智"}
LIVING_NAMES = {"alone": "独居", "empty_nest": "空巢", "with_family": "与家人同住", "institution": "住养老机构"}
FLAG_NAMES = {
    "local_hukou": ("本地户籍", "非本地户籍"),
    "resident": ("实际居住在本地", "未在本地居住"),
    "disability_nursing_subsidy": ("享受残疾人护理补贴", "未享受残疾人护理补贴"),
    "severe_chronic_disease": ("患有重度慢性疾病", "无重度慢性疾病"),
}
_DEGREES = [d.value for d in Degree]


@dataclass(frozen=True)
class Facts:
    """What the rules may read about one elder in one month."""

    age: int  # full years on the first day of the month
    eligibility: Eligibility
    living_situation: str


def age_on(birth: date, month: str) -> int:
    """Full years on the first day of ``month`` (YYYY-MM)."""
    first = date(int(month[:4]), int(month[5:7]), 1)
    return first.year - birth.year - ((first.month, first.day) < (birth.month, birth.day))


def test(cond: Condition, facts: Facts) -> tuple[bool, str]:
    """Whether ``cond`` holds, and the facts that decided it, in Chinese."""
    e = facts.eligibility
    if cond.flag is not None:
        yes, no = FLAG_NAMES[cond.flag]
        held = bool(getattr(e, cond.flag))
        return held, yes if held else no
    if cond.age_at_least is not None:
        held = facts.age >= cond.age_at_least
        return held, f"{facts.age}周岁，{'满' if held else '未满'}{cond.age_at_least}周岁"
    if cond.category_in is not None:
        mine = [c for c in cond.category_in if c in e.categories]
        if mine:
            return True, "、".join(CATEGORY_NAMES[c] for c in mine) + "家庭"
        return False, "不属于" + "、".join(CATEGORY_NAMES[c] for c in cond.category_in) + "家庭"
    if cond.degree_at_least is not None:
        d = cond.degree_at_least
        worst = max(d.of, key=lambda name: _DEGREES.index(getattr(e, name)))
        level = getattr(e, worst)
        held = _DEGREES.index(level) >= _DEGREES.index(d.level)
        what = "或".join(OF_NAMES[o] for o in d.of)
        if held:
            return True, f"{DEGREE_NAMES[level]}{OF_NAMES[worst]}"
        return False, f"{what}程度为{DEGREE_NAMES[level]}，未达{DEGREE_NAMES[d.level]}"
    if cond.living_situation_in is not None:
        held = facts.living_situation in cond.living_situation_in
        name = LIVING_NAMES.get(facts.living_situation, facts.living_situation)
        return held, name if held else f"{name}，不属于" + "、".join(LIVING_NAMES[x] for x in cond.living_situation_in)
    if cond.all is not None:
        phrases = []
        for part in cond.all:
            held, why = test(part, facts)
            if not held:
                return False, why
            phrases.append(why)
        return True, "，".join(phrases)
    if cond.any is not None:
        misses = []
        for part in cond.any:
            held, why = test(part, facts)
            if held:
                return True, why
            misses.append(why)
        return False, "；".join(misses)
    assert cond.not_ is not None
    held, why = test(cond.not_, facts)
    return not held, why


def _amount_text(benefit: str, amount: float) -> str:
    n = f"{amount:g}"
    if benefit == Benefit.HOME_CARE_HOURS:
        return f"每月{n}小时"
    if benefit == Benefit.SUBSIDY_YUAN:
        return f"每月{n}元"
    return "免费安装一键通"


@dataclass
class Outcome:
    grants: list[Grant] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)

    def total(self, benefit: str) -> float:
        return round(sum(g.amount for g in self.grants if g.benefit == benefit), 2)

    @property
    def free_one_touch_phone(self) -> bool:
        return any(g.benefit == Benefit.FREE_ONE_TOUCH_PHONE for g in self.grants)


def evaluate(rules: Sequence[Rule], facts: Facts) -> Outcome:
    """Every rule of the set, granted or excluded, in the set's order."""
    held: dict[str, tuple[Rule, float, str]] = {}
    out = Outcome()
    for rule in rules:
        ok, why = test(rule.when, facts)
        if not ok:
            out.excluded.append(Excluded(rule=rule.name, why=f"不符合{rule.label}：{why}"))
            continue
        amount = rule.amount or 0.0
        if rule.tiers is not None:
            tier_why = []
            for tier in rule.tiers:
                matched, phrase = test(tier.when, facts)
                if matched:
                    amount, why = tier.amount, f"{why}，{phrase}"
                    break
                tier_why.append(phrase)
            else:
                out.excluded.append(Excluded(rule=rule.name, why=f"不符合{rule.label}：{why}，但{tier_why[-1]}"))
                continue
        blocked = next(((x, p) for x in rule.unless for hit, p in [test(x.when, facts)] if hit), None)
        if blocked is not None:
            exclusion, phrase = blocked
            out.excluded.append(Excluded(rule=rule.name, why=f"{phrase}：{exclusion.why}"))
            continue
        held[rule.name] = (rule, amount, why)
    for name, (rule, _, _) in list(held.items()):
        for other in rule.supersedes:
            if other in held and name in held:
                out.excluded.append(Excluded(rule=other, why=f"已享受{rule.label}，不再享受{held[other][0].label}"))
                del held[other]
    for rule, amount, why in held.values():
        text = f"{why}，{_amount_text(rule.benefit, amount)}"
        if rule.benefit == Benefit.FREE_ONE_TOUCH_PHONE:
            out.grants.append(Grant(rule=rule.name, benefit=rule.benefit, amount=1, payer="government", why=text))
            continue
        for payer, share in rule.payers.items():
            part = round(amount * share, 2)
            split = f"（其中{payer}承担{part:g}）" if len(rule.payers) > 1 else ""
            out.grants.append(Grant(rule=rule.name, benefit=rule.benefit, amount=part, payer=payer, why=text + split))
    return out
