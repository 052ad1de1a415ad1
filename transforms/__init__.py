"""tailguard curation stages: one composite Beam transform per stage, with its pure logic beside it."""
