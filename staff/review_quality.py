"""How reviewers do: counts, time per photo, and how often a blind second look disagrees with them."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import median

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from rules.identity import mask_id_number
from staff.review import FIRST, SECOND
from store.models import Photo, ReviewDecision, RosterEntry, SecondReview


@dataclass(frozen=True)
class ReviewerFigures:
    reviewer: str
    approved: int  # first-round verdicts, undone ones not counted
    rejected: int
    second_looks: int  # blind second reviews this reviewer gave of others' approvals
    median_seconds: float | None  # claim to verdict, over verdicts given from the console queue
    checked: int  # this reviewer's approvals that got a second look
    disagreements: int  # of those, how many the second reviewer rejected

    @property
    def decided(self) -> int:
        return self.approved + self.rejected

    @property
    def disagreement_rate(self) -> float | None:
        return self.disagreements / self.checked if self.checked else None


@dataclass(frozen=True)
class Disagreement:
    photo_id: int
    name: str
    masked_id_number: str
    exam_number: str
    first: ReviewDecision
    second: ReviewDecision


def reviewer_figures(session: Session) -> list[ReviewerFigures]:
    """One row per reviewer who decided anything, most decisions first."""
    decisions = list(session.scalars(select(ReviewDecision).where(ReviewDecision.undone_at.is_(None))))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    durations: dict[str, list[float]] = defaultdict(list)
    for decision in decisions:
        mine = counts[decision.reviewer]
        if decision.round == SECOND:
            mine["second"] += 1
        else:
            mine[decision.verdict] += 1
        if decision.claimed_at is not None:
            durations[decision.reviewer].append((decision.decided_at - decision.claimed_at).total_seconds())
    for first, second in _pairs(session):
        counts[first.reviewer]["checked"] += 1
        counts[first.reviewer]["disagreements"] += first.verdict != second.verdict
    figures = [ReviewerFigures(reviewer=name, approved=c["approved"], rejected=c["rejected"],
                               second_looks=c["second"],
                               median_seconds=median(durations[name]) if durations[name] else None,
                               checked=c["checked"], disagreements=c["disagreements"])
               for name, c in counts.items()]
    return sorted(figures, key=lambda f: (-f.decided, f.reviewer))


def disagreements(session: Session, limit: int = 500) -> list[Disagreement]:
    """Second looks that came to another verdict than the first, newest first (for an admin)."""
    first, second = aliased(ReviewDecision), aliased(ReviewDecision)
    rows = session.execute(_pair_query(first, second).add_columns(Photo, RosterEntry)
                           .join(Photo, Photo.id == SecondReview.photo_id)
                           .join(RosterEntry, RosterEntry.id == Photo.roster_entry_id)
                           .where(first.verdict != second.verdict)
                           .order_by(SecondReview.created_at.desc()).limit(limit)).all()
    return [Disagreement(photo.id, entry.name, mask_id_number(entry.id_number), entry.exam_number, one, other)
            for one, other, photo, entry in rows]


def _pair_query(first, second):
    return (select(first, second).select_from(SecondReview)
            .join(first, first.id == SecondReview.first_decision_id)
            .join(second, second.id == SecondReview.second_decision_id)
            .where(first.round == FIRST, first.undone_at.is_(None)))


def _pairs(session: Session) -> list[tuple[ReviewDecision, ReviewDecision]]:
    first, second = aliased(ReviewDecision), aliased(ReviewDecision)
    return [(one, other) for one, other in session.execute(_pair_query(first, second)).all()]
