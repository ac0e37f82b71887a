"""Every labelled sample photo: pass photos pass, fail photos fail with one of their listed rules, and
no untrue reason is added. Each photo is checked once per session; the whole-set tests read those reports."""
from __future__ import annotations

from collections import Counter

import pytest

from rules.photo import check

from .conftest import PHOTOS, load_labels, rules_of

LABELS = load_labels()
needs_labels = pytest.mark.skipif(not LABELS, reason=f"labelled photos not found at {PHOTOS} (set COLLECTOR_SHARED_PHOTOS)")

# Rules whose extra firing on a photo labelled for something else is a false instruction the issue
# named (a bearded face told to take off glasses, a lit face told it is too dark): none at all.
NEVER_EXTRA = ("face.glasses", "quality.exposure", "face.pose", "face.eyes")
# Other extra reasons on defective photos, counted on 2026-11-29: 61 on 41 photos (125 on 76 before
# issue 12). 28 of them are file.size on derived photos that really are under 30 KB; the rest are real
# photos' own further defects (landscape, low resolution, busy backgrounds). The count may only go down.
MAX_EXTRA_REASONS = 61


@pytest.fixture(scope="module")
def reports(photos):
    return {label["file"]: check((photos / label["file"]).read_bytes()) for label in LABELS}


@needs_labels
@pytest.mark.parametrize("label", LABELS, ids=[label["file"] for label in LABELS])
def test_labelled_photo(label, reports):
    report = reports[label["file"]]
    fired = rules_of(report)
    assert report.verdict == label["expect"], f"{label['file']}: {fired} ({label['note']})"
    if label["expect"] == "fail":
        assert set(fired) & set(label["rules"]), f"{label['file']}: expected one of {label['rules']}, got {fired}"
    else:
        assert report.failures == []


@needs_labels
def test_no_compliant_photo_is_refused(reports):
    refused = {label["file"]: rules_of(reports[label["file"]]) for label in LABELS
               if label["expect"] == "pass" and reports[label["file"]].failures}
    assert refused == {}


@needs_labels
def test_every_defective_photo_is_refused_with_one_of_its_rules(reports):
    missed = {label["file"]: (label["rules"], rules_of(reports[label["file"]])) for label in LABELS
              if label["expect"] == "fail" and not set(rules_of(reports[label["file"]])) & set(label["rules"])}
    assert missed == {}


@needs_labels
def test_no_untrue_extra_reason_on_defective_photos(reports):
    extra = Counter()
    false_instructions = {}
    for label in LABELS:
        if label["expect"] != "fail":
            continue
        added = set(rules_of(reports[label["file"]])) - set(label["rules"])
        extra.update(added)
        if added & set(NEVER_EXTRA):
            false_instructions[label["file"]] = sorted(added & set(NEVER_EXTRA))
    print(f"extra reasons on defective photos: {sum(extra.values())} {dict(extra)}")
    assert false_instructions == {}
    assert sum(extra.values()) <= MAX_EXTRA_REASONS, dict(extra)


@needs_labels
def test_no_compliant_photo_gets_an_unsure_hint(reports):
    """A compliant photo's measurements sit outside their noise band: nothing for a reviewer to chase."""
    unsure = {label["file"]: [f.rule for f in reports[label["file"]].unsure] for label in LABELS
              if label["expect"] == "pass" and reports[label["file"]].unsure}
    assert unsure == {}


def test_every_rule_is_exercised_by_the_labels():
    from rules.photo.report import RULE_ORDER

    labelled = {rule for label in LABELS for rule in label["rules"]}
    if not LABELS:
        pytest.skip("labelled photos not found")
    # image.orientation: no labelled photo lies on its side; tests/photo/test_trust.py turns compliant ones.
    assert labelled == set(RULE_ORDER) - {"image.orientation"}
