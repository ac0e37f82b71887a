"""Graduation photo checker: `check(bytes) -> Report`, one small named rule per requirement."""
from .checker import check
from .landmarks import warm_up
from .report import Finding, Hint, Report
from .thresholds import PhotoThresholds

__all__ = ["check", "warm_up", "Report", "Finding", "Hint", "PhotoThresholds"]
