"""ID and phone numbers never reach the log in full, in messages or in tracebacks."""
from __future__ import annotations

import io
import logging

from app import MaskPersonalData


def test_log_lines_and_tracebacks_are_masked():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskPersonalData())
    logger = logging.getLogger("test.privacy")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("candidate %s phone %s", "11010519491231002X", "13800138000")
        try:
            raise ValueError("bad id 11010519491231002X")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "19491231" not in output and "13800138000" not in output
    assert "110105********002X" in output and "138****8000" in output
    assert "ValueError: bad id 110105********002X" in output
