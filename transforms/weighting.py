"""Final training weights: a number of epochs, capped, anchors at their share.

What a weight means is stated once, in :data:`WEIGHT_MEANING` (the manifest, the README and the dataset card
quote it): the expected number of times the document is seen in one pass over the snapshot's token budget,
``B = sum(sample_weight * tokens)`` over ``train/``. ``tailguard.training`` turns it into a sampling plan.

Given each train document's raw rarity weight ``r`` (``rarity_signals.raw``), its token count ``n`` and whether
it is an anchor, the weight is

    w = clip(c * k_anchor * r, min_weight, ceiling) / M,    ceiling = min(max_weight, max_epochs)

With ``rarity.normalize: anchor_mean`` (the default) the anchors' scale ``c k`` is fixed so that *their* mean
weight is 1 (human text is seen about once per pass), and ``anchors.min_share`` is reached by lowering ``c`` --
weighting the other documents down to as little as ``min_weight`` -- instead of raising the anchors: human text
is never repeated to make room for a growing synthetic remainder. (Without anchors in the split it falls back
to ``split_mean``.)

With ``rarity.normalize: split_mean``:

* ``c`` scales everything so the mean weight over the train split is 1;
* ``k`` (>= 1, anchors only) is the smallest multiplier that brings the anchors' weighted token share,
  ``sum(w n | anchor) / sum(w n)``, to ``anchors.min_share``; if even anchors at the ceiling cannot reach
  it, the largest reachable share is used and the shortfall reported (and the run fails with
  ``anchors.enforce``);

In both modes:

* ``rarity.max_epochs`` (default 4) caps every weight, whatever raised it -- language temperature, rarity,
  the anchor multiplier. Where the cap binds, the manifest's ``repetition_cap`` block reports how many
  documents it held down and the share of the uncapped weighted tokens it removed;
* ``c`` and ``k`` are solved on a mergeable log-histogram of ``r`` (``_HIST_BINS`` bins per group, combined
  across workers -- no document list on one worker), then one exact pass measures the realised mean ``M`` of
  the clipped weights and divides it out, so the mean is 1 up to the few documents whose clipping that
  division touches (the manifest reports the realised mean and share exactly).

With ``rarity.materialize``, each document also gets ``repeats``: floor(w), plus one more when a hash of its
id falls below the fractional part -- deterministic, expected value w, at least 1 so no kept document vanishes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import apache_beam as beam
import numpy as np

from tailguard.transforms.anchors import AnchorsConfig
from tailguard.transforms.exact import ExactMean, from_fixed, to_fixed
from tailguard.transforms.rarity import RarityConfig
from tailguard.transforms.stage import WEIGHTS_REPORT, StageOutputs, no_rejections
from tailguard.transforms.text import stable_fraction

_LOG2_MIN, _LOG2_MAX, _HIST_BINS = -60.0, 60.0, 24_000

WEIGHT_MEANING = (
    "sample_weight is the expected number of times a trainer sees the document in one pass over the snapshot's "
    "token budget (the sum of sample_weight x tokens over train/): 1 = once, 0.25 = in one pass out of four. "
    "No document exceeds rarity.max_epochs (default 4); human anchors average 1 and hold at least "
    "anchors.min_share of the pass's tokens.")
_REPEAT_SALT = "materialize-repeats"


class WeightScale(NamedTuple):
    scale: float
    anchor_multiplier: float
    predicted_share: float
    reachable: bool
    # Whose realised mean is divided out: the whole split's ("split_mean") or the anchors' ("anchor_mean").
    normalize: str = "split_mean"


# --------------------------------------------------------------------------------------------------- pure logic


def _bin_of(r: float) -> int:
    position = (math.log2(max(r, 2.0 ** _LOG2_MIN)) - _LOG2_MIN) / (_LOG2_MAX - _LOG2_MIN) * _HIST_BINS
    return min(max(int(position), 0), _HIST_BINS - 1)


def _bin_edges() -> tuple[np.ndarray, np.ndarray]:
    edges = 2.0 ** np.linspace(_LOG2_MIN, _LOG2_MAX, _HIST_BINS + 1)
    return edges[:-1], edges[1:]


class WeightHistogram(beam.CombineFn):
    """Per group (0 = not anchor, 1 = anchor) and occupied bin: count, sum r, sum n, sum r*n.

    Sums are exact fixed-point integers (``transforms.exact``), so the histogram -- and the scale solved from
    it -- is the same whatever order workers merge in. Output: a ``(2, 4, _HIST_BINS)`` float array.
    """

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item):
        r, n, is_anchor = item
        key = (1 if is_anchor else 0, _bin_of(r))
        count, sum_r, sum_n, sum_rn = acc.get(key, (0, 0, 0, 0))
        acc[key] = (count + 1, sum_r + to_fixed(r), sum_n + to_fixed(n), sum_rn + to_fixed(r * n))
        return acc

    def merge_accumulators(self, accumulators):
        total: dict = {}
        for acc in accumulators:
            for key, values in acc.items():
                current = total.get(key)
                total[key] = values if current is None else tuple(a + b for a, b in zip(current, values))
        return total

    def extract_output(self, acc):
        histogram = np.zeros((2, 4, _HIST_BINS), dtype=np.float64)
        for (group, b), (count, sum_r, sum_n, sum_rn) in acc.items():
            histogram[group, :, b] = (count, from_fixed(sum_r), from_fixed(sum_n), from_fixed(sum_rn))
        return histogram


class _Occupied(NamedTuple):
    """One group's non-empty histogram bins: what the solver evaluates thousands of times."""

    n_docs: np.ndarray
    sum_r: np.ndarray
    sum_n: np.ndarray
    sum_rn: np.ndarray
    low_edge: np.ndarray
    high_edge: np.ndarray


