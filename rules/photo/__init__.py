"""Graduation photo checker: `check(bytes) -> Report`, one small named rule per requirement.

`check` and `warm_up` are imported on first use: they pull in OpenCV and mediapipe, which commands
that never look at a photo (`flask roster import`, `flask users …`) should not pay for."""
from .report import Finding, Hint, Report
from .thresholds import PhotoThresholds

__all__ = ["check", "warm_up", "Report", "Finding", "Hint", "PhotoThresholds"]


def __getattr__(name: str):
    if name == "check":
        from .checker import check
        return check
    if name == "warm_up":
        from .landmarks import warm_up
        return warm_up
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
