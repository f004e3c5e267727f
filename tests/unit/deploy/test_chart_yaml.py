"""A YAML loader for what helm renders that refuses a mapping with a key given twice. PyYAML's own keeps
the last value silently, as kubectl's server-side apply does not (it refuses the object): a chart that
writes one label from two values must fail its tests, not pass them with whichever came last."""

from __future__ import annotations

import pytest
import yaml

from tests.unit.deploy.strict_yaml import StrictLoader, construct_mapping, load_all_strict

StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)


def test_a_duplicate_key_is_refused_at_any_depth() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'team'"):
        load_all_strict("kind: A\nmetadata:\n  labels:\n    team: data\n    team: ops\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'kind'"):
        load_all_strict("kind: A\n---\nkind: B\nkind: C\n")


def test_distinct_keys_and_merges_load_as_safe_load_does() -> None:
    text = "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n---\n---\nlist: [1, {a: b}]\n"
    assert load_all_strict(text) == [d for d in yaml.safe_load_all(text) if d]
    assert load_all_strict(text)[0]["derived"] == {"x": 1, "y": 2}