def _occupied(histogram: np.ndarray) -> tuple[_Occupied, _Occupied]:
    low_edge, high_edge = _bin_edges()
    groups = []
    for group in (0, 1):
        mask = histogram[group, 0] > 0
        n_docs, sum_r, sum_n, sum_rn = (histogram[group, i][mask] for i in range(4))
        groups.append(_Occupied(n_docs, sum_r, sum_n, sum_rn, low_edge[mask], high_edge[mask]))
    return groups[0], groups[1]


def evaluate(groups: tuple[_Occupied, _Occupied], scale: float, anchor_multiplier: float, lo: float, hi: float
             ) -> tuple[float, float, float]:
    """``(mean weight, anchor token share, documents)`` for a scale and anchor multiplier.

    Exact for every bin wholly inside or outside the clip range; a bin straddling a bound (width 0.35 %)
    is treated as if all its documents had the bin's mean raw weight.
    """
    total_w = total_wn = anchor_wn = count = 0.0
    for group, mult in ((groups[0], scale), (groups[1], scale * anchor_multiplier)):
        group_w, group_wn, group_count = _group_sums(group, mult, lo, hi)
        total_w += group_w
        total_wn += group_wn
        if group is groups[1]:
            anchor_wn = group_wn
        count += group_count
    if count == 0:
        return 1.0, 0.0, 0.0
    return total_w / count, (anchor_wn / total_wn if total_wn > 0 else 0.0), count


def _group_sums(group: _Occupied, mult: float, lo: float, hi: float) -> tuple[float, float, float]:
    """``(sum of weights, sum of weight x tokens, documents)`` of one group at one scale (see :func:`evaluate`)."""
    if group.n_docs.size == 0:
        return 0.0, 0.0, 0.0
    clipped = np.clip(mult * group.sum_r / group.n_docs, lo, hi)
    inside = (mult * group.low_edge >= lo) & (mult * group.high_edge <= hi)
    group_w = float(np.where(inside, mult * group.sum_r, clipped * group.n_docs).sum())
    group_wn = float(np.where(inside, mult * group.sum_rn, clipped * group.sum_n).sum())
    return group_w, group_wn, float(group.n_docs.sum())


def _bisect(low: float, high: float, steps: int, move_low: Callable[[float], bool]) -> tuple[float, float]:
    """Halve ``[low, high]`` ``steps`` times, keeping the half whose ends ``move_low`` tells apart."""
    for _ in range(steps):
        mid = (low + high) / 2
        if move_low(mid):
            low = mid
        else:
            high = mid
    return low, high


