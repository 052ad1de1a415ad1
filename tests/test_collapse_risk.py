"""The collapse-risk verdict: a pure function of a snapshot's trend values and the previous snapshot's."""

from __future__ import annotations

import itertools

import pytest

from tailguard.transforms.collapse_risk import THRESHOLDS, collapse_risk


def values(anchors, synthetic):
    return {"anchor_weighted_token_share": anchors, "synthetic_share_above_p75": synthetic}


@pytest.mark.parametrize("anchors,synthetic,level", [
    (0.85, 0.05, "low"),
    (0.80, 0.20, "low"),        # on the thresholds: not beyond them
    (0.79, 0.05, "watch"),
    (0.85, 0.21, "watch"),
    (0.19, 0.05, "high"),
    (0.85, 0.51, "high"),
    (None, 0.05, "watch"),      # unmeasured is not low
    (0.85, None, "watch"),
])
def test_levels_follow_the_thresholds(anchors, synthetic, level):
    verdict = collapse_risk(values(anchors, synthetic))
    assert verdict["level"] == level
    assert verdict["line"].startswith(f"collapse risk {level.upper()}:")
    assert verdict["thresholds"] == THRESHOLDS and "no previous snapshot" in verdict["line"]
    assert bool(verdict["reasons"]) == (level != "low")


def test_a_falling_anchor_share_or_rising_synthetic_share_is_a_trend_warning():
    steady = collapse_risk(values(0.9, 0.05), values(0.92, 0.04))
    assert steady["level"] == "low" and "-2.0 pt" in steady["line"] and "+1.0 pt" in steady["line"]
    falling = collapse_risk(values(0.9, 0.05), values(0.97, 0.05))
    assert falling["level"] == "watch" and "fell 7.0 pt" in falling["reasons"][0]
    rising = collapse_risk(values(0.9, 0.12), values(0.9, 0.05))
    assert rising["level"] == "watch" and "rose 7.0 pt" in rising["reasons"][0]
    assert rising["figures"]["synthetic_share_change"] == pytest.approx(0.07)


def test_level_never_falls_as_the_figures_worsen():
    grid = [i / 20 for i in range(21)]
    order = ("low", "watch", "high")
    for anchors, synthetic in itertools.product(grid, grid):
        level = order.index(collapse_risk(values(anchors, synthetic))["level"])
        worse = collapse_risk(values(max(0.0, anchors - 0.05), min(1.0, synthetic + 0.05)))["level"]
        assert order.index(worse) >= level


def test_thresholds_can_be_overridden_and_are_reported():
    verdict = collapse_risk(values(0.5, 0.05), thresholds={"anchor_share_watch_below": 0.4})
    assert verdict["level"] == "low" and verdict["thresholds"]["anchor_share_watch_below"] == 0.4
