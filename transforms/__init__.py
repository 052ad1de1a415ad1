"""tailguard curation stages: one composite Beam transform per stage, with its pure logic beside it."""

__version__ = "0.1.0"