def _scale_for_mean_one(mean_at: Callable[[float], float]) -> float:
    """The scale at which ``mean_at(scale)`` (a clipped mean weight, rising with the scale) is 1."""
    low, high = _bisect(-80.0, 80.0, 64, lambda log2_scale: mean_at(2.0 ** log2_scale) < 1.0)
    return 2.0 ** ((low + high) / 2)


def _split_mean_at(groups, anchor_multiplier: float, lo: float, hi: float) -> Callable[[float], float]:
    return lambda scale: evaluate(groups, scale, anchor_multiplier, lo, hi)[0]


def _group_mean_at(group: _Occupied, lo: float, hi: float) -> Callable[[float], float]:
    def mean_at(scale: float) -> float:
        total_w, _, count = _group_sums(group, scale, lo, hi)
        return total_w / count
    return mean_at


def solve_weight_scale(histogram: np.ndarray, lo: float, hi: float, min_share: float,
                       normalize: str = "split_mean") -> WeightScale:
    """Smallest anchor multiplier reaching ``min_share``, or the best reachable: with ``split_mean`` at mean
    weight 1 over the split throughout, with ``anchor_mean`` at mean weight 1 over the anchors."""
    groups = _occupied(histogram)
    if normalize == "anchor_mean" and groups[1].n_docs.size:
        return _solve_at_anchor_mean_one(groups, lo, hi, min_share)

    def share_at(multiplier: float) -> tuple[float, float]:
        scale = _scale_for_mean_one(_split_mean_at(groups, multiplier, lo, hi))
        return scale, evaluate(groups, scale, multiplier, lo, hi)[1]

    scale, share = share_at(1.0)
    if share >= min_share or groups[1].n_docs.size == 0:
        return WeightScale(scale, 1.0, share, share >= min_share)
    top = math.log2(hi / lo) + 1.0  # beyond this every anchor is at max_weight and every other at min_weight
    best_scale, best_share = share_at(2.0 ** top)
    if best_share < min_share:
        return WeightScale(best_scale, 2.0 ** top, best_share, False)
    _, high = _bisect(0.0, top, 40, lambda mid: share_at(2.0 ** mid)[1] < min_share)
    scale, share = share_at(2.0 ** high)
    return WeightScale(scale, 2.0 ** high, share, True)


def _solve_at_anchor_mean_one(groups: tuple[_Occupied, _Occupied], lo: float, hi: float,
                              min_share: float) -> WeightScale:
    """Anchors at mean weight 1; the largest scale for the other documents (at most the anchors') that gives
    the anchors ``min_share`` of the weighted tokens -- or, if even every other document at ``min_weight``
    leaves the anchors short, that bottom scale and the share it gives."""
    anchor_scale = _scale_for_mean_one(_group_mean_at(groups[1], lo, hi))

    def share_at(log2_scale: float) -> float:
        scale = 2.0 ** log2_scale
        return evaluate(groups, scale, anchor_scale / scale, lo, hi)[1]

    top = math.log2(anchor_scale)
    share = share_at(top)
    if share >= min_share or groups[0].n_docs.size == 0:
        return WeightScale(anchor_scale, 1.0, share, share >= min_share, "anchor_mean")
    # Below this scale every non-anchor document sits at min_weight: nothing lower changes the share.
    bottom = min(math.log2(lo / float(groups[0].high_edge.max())), top)
    best_share = share_at(bottom)
    if best_share < min_share:
        return WeightScale(2.0 ** bottom, anchor_scale / 2.0 ** bottom, best_share, False, "anchor_mean")
    # share_at(low) >= min_share > share_at(high) throughout: the share falls as the scale rises.
    low, _ = _bisect(bottom, top, 60, lambda mid: share_at(mid) >= min_share)
    return WeightScale(2.0 ** low, anchor_scale / 2.0 ** low, share_at(low), True, "anchor_mean")


def clipped_weight(doc: dict[str, Any], solved: WeightScale, lo: float, hi: float) -> float:
    multiplier = solved.anchor_multiplier if doc.get("is_anchor") else 1.0
    return float(min(max(solved.scale * multiplier * doc["rarity_signals"]["raw"], lo), hi))


