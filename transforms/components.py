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
round applied to a converged forest changes nothing. The final step checks convergence locally: in a star
forest every node that has a smaller neighbour has exactly that one neighbour. A node failing the check
(the bound was hit) keeps itself as its label -- it survives instead of being merged -- which keeps every
label a node that labels itself, so no document is ever pointed at a removed one. Such nodes are counted
(``cc_unconverged_nodes``) and a warning is logged.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

_LOG = logging.getLogger(__name__)


def is_not_self_loop(edge: tuple[Any, Any]) -> bool:
    return edge[0] != edge[1]


def both_directions(edge: tuple[Any, Any]) -> Iterator[tuple[Any, Any]]:
    u, v = edge
    yield u, v
    yield v, u


def larger_end_first(edge: tuple[Any, Any]) -> tuple[Any, Any]:
    u, v = edge
    return (u, v) if u > v else (v, u)


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


class _LabelFromStars(beam.DoFn):
    def __init__(self, namespace: str):
        self._namespace = namespace
        self._warned = False

    def setup(self):
        self._unconverged = Metrics.counter(self._namespace, "cc_unconverged_nodes")
        self._in_components = Metrics.counter(self._namespace, "cc_nodes")

    def process(self, node_and_neighbours):
        node, neighbours = node_and_neighbours
        label, converged = star_label(node, neighbours)
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
    (when converged)."""

    def __init__(self, max_rounds: int, namespace: str = "dedup"):
        super().__init__()
        self._max_rounds = max_rounds
        self._namespace = namespace

    def expand(self, edges):
        current = edges | "DropSelfLoops" >> beam.Filter(is_not_self_loop)
        for r in range(self._max_rounds):
            current = (
                current
                | f"Round{r}LargeStarBothWays" >> beam.FlatMap(both_directions)
                | f"Round{r}LargeStarGroup" >> beam.GroupByKey()
                | f"Round{r}LargeStar" >> beam.FlatMap(large_star)
                | f"Round{r}SmallStarByLargerEnd" >> beam.Map(larger_end_first)
                | f"Round{r}SmallStarGroup" >> beam.GroupByKey()
                | f"Round{r}SmallStar" >> beam.FlatMap(small_star)
                | f"Round{r}DropSelfLoops" >> beam.Filter(is_not_self_loop)
            )
        return (
            current
            | "FinalBothWays" >> beam.FlatMap(both_directions)
            | "FinalGroup" >> beam.GroupByKey()
            | "LabelFromStars" >> beam.ParDo(_LabelFromStars(self._namespace))
        )
