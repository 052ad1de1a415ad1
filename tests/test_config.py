"""Config: defaults everywhere, overrides by dotted key, and errors that name the key before anything runs."""

from __future__ import annotations

import pytest

from tailguard.pipelines.config import CurateConfig, apply_override, config_hash, config_to_dict, load_config
from tests.conftest import EXAMPLES
from tailguard.transforms.settings import ConfigError


def write(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_no_file_gives_the_defaults_and_the_demo_config_loads():
    defaults = CurateConfig()
    defaults.validate()  # resolves the defaults that depend on another section
    assert config_to_dict(load_config()) == config_to_dict(defaults)
    demo = load_config(str(EXAMPLES / "curate.yaml"))
    assert demo.ingest.sources[0].name == "inaugural"
    assert demo.ingest.sources[0].tags == ["verified_human", "public_domain"]


def test_overrides_parse_yaml_values_and_reach_nested_keys():
    config = load_config(None, ["ingest.min_chars=10", "sink.write_rejected=false", "dedup.enabled=false"])
    assert config.ingest.min_chars == 10 and config.sink.write_rejected is False
    assert config.dedup.enabled is False
    raw: dict = {}
    apply_override(raw, "a.b.c=[1, two]")
    assert raw == {"a": {"b": {"c": [1, "two"]}}}


@pytest.mark.parametrize("text,overrides,key", [
    ("ingest:\n  min_chars: 10\n  colour: red\n", [], "ingest.colour"),
    ("bogus_stage: {}\n", [], "bogus_stage"),
    ("ingest:\n  min_chars: ten\n", [], "ingest.min_chars"),
    ("ingest:\n  min_chars: true\n", [], "ingest.min_chars"),
    ("", ["sink.rows_per_shard=0"], "sink.rows_per_shard"),
    ("", ["sink.compression=lz4"], "sink.compression"),
    ("ingest:\n  sources:\n    - name: a\n      match: '*'\n      tags: bad\n", [], "ingest.sources[0].tags"),
    ("ingest:\n  sources:\n    - {name: a, match: '*', timestamp: someday}\n", [], "ingest.sources[0].timestamp"),
    ("ingest:\n  sources:\n    - {name: a, match: '*'}\n    - {name: a, match: 'x'}\n", [], "ingest.sources"),
    ("", ["langid.enabled=maybe"], "langid.enabled"),
    ("", ["sink=3"], "sink"),
    ("", ["dedup.cc_check_after_rounds=-1"], "dedup.cc_check_after_rounds"),
    ("", ["rarity.normalize=human_mean"], "rarity.normalize"),
    ("", ["rarity.normalize=anchor_mean", "rarity.materialize=true"], "rarity.materialize"),
    ("- a list\n", [], "<root>"),
])
def test_bad_configs_fail_naming_the_key(tmp_path, text, overrides, key):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), overrides)
    assert error.value.key == key, str(error.value)
    assert f"'{key}'" in str(error.value)


def test_unreadable_and_invalid_yaml_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "ingest: [unclosed\n"))
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(None, ["no_equals_sign"])


def test_config_hash_is_stable_and_changes_with_any_value():
    assert config_hash(load_config()) == config_hash(load_config())
    assert config_hash(load_config(None, ["ingest.min_chars=51"])) != config_hash(load_config())


def test_the_anchor_override_threshold_follows_the_synthetic_drop_threshold():
    from tailguard.transforms.synthetic import shipped_drop_threshold

    assert load_config().anchors.max_synthetic_score == shipped_drop_threshold()
    assert load_config(overrides=["synthetic.max_score=0.97"]).anchors.max_synthetic_score == 0.97
    pinned = load_config(overrides=["synthetic.max_score=0.97", "anchors.max_synthetic_score=0.8"])
    assert pinned.anchors.max_synthetic_score == 0.8
    with pytest.raises(ConfigError, match="anchors.max_synthetic_score"):
        load_config(overrides=["anchors.max_synthetic_score=1.5"])
