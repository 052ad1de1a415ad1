"""Order-independent sums for global statistics.

Floating-point addition is not associative, so a sum combined across workers in whatever order bundles
arrive can differ in its last bits from run to run -- and a weight computed from it is then not reproducible.
These helpers round each value once to a fixed-point integer (2**-64 resolution) and add Python integers,
which is exact: the same inputs give the same sum in any order, on any runner.
"""

from __future__ import annotations

import apache_beam as beam

_SCALE = 1 << 64


def to_fixed(value: float) -> int:
    return round(value * _SCALE)


def from_fixed(total: int) -> float:
    return total / _SCALE


class ExactMean(beam.CombineFn):
    """Mean of floats, identical whatever the order of inputs and merges (NaN for no input)."""

    def create_accumulator(self):
        return 0, 0

    def add_input(self, acc, value):
        return acc[0] + to_fixed(value), acc[1] + 1

    def merge_accumulators(self, accumulators):
        total = count = 0
        for s, n in accumulators:
            total += s
            count += n
        return total, count

    def extract_output(self, acc):
        return from_fixed(acc[0]) / acc[1] if acc[1] else float("nan")
