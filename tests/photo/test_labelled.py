"""Every labelled sample photo: pass photos pass, fail photos fail with one of their listed rules."""
from __future__ import annotations

import pytest

from rules.photo import check

from .conftest import load_labels, rules_of

LABELS = load_labels()


@pytest.mark.skipif(not LABELS, reason="labelled photos not found (set COLLECTOR_SHARED_PHOTOS)")
@pytest.mark.parametrize("label", LABELS, ids=[label["file"] for label in LABELS])
def test_labelled_photo(label, read):
    report = check(read(label["file"]))
    fired = rules_of(report)
    assert report.verdict == label["expect"], f"{label['file']}: {fired} ({label['note']})"
    if label["expect"] == "fail":
        assert set(fired) & set(label["rules"]), f"{label['file']}: expected one of {label['rules']}, got {fired}"
    else:
        assert report.failures == []


def test_every_rule_is_exercised_by_the_labels():
    from rules.photo.report import RULE_ORDER

    labelled = {rule for label in LABELS for rule in label["rules"]}
    if not LABELS:
        pytest.skip("labelled photos not found")
    assert labelled == set(RULE_ORDER)