def final_weight(doc: dict[str, Any], solved: WeightScale, realised_mean: float, lo: float, hi: float) -> float:
    return float(min(max(clipped_weight(doc, solved, lo, hi) / (realised_mean or 1.0), lo), hi))


def uncapped_weight(doc: dict[str, Any], solved: WeightScale, realised_mean: float, lo: float) -> float:
    """The weight the document would get without any ceiling: what the repetition cap is measured against."""
    return max(clipped_weight(doc, solved, lo, math.inf) / (realised_mean or 1.0), lo)


def repeats_for(doc_id: str, weight: float) -> int:
    whole = math.floor(weight)
    extra = 1 if stable_fraction(doc_id, _REPEAT_SALT) < weight - whole else 0
    return max(1, whole + extra)


def tokens_of(doc: dict[str, Any]) -> float:
    return float(doc["rarity_signals"].get("tokens", 0.0))


# --------------------------------------------------------------------------------------------------- Beam wiring


def _clipped_for_mean(doc: dict[str, Any], solved: WeightScale, lo: float, hi: float):
    """The clipped weights whose mean the final pass divides out: every document's, or only the anchors'."""
    if solved.normalize == "anchor_mean" and not doc.get("is_anchor"):
        return []
    return [clipped_weight(doc, solved, lo, hi)]


def _histogram_item(doc: dict[str, Any]):
    return doc["rarity_signals"]["raw"], tokens_of(doc), bool(doc.get("is_anchor"))


def _weighted(doc: dict[str, Any], solved: WeightScale, realised_mean: float, rarity: RarityConfig
              ) -> dict[str, Any]:
    out = dict(doc)
    weight = final_weight(doc, solved, realised_mean, rarity.min_weight, rarity.ceiling)
    out["sample_weight"] = weight
    if rarity.materialize:
        out["repeats"] = repeats_for(doc["doc_id"], weight)
    return out


def _with_uncapped(doc: dict[str, Any], solved: WeightScale, realised_mean: float, rarity: RarityConfig):
    return doc, uncapped_weight(doc, solved, realised_mean, rarity.min_weight)


_SUMS = ("docs", "weight", "wn", "anchor_weight", "anchor_wn", "anchors", "capped", "capped_anchors",
         "uncapped_wn", "excess_wn")


class _WeightStats(beam.CombineFn):
    """Exact realised figures for the manifest: mean weight, anchor token share, weight by source, and what the
    repetition cap held down. Input: ``(weighted document, its uncapped weight)``."""

    def __init__(self, ceiling: float):
        self.ceiling = ceiling

    def create_accumulator(self):
        return dict({key: 0 for key in _SUMS}, by_source={})

    def add_input(self, acc, item):
        doc, uncapped = item
        tokens = tokens_of(doc)
        w, wn = to_fixed(doc["sample_weight"]), to_fixed(doc["sample_weight"] * tokens)
        acc["docs"] += 1
        acc["weight"] += w
        acc["wn"] += wn
        acc["uncapped_wn"] += to_fixed(uncapped * tokens)
        if uncapped > self.ceiling:
            acc["capped"] += 1
            acc["capped_anchors"] += 1 if doc.get("is_anchor") else 0
            acc["excess_wn"] += to_fixed((uncapped - self.ceiling) * tokens)
        if doc.get("is_anchor"):
            acc["anchor_weight"] += w
            acc["anchor_wn"] += wn
            acc["anchors"] += 1
        source = doc.get("source") or "?"
        acc["by_source"][source] = acc["by_source"].get(source, 0) + w
        return acc

    def merge_accumulators(self, accumulators):
        total = self.create_accumulator()
        for acc in accumulators:
            for key in _SUMS:
                total[key] += acc[key]
            for source, w in acc["by_source"].items():
                total["by_source"][source] = total["by_source"].get(source, 0) + w
        return total

    def extract_output(self, acc):
        out = dict(acc)
        for key in ("weight", "wn", "anchor_weight", "anchor_wn", "uncapped_wn", "excess_wn"):
            out[key] = from_fixed(acc[key])
        out["by_source"] = {source: from_fixed(w) for source, w in acc["by_source"].items()}
        return out


