"""Findings, hints and the report returned by `check`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import messages

# Order in which failures are shown: file problems, then face count, then what a candidate fixes
# while setting up the shot (background, framing, posture, expression), then picture quality.
RULE_ORDER = (
    "file.format",
    "file.size",
    "image.resolution",
    "image.aspect",
    "image.color",
    "image.orientation",
    "face.count",
    "background.color",
    "background.uniform",
    "background.contrast",
    "head.size",
    "head.position",
    "face.pose",
    "face.eyes",
    "face.mouth",
    "face.glasses",
    "quality.sharpness",
    "quality.exposure",
    "quality.color",
)
_RANK = {rule: i for i, rule in enumerate(RULE_ORDER)}


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str
    value: Any
    threshold: Any
    key: str = ""  # message key, e.g. "face.count.none"; defaults to the rule id
    # How far past the limit the measurement is, in units of the measurement's noise on compliant
    # photos (rules/photo/noise.py): None for an exact rule (file, pixels, face count); a finding
    # with margin <= 1 (or an unknown noise, margin 0) is not sure enough to refuse anyone.
    margin: float | None = None

    @property
    def sure(self) -> bool:
        return self.margin is None or self.margin > 1.0

    def to_dict(self) -> dict[str, Any]:
        data = {"rule": self.rule, "message": self.message, "value": self.value,
                "threshold": self.threshold}
        if self.margin is not None:
            data["margin"] = round(float(self.margin), 2)
        return data


@dataclass(frozen=True)
class Hint:
    code: str
    message: str
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "value": self.value}


@dataclass
class Report:
    failures: list[Finding] = field(default_factory=list)
    hints: list[Hint] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    # Findings within their measurement's noise of the limit: shown to the reviewer, never refuse.
    unsure: list[Finding] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "fail" if self.failures else "pass"

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.failures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "failures": [f.to_dict() for f in self.failures],
            "hints": [h.to_dict() for h in self.hints],
            "unsure": [f.to_dict() for f in self.unsure],
            "metrics": dict(self.metrics),
        }


def finding(rule: str, value: Any, threshold: Any, *, key: str | None = None,
            shown_value: Any = None, shown_threshold: Any = None, measure: str | None = None,
            **extra: Any) -> Finding:
    """Build a finding whose message comes from messages.PHOTO_RULES.

    `shown_*` are the human-readable forms put into the Chinese text (e.g. "24 KB");
    `value`/`threshold` stay machine-readable. `measure` names the measurement (rules/photo/noise.py)
    whose noise turns the distance past the limit into the finding's margin; without it the rule is
    exact. `extra` fills further fields of the message (the background colour's name, a range).
    """
    key = key or rule
    template = messages.PHOTO_RULES.get(key) or messages.PHOTO_RULES.get(rule, rule)
    text = template.format(
        value=_shown(value if shown_value is None else shown_value),
        threshold=_shown(threshold if shown_threshold is None else shown_threshold),
        **{name: _shown(v) for name, v in extra.items()},
    )
    margin = None
    if measure is not None:
        from .noise import margin_of

        margin = margin_of(measure, value, threshold)
    return Finding(rule=rule, message=text, value=_plain(value), threshold=_plain(threshold), key=key,
                   margin=margin)


def hint(code: str, value: Any = None, *, shown: Any = None) -> Hint:
    template = messages.PHOTO_HINTS.get(code, code)
    text = template.format(value=_shown(value if shown is None else shown))
    return Hint(code=code, message=text, value=_plain(value))


def sort_failures(failures: list[Finding]) -> list[Finding]:
    return sorted(failures, key=lambda f: _RANK.get(f.rule, len(_RANK)))


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)


def _plain(value: Any) -> Any:
    """JSON-friendly: numpy scalars become Python numbers, floats are rounded."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
