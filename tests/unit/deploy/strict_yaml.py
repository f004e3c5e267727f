"""A YAML loader as strict as Kubernetes' decoder: a key written twice is refused."""

from __future__ import annotations

from typing import Any

import yaml


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that raises on a duplicate mapping key."""


def construct_mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
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


def load_all_strict(text: str) -> list[Any]:
    """Every non-empty document of a multi-document stream, refusing duplicate keys."""
    return [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc]


def load_strict(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)