def _weights_report(stats: dict, quantiles: list, solved: WeightScale, rarity: RarityConfig,
                    anchors: AnchorsConfig) -> dict[str, Any]:
    docs = stats["docs"]
    share = stats["anchor_wn"] / stats["wn"] if stats["wn"] > 0 else 0.0
    top = sorted(stats["by_source"].items(), key=lambda item: (-item[1], item[0]))[:10]
    return {
        "meaning": WEIGHT_MEANING,
        "token_budget": stats["wn"],
        "train_documents": docs,
        "train_anchors": stats["anchors"],
        "mean_weight": stats["weight"] / docs if docs else None,
        "normalize": solved.normalize,
        "anchor_mean_weight": stats["anchor_weight"] / stats["anchors"] if stats["anchors"] else None,
        "weight_quantiles": {f"p{int(round(100 * i / (len(quantiles) - 1)))}": q
                             for i, q in enumerate(quantiles)} if len(quantiles) > 1 else {},
        "min_weight": rarity.min_weight,
        "max_weight": rarity.max_weight,
        "max_epochs": rarity.max_epochs,
        "repetition_cap": repetition_cap_report(stats, rarity),
        "anchor_token_share": share,
        "anchor_min_share": anchors.min_share,
        "anchor_multiplier": solved.anchor_multiplier,
        "anchor_share_met": share >= anchors.min_share - 1e-6,
        "anchor_share_shortfall": max(0.0, anchors.min_share - share),
        "anchor_enforce": anchors.enforce,
        "top_sources_by_weight": [{"source": s, "weight": w} for s, w in top],
    }


def repetition_cap_report(stats: dict, rarity: RarityConfig) -> dict[str, Any]:
    """Where the ceiling ``min(max_weight, max_epochs)`` bound: documents held down, and the share of the
    uncapped weighted tokens it removed (the repetition the cap refused)."""
    return {
        "ceiling": rarity.ceiling,
        "binds": stats["capped"] > 0,
        "capped_documents": stats["capped"],
        "capped_anchor_documents": stats["capped_anchors"],
        "capped_token_mass_share": stats["excess_wn"] / stats["uncapped_wn"] if stats["uncapped_wn"] > 0 else 0.0,
    }


class BalanceWeights(beam.PTransform):
    """Train documents with raw weights in; out: ``StageOutputs`` of the documents with ``sample_weight`` (nothing
    rejected), with the one weights-report dict for the manifest as ``extra[WEIGHTS_REPORT]``."""

    def __init__(self, rarity: RarityConfig, anchors: AnchorsConfig):
        super().__init__()
        self.rarity = rarity
        self.anchors = anchors

    def expand(self, train):
        lo, hi = self.rarity.min_weight, self.rarity.ceiling
        min_share = self.anchors.min_share if self.anchors.enabled else 0.0
        solved = (
            train
            | "HistogramItems" >> beam.Map(_histogram_item)
            | "WeightHistogram" >> beam.CombineGlobally(WeightHistogram())
            | "SolveScale" >> beam.Map(solve_weight_scale, lo, hi, min_share, self.rarity.normalize)
        )
        realised_mean = (
            train
            | "ClippedWeights" >> beam.FlatMap(_clipped_for_mean, beam.pvalue.AsSingleton(solved), lo, hi)
            | "RealisedMean" >> beam.CombineGlobally(ExactMean())
        )
        weighted = train | "FinalWeights" >> beam.Map(
            _weighted, beam.pvalue.AsSingleton(solved), beam.pvalue.AsSingleton(realised_mean), self.rarity)
        stats = (weighted
                 | "WithUncapped" >> beam.Map(_with_uncapped, beam.pvalue.AsSingleton(solved),
                                              beam.pvalue.AsSingleton(realised_mean), self.rarity)
                 | "WeightStats" >> beam.CombineGlobally(_WeightStats(hi)))
        quantiles = (weighted
                     | "Weights" >> beam.Map(lambda doc: doc["sample_weight"])
                     | "Quantiles" >> beam.ApproximateQuantiles.Globally(11))
        report = stats | "Report" >> beam.Map(
            _weights_report, beam.pvalue.AsSingleton(quantiles), beam.pvalue.AsSingleton(solved), self.rarity,
            self.anchors)
        return StageOutputs(weighted, no_rejections(train.pipeline), {WEIGHTS_REPORT: report})
