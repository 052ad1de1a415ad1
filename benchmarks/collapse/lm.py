"""A weighted, interpolated Witten-Bell trigram language model over a fixed vocabulary, in numpy.

Small enough to train on a million tokens in well under a second and to sample a WikiText-2-sized corpus in
about one, which is what a 10-generation x 3-policy collapse experiment on two shared cores needs.

* Counts are weighted: each training paragraph contributes its weight -- its count in tailguard's sampling
  plan (``tailguard.training``), or 1 (plain corpora). Witten-Bell interpolation works with fractional counts
  -- it only needs the weighted context total and the number of distinct continuations -- where Kneser-Ney's
  count-of-counts would not.
  A continuation's type count is min(weighted count, 1), so unit weights give textbook Witten-Bell and a
  document weighted 0.1 does not buy a full type's worth of backoff mass.

      p3(w | u v) = (c(u v w) + T(u v) p2(w | v)) / (c(u v) + T(u v))     (p2 when the context was never seen)
      p2(w | v)   = (c(v w)   + T(v)   p1(w))     / (c(v)   + T(v))
      p1(w)       = (c(w) + delta) / (N + delta |V|)

  The additive ``delta`` floor keeps every word of the fixed vocabulary possible (held-out perplexity must
  stay finite once a word has vanished from the training data), while staying small enough that sampling
  almost never resurrects a vanished word by chance -- otherwise the floor would hide the loss of the tail.
* The vocabulary is fixed at generation 0 (the human training text); test words outside it map to ``<unk>``,
  so every generation is scored over the same event space and a shrinking model cannot look better by
  calling more of the test set unknown.
* Sampling draws from exactly the interpolated distribution: at each step pick the trigram level with
  probability c/(c+T), else the bigram level likewise, else the unigram; then draw from that level's
  maximum-likelihood distribution by a binary search over cumulative counts. Many paragraphs are sampled
  in parallel, one vectorised step per position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


class Vocabulary:
    """Word <-> id over a fixed word list; id 0 is the paragraph start, 1 the paragraph end."""

    def __init__(self, words: Iterable[str]):
        specials = [BOS, EOS]
        rest = sorted(set(words) - set(specials) | {UNK})
        self.words = specials + rest
        self.index = {w: i for i, w in enumerate(self.words)}
        self.unk = self.index[UNK]

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        unk = self.unk
        return np.fromiter((self.index.get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids]


def _ngram_positions(paragraphs: Sequence[np.ndarray], weights: Optional[Sequence[float]]):
    """``(u, v, w, weight)`` for every predicted position (every word and the closing ``</s>``)."""
    us, vs, ws, wts = [], [], [], []
    for i, ids in enumerate(paragraphs):
        seq = np.concatenate(([0, 0], ids, [1]))
        us.append(seq[:-2])
        vs.append(seq[1:-1])
        ws.append(seq[2:])
        wts.append(np.full(len(seq) - 2, 1.0 if weights is None else float(weights[i])))
    if not us:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0)
    return np.concatenate(us), np.concatenate(vs), np.concatenate(ws), np.concatenate(wts)


@dataclass
class _Level:
    """One interpolation level: sorted (context, word) keys with weighted counts, and per-context totals."""

    keys: np.ndarray        # context * V + word, sorted
    cumulative: np.ndarray  # running sum of counts over ``keys``
    contexts: np.ndarray    # sorted distinct contexts
    start: np.ndarray       # first index of each context in ``keys``
    last: np.ndarray        # last index of each context in ``keys``
    total: np.ndarray       # weighted count of each context
    types: np.ndarray       # distinct continuations of each context, sum of min(count, 1)

    @classmethod
    def build(cls, context: np.ndarray, word: np.ndarray, weight: np.ndarray, size: int) -> "_Level":
        keys, inverse = np.unique(context * size + word, return_inverse=True)
        counts = np.bincount(inverse, weights=weight, minlength=len(keys))
        ctx_of_key = keys // size
        contexts, start, distinct = np.unique(ctx_of_key, return_index=True, return_counts=True)
        total = np.add.reduceat(counts, start) if len(keys) else np.zeros(0)
        # A continuation seen with weight below 1 counts as that fraction of a type: otherwise low-weight
        # data would buy full backoff mass for every novel continuation it adds.
        types = np.add.reduceat(np.minimum(counts, 1.0), start) if len(keys) else np.zeros(0)
        last = start + distinct - 1
        return cls(keys, np.cumsum(counts), contexts, start, last, total, types)

    def count(self, keys: np.ndarray) -> np.ndarray:
        at = np.searchsorted(self.keys, keys)
        at_clipped = np.minimum(at, len(self.keys) - 1)
        found = (at < len(self.keys)) & (self.keys[at_clipped] == keys)
        before = np.where(at_clipped > 0, self.cumulative[np.maximum(at_clipped - 1, 0)], 0.0)
        return np.where(found, self.cumulative[at_clipped] - before, 0.0)

    def context_stats(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(found, index, total, types)`` per context; total and types are 0 for unseen contexts."""
        at = np.searchsorted(self.contexts, contexts)
        at_clipped = np.minimum(at, max(len(self.contexts) - 1, 0))
        if len(self.contexts) == 0:
            zeros = np.zeros(len(contexts))
            return np.zeros(len(contexts), dtype=bool), at_clipped, zeros, zeros
        found = (at < len(self.contexts)) & (self.contexts[at_clipped] == contexts)
        return (found, at_clipped, np.where(found, self.total[at_clipped], 0.0),
                np.where(found, self.types[at_clipped], 0.0))

    def draw(self, context_index: np.ndarray, uniform: np.ndarray, size: int) -> np.ndarray:
        """A word from each given (seen) context's maximum-likelihood distribution."""
        first = self.start[context_index]
        before = np.where(first > 0, self.cumulative[np.maximum(first - 1, 0)], 0.0)
        target = before + uniform * self.total[context_index]
        at = np.searchsorted(self.cumulative, target, side="right")
        # Guard the float edge where target equals the context's last running sum.
        at = np.clip(at, first, self.last[context_index])
        return self.keys[at] % size


