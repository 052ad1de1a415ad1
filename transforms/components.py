"""Connected components of an edge PCollection, computed in Beam without ever collecting the graph.

Algorithm: alternating *large-star* and *small-star* rounds (Kiveris, Lattanzi, Mirrokni, Rastogi,
Vassilvitskii, "Connected Components in MapReduce and Beyond", SoCC 2014). Node ids are any totally ordered,
picklable values (here: priority-prefixed byte keys, so the minimum of a component is its survivor).

- large-star(u): m = min(N(u) + {u}); every neighbour v > u is re-attached to m.
- small-star(u): m = min(N(u) + {u}); u and every neighbour v < u are re-attached to m (edges are grouped
  by their larger end, so each edge is seen once).

Each half-round is one ``GroupByKey`` over the current edges, keyed by node: the largest group any worker
holds is one node's neighbourhood, never the whole graph. The edge count never grows (each step emits at most
one edge per input edge) and the procedure ends in a forest of stars whose centre is each component's
minimum; the paper proves O(log^2 n) rounds and observes O(log n) in practice, so for duplicate clusters
(small diameter) two to four rounds are typical. Cost: O(rounds * |E|) shuffled edges, O(|E|) memory per
round in total, spread over workers.

A pipeline cannot loop until a data-dependent condition, so the rounds are unrolled to ``max_rounds``; a
round applied to a converged forest changes nothing. The check is local: in a star forest every node that has
a smaller neighbour has exactly that one neighbour. It runs once after ``check_after`` rounds (one more
``GroupByKey``) and its count of unconverged nodes gates the rest: at 0 (the usual case) its labels are the
result and the further rounds receive no edges, so they cost only their stages' fixed overhead; otherwise
every edge goes through the further rounds and the final check. On the 100,000-document benchmark corpus
(61,869 verified edges, 26,138 nodes) this took the stage from 10 rounds' shuffles to 3 + the check.

A node failing the final check (the bound was hit) keeps itself as its label -- it survives instead of being merged -- which keeps every
label a node that labels itself, so no document is ever pointed at a removed one. Such nodes are counted
(``cc_unconverged_nodes``) and a warning is logged.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

_LOG = logging.getLogger(__name__)


def is_not_self_loop(edge: tuple[Any, Any]) -> bool:
    return edge[0] != edge[1]


def both_directions(edge: tuple[Any, Any]) -> Iterator[tuple[Any, Any]]:
    u, v = edge
    yield u, v
    yield v, u


def large_star(node_and_neighbours: tuple[Any, Iterable[Any]]) -> Iterator[tuple[Any, Any]]:
    node, neighbours = node_and_neighbours
    unique = set(neighbours)
    smallest = min(min(unique), node)
    for v in unique:
        if v > node:
            yield v, smallest


def small_star(node_and_smaller: tuple[Any, Iterable[Any]]) -> Iterator[tuple[Any, Any]]:
    node, smaller = node_and_smaller
    unique = set(smaller)
    smallest = min(unique)
    for v in unique:
        if v != smallest:
            yield v, smallest
    yield node, smallest


def star_label(node: Any, neighbours: Iterable[Any]) -> tuple[Any, bool]:
    """``(label, converged)`` of a node in the final edge set (see the module docstring)."""
    unique = set(neighbours)
    smallest = min(unique)
    if smallest > node:
        return node, True
    if len(unique) == 1:
        return smallest, True
    return node, False


def _labelled(node_and_neighbours: tuple[Any, Iterable[Any]]) -> tuple[Any, Any, bool]:
    node, neighbours = node_and_neighbours
    label, converged = star_label(node, neighbours)
    return node, label, converged


def _is_unconverged(labelled: tuple[Any, Any, bool]) -> bool:
    return not labelled[2]


class _EdgesIfUnconverged(beam.DoFn):
    """Passes every edge on to the further rounds if the checkpoint found an unconverged node, else none."""

    def __init__(self, namespace: str):
        self._namespace = namespace

    def setup(self):
        self._passed = Metrics.counter(self._namespace, "cc_edges_after_check")

    def process(self, edge, unconverged_at_checkpoint):
        if unconverged_at_checkpoint:
            self._passed.inc()
            yield edge


class _LabelFromStars(beam.DoFn):
    """``(node, label, converged)`` -> ``(node, label)``, counting nodes and unconverged nodes; with
    ``checked`` (a side input: unconverged nodes at the checkpoint) only if that count is 0 -- otherwise these
    labels are superseded by those of the further rounds."""

    def __init__(self, namespace: str):
        self._namespace = namespace
        self._warned = False

    def setup(self):
        self._unconverged = Metrics.counter(self._namespace, "cc_unconverged_nodes")
        self._in_components = Metrics.counter(self._namespace, "cc_nodes")

    def process(self, labelled, unconverged_at_checkpoint=0):
        if unconverged_at_checkpoint:
            return
        node, label, converged = labelled
        self._in_components.inc()
        if not converged:
            self._unconverged.inc()
            if not self._warned:
                self._warned = True
                _LOG.warning("connected components did not converge within the configured rounds: some "
                             "duplicates stay unmerged (counter %s/cc_unconverged_nodes); raise max_cc_rounds",
                             self._namespace)
        yield node, label


class ConnectedComponents(beam.PTransform):
    """``edges`` (pairs of node ids) -> ``(node, label)`` for every node on an edge; label = component minimum
    (when converged).

    ``check_after``: after this many rounds the star-forest check runs on the whole graph; if every node has
    converged (the usual case: duplicate clusters have a small diameter), its labels are the result and the
    remaining rounds receive no edges (each then costs only its stages' fixed overhead). Otherwise every edge
    goes on through rounds ``check_after + 1 .. max_rounds`` and the final check labels them.
    """

    def __init__(self, max_rounds: int, namespace: str = "dedup", check_after: Optional[int] = None):
        super().__init__()
        self._max_rounds = max_rounds
        self._namespace = namespace
        self._check_after = max_rounds if check_after is None else min(check_after, max_rounds)

    @staticmethod
    def _rounds(current, first: int, stop: int):
        for r in range(first, stop):
            current = (
                current
                | f"Round{r}LargeStarBothWays" >> beam.FlatMap(both_directions)
                | f"Round{r}LargeStarGroup" >> beam.GroupByKey()
                # large_star emits (v, m) with v > node >= m, small_star (v, m) with v > m: both have their larger
                # end first and neither is a self-loop, so nothing is re-keyed or filtered between the steps.
                | f"Round{r}LargeStar" >> beam.FlatMap(large_star)
                | f"Round{r}SmallStarGroup" >> beam.GroupByKey()
                | f"Round{r}SmallStar" >> beam.FlatMap(small_star)
            )
        return current

    @staticmethod
    def _check(current, name: str):
        return (
            current
            | f"{name}BothWays" >> beam.FlatMap(both_directions)
            | f"{name}Group" >> beam.GroupByKey()
            | f"{name}Labels" >> beam.Map(_labelled)
        )

    def expand(self, edges):
        current = edges | "DropSelfLoops" >> beam.Filter(is_not_self_loop)
        current = self._rounds(current, 0, self._check_after)
        checked = self._check(current, "Check" if self._check_after < self._max_rounds else "Final")
        if self._check_after == self._max_rounds:
            return checked | "LabelFromStars" >> beam.ParDo(_LabelFromStars(self._namespace))
        unconverged = beam.pvalue.AsSingleton(
            checked
            | "UnconvergedAtCheck" >> beam.Filter(_is_unconverged)
            | "CountUnconvergedAtCheck" >> beam.combiners.Count.Globally()
        )
        settled = checked | "LabelsAtCheck" >> beam.ParDo(_LabelFromStars(self._namespace), unconverged)
        further = self._rounds(
            current | "OnlyIfUnconverged" >> beam.ParDo(_EdgesIfUnconverged(self._namespace), unconverged),
            self._check_after, self._max_rounds)
        final = (
            self._check(further, "Final")
            | "LabelFromStars" >> beam.ParDo(_LabelFromStars(self._namespace))
        )
        return (settled, final) | "AllLabels" >> beam.Flatten()
