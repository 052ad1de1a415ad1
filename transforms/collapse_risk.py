"""The collapse-risk verdict: one line per snapshot that names the risk, with the thresholds it used.

Three figures decide it, all already in the report's trend values:

* the anchors' share of the sampled training tokens (``anchor_weighted_token_share``: the weighting stage's
  exact figure -- a trainer honouring ``sample_weight`` sees this much verified human text);
* the estimated synthetic share: the share of train documents the detector scores above 0.75 (where the
  default ``synthetic.downweight_from`` starts weighting down; <= 1 % of human dev text scores there);
* the trend of both against the previous snapshot.

Thresholds come from the recursive-training benchmark (benchmarks/README.md, "Model collapse"): an anchor
share of 0.2 degraded held-out perplexity as much as no curation at all (+122 % vs +125 % after 10
generations); 0.8 kept it near the +10 % goal's edge and 0.9 (the default ``anchors.min_share``) well inside
it. So below 0.2 is ``high``, below 0.8 is ``watch``.
"""

from __future__ import annotations

from typing import Any, Optional

THRESHOLDS: dict[str, float] = {
    "anchor_share_high_below": 0.2,     # measured: collapses like plain accumulation
    "anchor_share_watch_below": 0.8,    # measured: at the edge of holding off collapse (the default is 0.9)
    "synthetic_share_high_above": 0.5,  # most of what is not anchored looks machine-written
    "synthetic_share_watch_above": 0.2,
    "anchor_share_max_fall": 0.05,      # per snapshot, absolute
    "synthetic_share_max_rise": 0.05,
}
ANCHOR_KEY = "anchor_weighted_token_share"
SYNTHETIC_KEY = "synthetic_share_above_p75"
LEVELS = ("low", "watch", "high")


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _change(now: Optional[float], before: Optional[float]) -> Optional[float]:
    return None if now is None or before is None else now - before


def collapse_risk(values: dict[str, Any], previous: Optional[dict[str, Any]] = None,
                  thresholds: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """``{level, line, reasons, figures, thresholds}`` for one snapshot's trend values (and the previous
    snapshot's, when there is one). A figure that is missing (no weights, no detector) is named as such and
    raises the level to ``watch``: an unmeasured risk is not a low one."""
    t = dict(THRESHOLDS, **(thresholds or {}))
    anchors = values.get(ANCHOR_KEY)
    synthetic = values.get(SYNTHETIC_KEY)
    anchors_change = _change(anchors, (previous or {}).get(ANCHOR_KEY))
    synthetic_change = _change(synthetic, (previous or {}).get(SYNTHETIC_KEY))
    reasons: list[tuple[str, str]] = []
    if anchors is None:
        reasons.append(("watch", "anchor share of sampled tokens not measured (no weights)"))
    elif anchors < t["anchor_share_high_below"]:
        reasons.append(("high", f"anchors {_pct(anchors)} of sampled tokens < {_pct(t['anchor_share_high_below'])}"))
    elif anchors < t["anchor_share_watch_below"]:
        reasons.append(("watch", f"anchors {_pct(anchors)} of sampled tokens < "
                                 f"{_pct(t['anchor_share_watch_below'])}"))
    if synthetic is None:
        reasons.append(("watch", "synthetic share not measured"))
    elif synthetic > t["synthetic_share_high_above"]:
        reasons.append(("high", f"est. synthetic {_pct(synthetic)} > {_pct(t['synthetic_share_high_above'])}"))
    elif synthetic > t["synthetic_share_watch_above"]:
        reasons.append(("watch", f"est. synthetic {_pct(synthetic)} > {_pct(t['synthetic_share_watch_above'])}"))
    if anchors_change is not None and -anchors_change > t["anchor_share_max_fall"]:
        reasons.append(("watch", f"anchor share fell {100 * -anchors_change:.1f} pt since the previous snapshot"))
    if synthetic_change is not None and synthetic_change > t["synthetic_share_max_rise"]:
        reasons.append(("watch", f"est. synthetic share rose {100 * synthetic_change:.1f} pt since the previous "
                                 "snapshot"))
    level = max((lvl for lvl, _ in reasons), key=LEVELS.index, default="low")

    def trend(change: Optional[float]) -> str:
        return "no previous snapshot" if change is None else f"{100 * change:+.1f} pt"

    line = (f"collapse risk {level.upper()}: anchors {_pct(anchors)} of sampled tokens "
            f"(watch < {_pct(t['anchor_share_watch_below'])}, high < {_pct(t['anchor_share_high_below'])}; "
            f"{trend(anchors_change)}), est. synthetic {_pct(synthetic)} of train documents "
            f"(score > 0.75; watch > {_pct(t['synthetic_share_watch_above'])}, high > "
            f"{_pct(t['synthetic_share_high_above'])}; {trend(synthetic_change)})")
    return {
        "level": level,
        "line": line,
        "reasons": [reason for _, reason in reasons],
        "figures": {"anchor_share_of_sampled_tokens": anchors, "estimated_synthetic_share": synthetic,
                    "anchor_share_change": anchors_change, "synthetic_share_change": synthetic_change},
        "thresholds": t,
    }
