"""The photo checker's error rate in the field, per rule, from what reviewers decided.

A photo the checker refused reaches a reviewer when the candidate asks for a human look (申请人工审核)
or staff send it (`flask review force`, the support desk). Approving it needs the rule(s) the checker
got wrong marked (staff.review.decide): those are the checker's false refusals; a rejection upholds
every rule that refused it. Findings the checker was unsure of (within their noise, never a refusal)
are counted beside them."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Photo, ReviewDecision


@dataclass(frozen=True)
class RuleStats:
    rule: str
    refused: int  # photos the rule refused
    reviewed: int  # of those, decided by a reviewer (first round, not undone)
    wrong: int  # approved with this rule marked wrong
    upheld: int  # rejected
    unsure: int  # photos where the rule was within its noise of the limit (a hint, not a refusal)

    @property
    def error_rate(self) -> float | None:
        return self.wrong / self.reviewed if self.reviewed else None


def rule_stats(session: Session) -> list[RuleStats]:
    """One row per rule that ever refused or doubted a photo, in the checker's order."""
    from rules.photo.report import RULE_ORDER

    refused, unsure = Counter(), Counter()
    for report in session.scalars(select(Photo.report)):
        report = report or {}
        refused.update({f.get("rule") for f in report.get("failures", [])})
        unsure.update({f.get("rule") for f in report.get("unsure", [])})
    reviewed, wrong, upheld = Counter(), Counter(), Counter()
    decisions = session.execute(
        select(ReviewDecision.verdict, ReviewDecision.overridden_rules, Photo.report)
        .join(Photo, Photo.id == ReviewDecision.photo_id)
        .where(ReviewDecision.round == "first", ReviewDecision.undone_at.is_(None)))
    for verdict, overridden, report in decisions:
        for rule in {f.get("rule") for f in (report or {}).get("failures", [])}:
            reviewed[rule] += 1
            if verdict == "rejected":
                upheld[rule] += 1
            elif rule in (overridden or []):
                wrong[rule] += 1
    order = {rule: i for i, rule in enumerate(RULE_ORDER)}
    rules = sorted(set(refused) | set(unsure), key=lambda r: (order.get(r, len(order)), r or ""))
    return [RuleStats(rule, refused[rule], reviewed[rule], wrong[rule], upheld[rule], unsure[rule])
            for rule in rules if rule]
