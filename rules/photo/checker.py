"""`check`: run every rule on one photo and collect the report."""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from . import background, face, file, head, hints, image, orientation, quality
from .context import Photo
from .decode import Decoded, decode, sniff
import messages

from .report import Finding, Hint, Report, sort_failures
from .thresholds import PhotoThresholds

log = logging.getLogger(__name__)

Rule = Callable[[Photo], "Finding | Iterable[Finding] | None"]

FILE_RULES: tuple[Rule, ...] = file.RULES + image.RULES
CONTENT_RULES: tuple[Rule, ...] = orientation.RULES + face.RULES + head.RULES + background.RULES + quality.RULES

_DEFAULTS = PhotoThresholds()


def check(data: bytes, thresholds: PhotoThresholds | None = None) -> Report:
    """Check one photo's bytes against every rule; never raises on bad input."""
    return inspect(data, thresholds)[0]


def inspect(data: bytes, thresholds: PhotoThresholds | None = None) -> tuple[Report, Photo]:
    """Like `check`, also returning the analysed photo (for drawing explanations)."""
    t = thresholds or _DEFAULTS
    photo = Photo(_safe_decode(data, t), t)
    rules = FILE_RULES + (CONTENT_RULES if photo.decoded.ok else ())
    failures: list[Finding] = []
    for rule in rules:
        failures.extend(_run(rule, photo))
    failures = orientation.only_orientation(failures)
    sure = [f for f in failures if f.sure]
    unsure = [f for f in failures if not f.sure]
    report = Report(failures=sort_failures(sure), metrics=photo.metrics, unsure=sort_failures(unsure))
    report.hints = _safe_hints(photo) if photo.decoded.ok else []
    # Within the measurement's noise of its limit: not enough to refuse, enough for a reviewer to look.
    report.hints += [_unsure_hint(f) for f in report.unsure]
    if photo.metrics.get("rule_errors"):
        # A measurement that broke must not pass silently: the reviewer is told what to look at.
        report.hints.append(Hint("rule_error", messages.PHOTO_HINTS["rule_error"].format(
            value="、".join(photo.metrics["rule_errors"])), photo.metrics["rule_errors"]))
    return report, photo


def _unsure_hint(f: Finding) -> Hint:
    text = messages.PHOTO_HINTS["unsure"].format(rule=f.rule, value=f.value, threshold=f.threshold)
    return Hint(f"unsure:{f.rule}", text, f.value)


def _safe_decode(data: bytes, t: PhotoThresholds) -> Decoded:
    try:
        return decode(bytes(data or b""), t)
    except Exception:  # noqa: BLE001 - decode already guards; this is the last line of defence
        log.exception("photo decode failed")
        return Decoded(size_bytes=len(data or b""), sniffed=sniff(data or b""), problem="unknown")


def _run(rule: Rule, photo: Photo) -> list[Finding]:
    try:
        out = rule(photo)
    except Exception:  # noqa: BLE001 - one broken measurement must not sink the whole report
        log.exception("photo rule %s failed", getattr(rule, "__name__", rule))
        photo.metrics.setdefault("rule_errors", []).append(getattr(rule, "__name__", str(rule)))
        return []
    if out is None:
        return []
    return [out] if isinstance(out, Finding) else [f for f in out if f is not None]


def _safe_hints(photo: Photo):
    try:
        return hints.collect(photo)
    except Exception:  # noqa: BLE001
        log.exception("photo hints failed")
        return []
