"""Human anchors: verified human text kept in every training mix, and a fixed human holdout never trained on.

The research's cure for collapse is to keep real human data in every generation's mix and never replace it
(Shumailov et al. 2024; Gerstgrasser et al. 2024: accumulating real data bounds the error). A document is an
anchor when its provenance says a human wrote it -- a source tagged as verified human, or a timestamp before
``anchors.cutoff`` (default 2022-11-30, ChatGPT's public release) -- *and* the synthetic detector does not
contradict it (``synthetic_score <= max_synthetic_score``; a score the detector marks unreliable, such as on
non-English text, neither qualifies nor disqualifies).

A stable, hash-chosen ``holdout_fraction`` of anchors goes to ``anchor_holdout/``: the same document always
lands on the same side, run after run, so users can measure their models' drift against a fixed human
reference. Documents carried from a previous snapshot keep their split and anchor status.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Optional

import apache_beam as beam

from tailguard.transforms.document import ANCHOR_HOLDOUT, TRAIN
from tailguard.transforms.settings import ConfigError, require, require_fraction
from tailguard.transforms.stage import StageMetrics, StageOutputs, no_rejections
from tailguard.transforms.text import stable_fraction

STAGE = "anchors"
_HOLDOUT_SALT = "anchor-holdout"


@dataclass
class AnchorsConfig:
    enabled: bool = True
    verified_tags: list[str] = field(default_factory=lambda: ["verified_human"])
    cutoff: str = "2022-11-30"
    # Above this (reliable) synthetic score provenance is overruled. null = the synthetic stage's drop threshold
    # (synthetic.max_score, else the detector's own, calibrated to <= 1 % of human text in every corpus and domain
    # it was measured on), resolved when the config loads: one number says "confidently machine-written". A config
    # built in code and never loaded keeps None, and then provenance is never overruled.
    max_synthetic_score: Optional[float] = None
    holdout_fraction: float = 0.05
    min_share: float = 0.9  # measured to hold off collapse with margin (benchmarks/README.md, "Model collapse")
    enforce: bool = False

    def validate(self) -> None:
        try:
            cutoff_micros(self.cutoff)
        except ValueError:
            raise ConfigError("cutoff", f"must be an ISO date such as 2022-11-30, got {self.cutoff!r}") from None
        if self.max_synthetic_score is not None:
            require_fraction(self.max_synthetic_score, "max_synthetic_score")
        require_fraction(self.holdout_fraction, "holdout_fraction", allow_one=False)
        require_fraction(self.min_share, "min_share", allow_one=False)
        require(all(isinstance(t, str) and t for t in self.verified_tags), "verified_tags", "must be non-empty tags")


def cutoff_micros(cutoff: str) -> int:
    moment = dt.datetime.fromisoformat(cutoff)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int((moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds() * 1_000_000)


def anchor_eligibility(doc: dict[str, Any], config: AnchorsConfig) -> tuple[bool, str]:
    """``(is_anchor, reason)``: the provenance that makes it human, or what keeps it from being an anchor."""
    tags = set(doc.get("source_tags") or ())
    verified = sorted(tags.intersection(config.verified_tags))
    timestamp = doc.get("source_timestamp")
    if verified:
        why = f"verified_source:{verified[0]}"
    elif timestamp is not None and timestamp < cutoff_micros(config.cutoff):
        why = f"before_cutoff:{config.cutoff}"
    else:
        return False, "no_human_provenance"
    score = doc.get("synthetic_score")
    limit = 1.0 if config.max_synthetic_score is None else config.max_synthetic_score
    if score is not None and doc.get("synthetic_reliable", True) and score > limit:
        return False, f"synthetic_score {score:.3f} > max_synthetic_score {config.max_synthetic_score}"
    return True, why


class AnchorEligibility:
    """``anchor_eligible(doc) -> bool`` for the dedup stage's survivor priority (picklable, config-bound)."""

    def __init__(self, config: AnchorsConfig):
        self.config = config

    def __call__(self, doc: dict[str, Any]) -> bool:
        return self.config.enabled and anchor_eligibility(doc, self.config)[0]


def in_holdout(doc_id: str, fraction: float) -> bool:
    """Hash-chosen, so a document's side never changes between runs or runners."""
    return stable_fraction(doc_id, _HOLDOUT_SALT) < fraction


def reserve(doc: dict[str, Any], config: AnchorsConfig) -> dict[str, Any]:
    """The document with ``is_anchor``, ``anchor_reason`` and ``split``; carried documents keep theirs."""
    if doc.get("split") in (TRAIN, ANCHOR_HOLDOUT):
        return doc
    out = dict(doc)
    is_anchor, reason = anchor_eligibility(doc, config)
    out["is_anchor"] = is_anchor
    out["anchor_reason"] = reason
    out["split"] = ANCHOR_HOLDOUT if is_anchor and in_holdout(doc["doc_id"], config.holdout_fraction) else TRAIN
    return out


class _ReserveFn(beam.DoFn):
    def __init__(self, config: AnchorsConfig):
        self.config = config

    def setup(self):
        self.metrics = StageMetrics(STAGE)

    def process(self, doc: dict[str, Any]):
        self.metrics.saw()
        with self.metrics.timed():
            out = reserve(doc, self.config)
        self.metrics.kept()
        if out.get("is_anchor"):
            self.metrics.count("anchors")
        if out["split"] == ANCHOR_HOLDOUT:
            self.metrics.count("holdout")
            yield beam.pvalue.TaggedOutput(ANCHOR_HOLDOUT, out)
        else:
            yield out


class ReserveHumanAnchors(beam.PTransform):
    """Documents in; ``StageOutputs`` whose ``kept`` are the train split and whose ``extra[ANCHOR_HOLDOUT]`` is the
    anchor holdout (which never reaches train); nothing is rejected."""

    def __init__(self, config: AnchorsConfig):
        super().__init__()
        self.config = config

    def expand(self, docs):
        result = docs | "Reserve" >> beam.ParDo(_ReserveFn(self.config)).with_outputs(ANCHOR_HOLDOUT, main=TRAIN)
        return StageOutputs(result[TRAIN], no_rejections(docs.pipeline), {ANCHOR_HOLDOUT: result[ANCHOR_HOLDOUT]})