class TrigramLM:
    """Weighted interpolated Witten-Bell trigram model over a fixed :class:`Vocabulary`."""

    def __init__(self, vocabulary: Vocabulary, paragraphs: Sequence[np.ndarray],
                 weights: Optional[Sequence[float]] = None, delta: float = 0.01):
        self.vocabulary = vocabulary
        self.size = size = len(vocabulary)
        self.delta = delta
        u, v, w, wt = _ngram_positions(paragraphs, weights)
        keep = wt > 0
        u, v, w, wt = u[keep], v[keep], w[keep], wt[keep]
        self.tokens = float(wt.sum())
        self.trigram = _Level.build(u * size + v, w, wt, size)
        self.bigram = _Level.build(v, w, wt, size)
        unigram = np.bincount(w, weights=wt, minlength=size).astype(np.float64)
        floor = np.full(size, delta)
        floor[0] = 0.0  # the paragraph start is context, never a prediction
        self.unigram_counts = unigram
        self.unigram = (unigram + floor) / (unigram.sum() + floor.sum())
        self.unigram_cumulative = np.cumsum(self.unigram)

    # ------------------------------------------------------------------------------------------ scoring

    def probabilities(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        size = self.size
        p1 = self.unigram[w]
        _, _, c2, t2 = self.bigram.context_stats(v)
        p2 = np.where(c2 > 0, (self.bigram.count(v * size + w) + t2 * p1) / np.maximum(c2 + t2, 1e-300), p1)
        _, _, c3, t3 = self.trigram.context_stats(u * size + v)
        return np.where(c3 > 0, (self.trigram.count((u * size + v) * size + w) + t3 * p2)
                        / np.maximum(c3 + t3, 1e-300), p2)

    def perplexity(self, paragraphs: Sequence[np.ndarray]) -> float:
        u, v, w, _ = _ngram_positions(paragraphs, None)
        return float(np.exp(-np.mean(np.log(self.probabilities(u, v, w)))))

    # ------------------------------------------------------------------------------------------ sampling

    def sample(self, target_tokens: int, rng: np.random.Generator, batch: int = 512,
               max_length: int = 1000) -> list[np.ndarray]:
        """Paragraphs (word ids, no markers) until they hold at least ``target_tokens`` words."""
        paragraphs: list[np.ndarray] = []
        produced = 0
        while produced < target_tokens:
            for paragraph in self._sample_batch(batch, rng, max_length):
                if produced >= target_tokens:
                    break
                paragraphs.append(paragraph)
                produced += len(paragraph)
        return paragraphs

    def _sample_batch(self, batch: int, rng: np.random.Generator, max_length: int) -> list[np.ndarray]:
        u = np.zeros(batch, dtype=np.int64)
        v = np.zeros(batch, dtype=np.int64)
        out = np.zeros((batch, max_length), dtype=np.int64)
        lengths = np.full(batch, max_length)
        alive = np.ones(batch, dtype=bool)
        for step in range(max_length):
            live = np.flatnonzero(alive)
            if live.size == 0:
                break
            word = self._next_words(u[live], v[live], rng)
            ended = word == 1
            lengths[live[ended]] = step
            alive[live[ended]] = False
            out[live, step] = word
            u[live], v[live] = v[live], word
        return [out[i, :lengths[i]].copy() for i in range(batch)]

    def _next_words(self, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(u)
        level_draw, word_draw = rng.random(n), rng.random(n)
        found3, index3, c3, t3 = self.trigram.context_stats(u * self.size + v)
        found2, index2, c2, t2 = self.bigram.context_stats(v)
        lambda3 = np.where(found3, c3 / np.maximum(c3 + t3, 1e-300), 0.0)
        lambda2 = np.where(found2, c2 / np.maximum(c2 + t2, 1e-300), 0.0)
        use3 = level_draw < lambda3
        # Rescale the same uniform for the next level's decision: U | U >= lambda3 is uniform on [lambda3, 1).
        rest = (level_draw - lambda3) / np.maximum(1.0 - lambda3, 1e-300)
        use2 = ~use3 & (rest < lambda2)
        use1 = ~use3 & ~use2
        word = np.empty(n, dtype=np.int64)
        if use3.any():
            word[use3] = self.trigram.draw(index3[use3], word_draw[use3], self.size)
        if use2.any():
            word[use2] = self.bigram.draw(index2[use2], word_draw[use2], self.size)
        if use1.any():
            at = np.searchsorted(self.unigram_cumulative, word_draw[use1] * self.unigram_cumulative[-1],
                                 side="right")
            word[use1] = np.minimum(at, self.size - 1)
        return word
