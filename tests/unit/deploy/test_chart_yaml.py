"""A YAML loader for what helm renders that refuses a mapping with a key given twice. PyYAML's own keeps
the last value silently, as kubectl's server-side apply does not (it refuses the object): a chart that
writes one label from two values must fail its tests, not pass them with whichever came last."""

from __future__ import annotations

from typing import Any

import pytest
import yaml


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that raises on a duplicate mapping key."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all_strict(text: str) -> list[Any]:
    """Every non-empty document of a multi-document stream, refusing duplicate keys."""
    return [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc]


def load_strict(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)


def test_a_duplicate_key_is_refused_at_any_depth() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'team'"):
        load_all_strict("kind: A\nmetadata:\n  labels:\n    team: data\n    team: ops\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'kind'"):
        load_all_strict("kind: A\n---\nkind: B\nkind: C\n")


def test_distinct_keys_and_merges_load_as_safe_load_does() -> None:
    text = "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n---\n---\nlist: [1, {a: b}]\n"
    assert load_all_strict(text) == [d for d in yaml.safe_load_all(text) if d]
    assert load_all_strict(text)[0]["derived"] == {"x": 1, "y": 2}
